"""Speed of the chapter's ResNet-18: the book's code and PyTorch against gluon_resnet.

Usage::

    python benchmarks/bench.py [--batch-size 256] [--size 96] [--rounds 5] [--steps 4]
                               [--json out.json] [--tiny [--jobs N]] [--tiers auto|all|LIST]
                               [--save] [--results-dir DIR] [--only NAMES]
                               [--int8-run RUN] [--calib-images 500] [--test-images 1000]

Sides compared (same network, same random batches of shape (N, 1, size, size)):

- ``ref``: the network of d2l-zh 5.11 built from ``d2lzh.Residual`` in an
  ``nn.Sequential`` (not hybridized), trained by ``d2lzh.train_ch5`` itself
  (imperative, the host reads the loss and the accuracy of every batch) and
  evaluated by ``d2lzh.evaluate_accuracy``; with MXNet's default threads, as
  a reader runs it, and with ``OMP_NUM_THREADS`` set to the number of cores.
- ``torch``: the same network written in PyTorch (``torch_reference.py``),
  eager fp32 and eager bf16 autocast with channels_last (optional: needs the
  ``[bench]`` extra; reported unavailable without PyTorch).
- ``ours``: ``chapter_resnet18`` as ``gluon-resnet train`` runs it
  (``build_network``: Xavier, ``hybridize(static_alloc=True, static_shape=False)``;
  ``Learner``: metrics summed on the device), in fp32 and in bf16 (AMP, on AMX
  where the CPU has it); inference with and without oneDNN operator fusion.
- ``ort``: the chapter network (random weights) exported to ONNX by
  ``gluon_resnet.export.export_onnx`` (what ``gluon-resnet export`` writes),
  run by ONNX Runtime's CPUExecutionProvider in fp32 with one intra-op thread per core.
- int8 inference (``int8_workers.py``): ours (``gluon-resnet quantize``'s oneDNN
  network), ONNX Runtime's ``quantize_static`` (QDQ) of the exported network and
  PyTorch's FX post-training static quantization (x86), with the same weights
  and calibration images; ``--int8-run RUN`` (a trained ``chapter_resnet18``
  run at ``--size``) gives them trained weights and an accuracy row each.

ISA tiers (``--tiers``, see ``tiers.py``): every variant runs at each tier asked
for (default: the CPU's own, uncapped), the lower ones capped through oneDNN's
and ATen's environment variables; bf16 rows only at tiers with bf16.  ONNX
Runtime has no run-time ISA cap and runs uncapped at every tier (its row says so).

The default precision: ``gluon-resnet train`` and ``eval`` pick fp32 or bf16 by
measuring (``gluon_resnet.autoprecision``), which this benchmark does not rerun
(measuring inside a benchmark would be timed work of its own).  Ours runs in
fp32 and, at tiers with bf16, in bf16; the ``train_fp32`` worker reads
autoprecision's cached decision for this case at its tier (the exact case, else
the nearest one measured on that machine setting), and without one the
benchmark applies auto's own rule (bf16 when at least 5% faster) to its own
figures.  The report says which row is the default and why.

Every measurement runs in a fresh worker process (``--worker NAME``), because
bf16 AMP is process-global and cannot be undone.  The variants are alternated
round by round (ref, ours, ref, ours, ...) so that a change in the machine's
load hits both sides alike; the figures reported are medians over rounds.

``--only infer_fused,infer_ort`` runs the named workers alone (names as in
``WORKERS``: ``peak``, the variants, ``loader``), to check one comparison
again without the whole table; rows of the others read "not selected".  It
cannot be combined with ``--save``, which records whole tiers: it appends one
JSON line per measured row to ``results/<machine kind>.jsonl`` and rewrites the
tables of the ``RESULTS.md`` beside that folder (``results_tables.py``).

Worker protocol: ``bench.py --worker NAME ...`` prints one line
``BENCH_RESULT {json}`` on standard output (everything else goes to standard
error) and exits 0.
"""

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results_tables  # noqa: E402  (benchmarks/results_tables.py, beside this file)
import tiers  # noqa: E402  (benchmarks/tiers.py, beside this file)
from tiers import ORT_UNCAPPED  # noqa: E402
from int8_workers import INT8_DEFAULTS  # noqa: E402  (benchmarks/int8_workers.py)

RESULT_PREFIX = "BENCH_RESULT "

#: Forward + backward FLOPs of one training image at 96x96 (chapter ResNet-18, 1 channel).
TRAIN_GFLOP_96 = 1.91
#: Forward FLOPs of one inference image at 96x96.
INFER_GFLOP_96 = 0.64

#: Inference takes steps * INFER_STEP_FACTOR timed steps: a batch is predicted 3-10x as fast as
#: it is trained, and 4 inference steps (2 s) were too short to time on these machines.
INFER_STEP_FACTOR = 4

FULL_SETTINGS = dict(batch_size=256, size=96, rounds=5, steps=4, warmup=2, dot_size=2048,
                     dot_reps=3, loader_limit=None)
TINY_SETTINGS = dict(batch_size=8, size=32, rounds=1, steps=1, warmup=1, dot_size=256,
                     dot_reps=2, loader_limit=512)


class Variant:
    """One measured configuration: a mode (train or infer), a side and a precision.

    ``side`` is ``ref`` (the book's code), ``ours`` or ``torch`` (the same network
    in PyTorch); ``env`` holds environment variables the worker gets on top of
    the caller's.
    """

    def __init__(self, name, mode, side, precision, label, description, env=None):
        self.name, self.mode, self.side, self.precision = name, mode, side, precision
        self.label, self.description, self.env = label, description, env or {}


def _all_cores():
    # gluon_resnet._cpu.usable_cores, written again: importing gluon_resnet here would set
    # OMP_NUM_THREADS and AMX for the book's workers, which must run as a reader runs them.
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


VARIANTS = [
    Variant("train_ref", "train", "ref", "fp32", "ref (book)",
            "d2lzh.Residual in nn.Sequential, not hybridized; d2lzh.train_ch5 "
            "(imperative, loss and accuracy read on the host every batch); MXNet's default "
            "threads, as a reader runs it"),
    Variant("train_ref_all", "train", "ref", "fp32", "book, all cores",
            "as ref (book), with OMP_NUM_THREADS set to the number of cores",
            env={"OMP_NUM_THREADS": str(_all_cores())}),
    Variant("train_torch_fp32", "train", "torch", "fp32", "PyTorch fp32",
            "the same network in PyTorch, eager, fp32, SGD"),
    Variant("train_torch_bf16", "train", "torch", "bf16", "PyTorch bf16",
            "the same network in PyTorch, eager, bf16 autocast, channels_last"),
    Variant("train_fp32", "train", "ours", "fp32", "ours fp32",
            "gluon-resnet train --precision fp32: build_network (hybridize static_alloc) "
            "+ Learner"),
    Variant("train_bf16", "train", "ours", "bf16", "ours bf16",
            "gluon-resnet train --precision bf16 (the default where auto measures it faster): "
            "amp.init(bfloat16), no loss scaler, AMX where the CPU has it"),
    Variant("infer_ref", "infer", "ref", "fp32", "ref (book)",
            "the book's network, not hybridized; d2lzh.evaluate_accuracy (host sync per batch)"),
    Variant("infer_torch_fp32", "infer", "torch", "fp32", "PyTorch fp32",
            "the same network in PyTorch, eager, inference_mode, fp32"),
    Variant("infer_torch_bf16", "infer", "torch", "bf16", "PyTorch bf16",
            "the same network in PyTorch, eager, inference_mode, bf16 autocast, channels_last"),
    Variant("infer_fp32", "infer", "ours", "fp32", "ours fp32",
            "build_network (hybridized, static_alloc); "
            "gluon_resnet.evaluate_accuracy (one host sync)"),
    Variant("infer_fused", "infer", "ours", "fp32", "ours fp32 fused",
            "as ours fp32, hybridized with backend='MKLDNN' (oneDNN conv+BN+ReLU+add fusion)"),
    Variant("infer_bf16", "infer", "ours", "bf16", "ours bf16 fused",
            "amp.init(bfloat16) before the network is built, hybridized with "
            "backend='MKLDNN' (what gluon-resnet eval runs where the CPU has bf16)"),
    Variant("infer_ort", "infer", "ort", "fp32", "ONNX Runtime fp32",
            "the chapter network exported by gluon_resnet.export_onnx, ONNX Runtime "
            "CPUExecutionProvider, fp32, intra_op_num_threads = cores; uncapped at every tier "
            "(MLAS has no run-time ISA cap)"),
    Variant("infer_int8", "infer", "ours", "int8", "ours int8",
            "gluon_resnet.quantize.quantize_network (what gluon-resnet quantize makes): "
            "oneDNN int8, conv+BN+ReLU+add fused, naive calibration, image's conv in fp32"),
    Variant("infer_ort_int8", "infer", "ort", "int8", "ONNX Runtime int8",
            "the exported network quantized by onnxruntime.quantization.quantize_static "
            "(QDQ, u8 activations, s8 weights, MinMax), same calibration images"),
    Variant("infer_torch_int8", "infer", "torch", "int8", "PyTorch int8",
            "the same network in PyTorch, FX post-training static quantization, x86 backend, "
            "same weights and calibration images"),
]
VARIANT_BY_NAME = {v.name: v for v in VARIANTS}
#: The note of a worker that ``--only`` left out.
NOT_SELECTED = "not selected (--only)"
WORKERS = ["peak"] + [v.name for v in VARIANTS] + ["loader"]


# ---------------------------------------------------------------------------
# Workers (each runs in its own process)
# ---------------------------------------------------------------------------

def max_rss_mib():
    """Peak resident memory of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class TimedBatches:
    """Yield the same ``(X, y)`` ``warmup + steps`` times and time the last ``steps``.

    The clock starts once the warm-up batches are finished (``mx.nd.waitall``)
    and stops when the consumer asks for a batch after the last one and all
    queued work is finished, so a loop that never waits (ours) and one that
    waits every batch (the book's) are timed alike.
    """

    def __init__(self, X, y, warmup, steps):
        self.X, self.y, self.warmup, self.steps = X, y, warmup, steps
        self.start = self.stop = None

    def __iter__(self):
        import mxnet as mx

        for i in range(self.warmup + self.steps):
            if i == self.warmup:
                mx.nd.waitall()
                self.start = time.perf_counter()
            yield self.X, self.y
        mx.nd.waitall()
        self.stop = time.perf_counter()

    def images_per_second(self):
        if self.start is None or self.stop is None:
            raise RuntimeError("the batches were not consumed to the end")
        return self.X.shape[0] * self.steps / (self.stop - self.start)


def _random_batch(settings):
    import mxnet as mx
    import numpy as np

    mx.random.seed(0)
    n, s = settings["batch_size"], settings["size"]
    X = mx.nd.random.uniform(shape=(n, 1, s, s))
    y = mx.nd.array(np.random.RandomState(0).randint(0, 10, size=n), dtype="int32")
    return X, y


def book_resnet18():
    """The network of d2l-zh 5.11, built as the book builds it, from ``d2lzh.Residual``."""
    import d2lzh as d2l
    from mxnet.gluon import nn

    def resnet_block(num_channels, num_residuals, first_block=False):
        blk = nn.Sequential()
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.add(d2l.Residual(num_channels, use_1x1conv=True, strides=2))
            else:
                blk.add(d2l.Residual(num_channels))
        return blk

    net = nn.Sequential()
    net.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3),
            nn.BatchNorm(), nn.Activation("relu"),
            nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    net.add(resnet_block(64, 2, first_block=True), resnet_block(128, 2),
            resnet_block(256, 2), resnet_block(512, 2))
    net.add(nn.GlobalAvgPool2D(), nn.Dense(10))
    return net


def timed_steps(mode, settings):
    """Timed steps of a worker in ``mode`` ("train" or "infer")."""
    return settings["steps"] * (INFER_STEP_FACTOR if mode == "infer" else 1)


def _as_float32(out):
    """``out`` as a float32 numpy array (bf16 outputs are cast first)."""
    import numpy as np

    if out.dtype == np.float32:  # astype on a fused fp32 output fails in MXNet 1.9.1
        return out.asnumpy()
    return out.astype("float32").asnumpy()


def _ours_precision(variant):
    """``(precision actually used, reason if bf16 is not available)``."""
    import mxnet as mx
    from gluon_resnet.precision import resolve_precision

    if variant.precision != "bf16":
        return "fp32", None
    used = resolve_precision("bf16", [mx.cpu()], notice=lambda message: None)
    if used != "bf16":
        return used, "bf16 unavailable (no AVX512-BF16/AMX-BF16, or GLUON_RESNET_DISABLE_BF16 set)"
    return used, None


def work_variant(variant, settings):
    """Train or evaluate for ``warmup + steps`` batches; images per second of the timed ones."""
    import mxnet as mx
    from mxnet import gluon, init

    ctx = mx.cpu()
    X, y = _random_batch(settings)
    batches = TimedBatches(X, y, settings["warmup"], timed_steps(variant.mode, settings))
    if variant.side == "ref":
        import d2lzh as d2l

        net = book_resnet18()
        net.initialize(init=init.Xavier(), ctx=ctx)
        with contextlib.redirect_stdout(sys.stderr):  # train_ch5 prints its epoch line
            if variant.mode == "train":
                trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.05})
                # The evaluation train_ch5 runs after the epoch sees one image, untimed.
                d2l.train_ch5(net, batches, [(X[:1], y[:1])], settings["batch_size"], trainer,
                              ctx, 1)
            else:
                d2l.evaluate_accuracy(batches, net, ctx)
        return {"images_per_s": batches.images_per_second(), "max_rss_mib": max_rss_mib()}

    from gluon_resnet.experiment import TrainConfig, build_network, build_trainer, seed_everything
    from gluon_resnet.precision import enable_bf16
    from gluon_resnet.training import Learner, evaluate_accuracy

    precision, why_not = _ours_precision(variant)
    if why_not:
        return {"unavailable": why_not}
    config = TrainConfig(batch_size=settings["batch_size"], resize=settings["size"])
    seed_everything(config.seed)
    if precision == "bf16":
        enable_bf16()  # before the network is built
    if variant.name in ("infer_fused", "infer_bf16"):
        from gluon_resnet.models import get_model

        net = get_model(config.model, num_classes=config.num_classes)
        net.initialize(init.Xavier(), ctx=ctx)
        # oneDNN's partitioner needs the parameter shapes: one imperative call on the
        # benchmark's batch first.  Partitioning a network whose shapes are still
        # deferred (or were inferred on another batch shape) fails at its second call
        # with "We can't generate TBlob for MKLDNN data" in MXNet 1.9.1.
        # The environment variable MXNET_SUBGRAPH_BACKEND=MKLDNN alone does not
        # partition a Gluon network in 1.9.1 (checked with MKLDNN_VERBOSE=1).
        unfused = _as_float32(net(X))
        net.hybridize(backend="MKLDNN", static_alloc=True)
        fused_diff = float(abs(_as_float32(net(X)) - unfused).max())
    else:
        net = build_network(config, [ctx])
    if variant.mode == "train":
        trainer = build_trainer(config, net)
        learner = Learner(net, batches, None, trainer, [ctx], handle_signals=False)
        learner.fit(1)
    else:
        evaluate_accuracy(batches, net, [ctx])
    from gluon_resnet.precision import bf16_kernels

    result = {"images_per_s": batches.images_per_second(), "max_rss_mib": max_rss_mib(),
              "precision": precision, "kernels": bf16_kernels() if precision == "bf16" else "fp32"}
    if variant.name == "train_fp32":
        result["auto"] = cached_auto(config, settings)
    if variant.name == "infer_fused":
        result["max_abs_diff_vs_unfused"] = fused_diff
    return result


def cached_auto(config, settings):
    """autoprecision's cached decisions for this benchmark's cases, per mode, or None.

    Read in the worker, so that the machine key (ISA cap, threads, AMX) is the tier's.
    """
    from gluon_resnet.autoprecision import INFER_BATCH, Case, cached_entries, read_cache

    entries = read_cache(notice=lambda message: None)
    size = (settings["size"], settings["size"])
    found = {}
    for mode, batch, devices in (("train", settings["batch_size"], config.ctx),
                                 ("infer", INFER_BATCH, "cpu(0)")):
        case = Case(config.model, 1, size, batch, devices, mode, None, config.num_classes)
        exact, nearest = cached_entries(case, entries)
        entry = exact or nearest
        found[mode] = None if entry is None else {
            "precision": entry["precision"], "exact": exact is not None,
            "measured": entry["measured"], "fp32": entry["fp32"], "bf16": entry["bf16"],
            "batch": entry["batch"], "size": list(entry["size"])}
    return found


def work_ort(settings):
    """ONNX Runtime on the chapter network exported as ``gluon-resnet export`` does."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"unavailable": "onnxruntime is not installed (pip install onnxruntime)"}
    import shutil
    import tempfile

    import mxnet as mx
    from mxnet import init
    from gluon_resnet.data import DataDescription
    from gluon_resnet.experiment import TrainConfig
    from gluon_resnet.export import ExportError, PixelInput, export_onnx
    from gluon_resnet.models import get_model

    config = TrainConfig(batch_size=settings["batch_size"], resize=settings["size"])
    s = settings["size"]
    net = get_model(config.model, num_classes=config.num_classes)
    net.initialize(init.Xavier())
    wrapped = PixelInput(net, prefix="export_")
    wrapped.params.initialize()
    wrapped.hybridize()
    wrapped(mx.nd.zeros((1, 1, s, s)))
    description = DataDescription.from_dict(
        {"classes": [str(i) for i in range(config.num_classes)], "size": [s, s],
         "channels": 1, "mean": None, "std": None})
    folder = tempfile.mkdtemp(prefix="gluon_resnet-bench-")
    try:
        path = export_onnx(wrapped, description, config, os.path.join(folder, "net.onnx"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = _all_cores()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except ExportError as exc:
        return {"unavailable": "ONNX export failed: %s" % exc}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    X, _ = _random_batch(settings)
    feed = {"data": X.asnumpy()}
    steps = timed_steps("infer", settings)
    for _ in range(settings["warmup"]):
        session.run(None, feed)
    start = time.perf_counter()
    for _ in range(steps):
        session.run(None, feed)
    rate = settings["batch_size"] * steps / (time.perf_counter() - start)
    return {"images_per_s": rate, "max_rss_mib": max_rss_mib(), "precision": "fp32",
            "onnxruntime_version": ort.__version__, "threads": _all_cores(),
            "isa_cap": "none (%s)" % ORT_UNCAPPED}


def _gflops(fn, arg, flop, reps):
    fn(arg).wait_to_read()  # warm-up: allocation, kernel selection
    start = time.perf_counter()
    for _ in range(reps):
        out = fn(arg)
    out.wait_to_read()
    return flop * reps / (time.perf_counter() - start) / 1e9


def _int8_fully_connected(n, weight=None):
    """``m -> int32 m @ w.T`` through oneDNN's int8 inner product, for ``(n, n)`` arrays.

    ``m`` is converted once to uint8 (as int8 convolutions read activations
    after a ReLU, scaled so its largest value is 255) and the weights
    ``weight`` (``(n, n)`` int8, random in [-63, 63] by default) are int8: the
    same ``u8 x s8 -> s32`` kernels the quantized convolutions use.  Counted
    like fp32: 2 n**3 operations per product.  Without VNNI, oneDNN adds pairs
    of products in int16 (``vpmaddubsw``), which saturates for weights beyond
    7 bits; the default weights stay within them, so the product is exact.
    """
    import mxnet as mx

    if weight is None:
        weight = mx.nd.random.uniform(-63, 63, shape=(n, n)).astype("int8")
    low, high = mx.nd.array([-1.0]), mx.nd.array([1.0])
    zero = mx.nd.array([0.0])
    data = {}

    def product(m):
        if "u8" not in data:
            data["u8"] = (m * 255 / (m.max() + 1e-12)).astype("uint8")
        return mx.nd.contrib.quantized_fully_connected(
            data["u8"], weight, zero, high, low, high, num_hidden=n, no_bias=True)[0]

    return product


def work_peak(settings):
    """GFLOP/s of a large square matrix product: fp32, bf16 and int8 (GOP/s).

    ``nd.dot`` and ``nd.FullyConnected`` (oneDNN inner product, the library the
    convolutions use) are both timed; ``nd.dot`` in bf16 is tried and reported
    unsupported if MXNet refuses it.  int8 is oneDNN's ``u8 x s8`` inner
    product (``_int8_fully_connected``), the kernels of the int8 rows.
    """
    import mxnet as mx
    import numpy as np
    from gluon_resnet.precision import bf16_available

    n, reps = settings["dot_size"], settings["dot_reps"]
    flop = 2.0 * n ** 3
    a = mx.nd.random.uniform(shape=(n, n))

    def dot(m):
        return mx.nd.dot(m, m)

    def fully_connected(m):
        return mx.nd.FullyConnected(m, m, no_bias=True, num_hidden=n)

    result = {"dot_fp32": _gflops(dot, a, flop, reps),
              "fc_fp32": _gflops(fully_connected, a, flop, reps),
              "fc_int8": _gflops(_int8_fully_connected(n), a, flop, reps)}
    cap = os.environ.get("DNNL_MAX_CPU_ISA", "").upper()
    if not bf16_available() or (cap and not tiers.has_bf16(cap)):
        reason = ("bf16 unavailable at tier %s" % cap if bf16_available() else
                  "bf16 unavailable (no AVX512-BF16/AMX-BF16, or GLUON_RESNET_DISABLE_BF16 set)")
        result["fc_bf16"] = result["dot_bf16"] = {"unavailable": reason}
        return result
    b = a.astype(np.dtype([("bfloat16", np.uint16)]))  # MXNet's bfloat16 dtype
    result["fc_bf16"] = _gflops(fully_connected, b, flop, reps)
    try:
        result["dot_bf16"] = _gflops(dot, b, flop, reps)
    except mx.base.MXNetError as exc:
        text = str(exc)
        why = ("it supports only float32/float64 on CPUs" if "dot only supports" in text
               else " ".join(text.split())[-160:])
        result["dot_bf16"] = {"unavailable": "nd.dot refuses bfloat16 in MXNet %s: %s"
                                             % (mx.__version__, why)}
    return result


def work_loader(settings):
    """Images per second of the Fashion-MNIST training loader alone (resize to ``size``)."""
    import gluon_resnet.data as data

    try:
        files = data.find_fashion_mnist(download=False)
    except data.DatasetNotFoundError as exc:
        return {"unavailable": "Fashion-MNIST files not found, loader not measured (%s)"
                               % str(exc).splitlines()[0]}
    root = os.path.dirname(files.train_images)
    # Reading the files is done (and cached) before the clock starts; every batch is
    # waited for.
    train_iter, _ = data.load_data_fashion_mnist(settings["batch_size"], settings["size"], root,
                                                 limit=settings["loader_limit"])
    start = time.perf_counter()
    for X, y in train_iter:
        X.wait_to_read()
        y.wait_to_read()
    rate = train_iter.num_examples / (time.perf_counter() - start)
    return {"images_per_s": rate, "root": root}


def work_torch(variant, settings):
    """The PyTorch side: images per second, or unavailable without PyTorch."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return {"unavailable": "PyTorch is not installed (pip install -e '.[bench]')"}
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_reference import measure

    if variant.precision == "bf16" and not torch.backends.mkldnn.is_available():
        return {"unavailable": "PyTorch was built without oneDNN"}
    rate = measure(variant.mode, variant.precision == "bf16", settings["batch_size"],
                   settings["size"], settings["warmup"], timed_steps(variant.mode, settings))
    return {"images_per_s": rate, "max_rss_mib": max_rss_mib(), "precision": variant.precision,
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}


def work_int8(variant, settings):
    """The int8 rows (``int8_workers``): images per second and accuracy of each int8 model."""
    import int8_workers

    settings = dict(INT8_DEFAULTS, **settings)
    steps = timed_steps("infer", settings)
    if variant.side == "ours":
        result = int8_workers.work_int8_ours(settings, settings["warmup"], steps)
    elif variant.side == "ort":
        result = int8_workers.work_int8_ort(settings, settings["warmup"], steps, _all_cores())
    else:
        result = int8_workers.work_int8_torch(settings, settings["warmup"], steps)
    result.setdefault("max_rss_mib", max_rss_mib())
    return result


def run_worker(name, settings):
    variant = VARIANT_BY_NAME.get(name)
    if variant is not None and variant.precision == "int8":
        import gluon_resnet  # noqa: F401  (every int8 side starts from gluon_resnet's network)

        result = work_int8(variant, settings)
        result["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS", "default")
        return result
    if variant is not None and variant.side == "torch":
        result = work_torch(variant, settings)
        result["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS", "PyTorch default")
        return result
    if variant is not None and variant.side == "ort":
        import gluon_resnet  # noqa: F401  (the export needs MXNet; ORT has its own threads)

        result = work_ort(settings)
        result["omp_num_threads"] = "ONNX Runtime's own (intra_op_num_threads)"
        return result
    if variant is None or variant.side == "ours":
        # Ours (and the peak) run as `gluon-resnet train` does: gluon_resnet loads
        # MXNet with one OpenMP thread per core.  The book's side keeps MXNet's
        # default, as a reader running the book's code gets it.
        import gluon_resnet  # noqa: F401
    if name == "peak":
        result = work_peak(settings)
    elif name == "loader":
        result = work_loader(settings)
    else:
        result = work_variant(VARIANT_BY_NAME[name], settings)
    result["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS", "MXNet default")
    return result


# ---------------------------------------------------------------------------
# The driver: alternate workers round by round, then summarise
# ---------------------------------------------------------------------------

#: Seconds a worker may run before it counts as failed.
WORKER_TIMEOUT = 3600


#: The caller's environment, before anything here imported gluon_resnet (which
#: sets OMP_NUM_THREADS for its own process).
_CALLER_ENV = dict(os.environ)


#: Caps set by the caller would change every tier alike: each tier sets its own.
_CAP_VARIABLES = ("DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def _worker_env(name=None, extra=None):
    env = dict(_CALLER_ENV)
    # A subgraph backend inherited from the caller would change what is measured.
    env.pop("MXNET_SUBGRAPH_BACKEND", None)
    if extra is not None:  # a tier: its caps, and no one else's
        for key in _CAP_VARIABLES:
            env.pop(key, None)
        env.update(extra)
    variant = VARIANT_BY_NAME.get(name)
    if variant is not None:
        env.update(variant.env)
    return env


def side_of(name):
    """The side whose cap a worker gets: the variant's, ``mxnet`` for peak and loader."""
    variant = VARIANT_BY_NAME.get(name)
    return variant.side if variant is not None else "mxnet"


def launch(name, settings, env=None):
    """Run worker ``name`` in a fresh process; its result dict, or ``{"error": ...}``.

    ``env``: variables on top of the caller's (a tier's caps).
    """
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name,
           "--settings", json.dumps(settings)]
    try:
        proc = subprocess.run(cmd, env=_worker_env(name, env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": "worker %s did not finish within %d s" % (name, WORKER_TIMEOUT)}
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        return {"error": "worker %s exited with %d: %s" % (name, proc.returncode, tail)}
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def _median(values):
    return statistics.median(values) if values else None


def _ratio(a, b):
    return a / b if a is not None and b else None


def default_rows(runs, variants):
    """``(training row, inference row, why)`` that gluon-resnet's default precision runs.

    autoprecision's cached decision (read by the train_fp32 worker) where there is
    one, else auto's rule on this run's figures.
    """
    from_cache = [r["auto"] for r in runs["train_fp32"] if isinstance(r.get("auto"), dict)]
    picked, why = {}, {}
    pairs = {"train": ("train_fp32", "train_bf16"), "infer": ("infer_fused", "infer_bf16")}
    for mode, (fp32, bf16) in pairs.items():
        cached = from_cache[0].get(mode) if from_cache else None
        if not variants[bf16]["available"]:
            picked[mode] = fp32
            why[mode] = ("bf16 not measured (%s)" % NOT_SELECTED
                         if variants[bf16].get("unavailable") == NOT_SELECTED else "no bf16 here")
        elif cached is not None:
            picked[mode] = bf16 if cached["precision"] == "bf16" else fp32
            why[mode] = "autoprecision's cached %s decision (%s case: batch %d at %dx%d, " \
                "%.0f img/s fp32, %.0f bf16, measured %s)" % (
                    mode, "this" if cached["exact"] else "nearest", cached["batch"],
                    cached["size"][0], cached["size"][1], cached["fp32"], cached["bf16"],
                    cached["measured"])
        else:
            from gluon_resnet.autoprecision import choose

            a, b = variants[fp32]["images_per_s"], variants[bf16]["images_per_s"]
            picked[mode] = bf16 if a and b and choose(a, b) == "bf16" else fp32
            why[mode] = "nothing cached by autoprecision: auto's rule (bf16 when 5% faster) " \
                "on this run's figures"
    return picked["train"], picked["infer"], why


def collect(runs, settings, meta, errors, tier=None, capped=False):
    """The summary (what the JSON holds) from the per-round worker results."""
    scale = (settings["size"] / 96.0) ** 2
    gflop = {"train": TRAIN_GFLOP_96 * scale, "infer": INFER_GFLOP_96 * scale}

    peak = {}
    for key in ("dot_fp32", "fc_fp32", "fc_bf16", "dot_bf16", "fc_int8"):
        values = [r[key] for r in runs["peak"] if isinstance(r.get(key), (int, float))]
        notes = [r[key]["unavailable"] for r in runs["peak"] if isinstance(r.get(key), dict)]
        peak[key] = ({"gflops": _median(values), "runs": values} if values
                     else {"gflops": None, "unavailable": notes[0] if notes else "not measured"})
    fp32_candidates = [peak[k]["gflops"] for k in ("dot_fp32", "fc_fp32") if peak[k]["gflops"]]
    bf16_candidates = [peak[k]["gflops"] for k in ("dot_bf16", "fc_bf16") if peak[k]["gflops"]]
    peak["fp32_gflops"] = max(fp32_candidates) if fp32_candidates else None
    peak["bf16_gflops"] = max(bf16_candidates) if bf16_candidates else None
    peak["int8_gflops"] = peak["fc_int8"]["gflops"]
    peak["matrix_size"] = settings["dot_size"]

    variants = {}
    for v in VARIANTS:
        results = runs[v.name]
        values = [r["images_per_s"] for r in results if "images_per_s" in r]
        notes = [r["unavailable"] for r in results if "unavailable" in r]
        entry = {"mode": v.mode, "side": v.side, "precision": v.precision, "label": v.label,
                 "description": v.description, "runs": values}
        if not values:
            entry.update(available=False, images_per_s=None,
                         unavailable=notes[0] if notes else "failed (see errors)")
        else:
            rate = _median(values)
            achieved = rate * gflop[v.mode]
            peak_value = peak["%s_gflops" % v.precision]
            entry.update(available=True, images_per_s=rate, gflops=achieved,
                         share_of_peak=_ratio(achieved, peak_value),
                         max_rss_mib=max(r["max_rss_mib"] for r in results if "max_rss_mib" in r))
            diffs = [r["max_abs_diff_vs_unfused"] for r in results
                     if "max_abs_diff_vs_unfused" in r]
            if diffs:
                entry["max_abs_diff_vs_unfused"] = max(diffs)
            for key in ("accuracy", "fp32_accuracy"):
                found = [r[key] for r in results if r.get(key) is not None]
                if found:
                    entry[key] = found[0]  # the same model and images every round
        variants[v.name] = entry
    for v in VARIANTS:
        ref = variants["%s_ref" % v.mode]
        variants[v.name]["ratio"] = (_ratio(variants[v.name]["images_per_s"], ref["images_per_s"])
                                     if variants[v.name]["available"] else None)

    loader_values = [r["images_per_s"] for r in runs["loader"] if "images_per_s" in r]
    loader_notes = [r["unavailable"] for r in runs["loader"] if "unavailable" in r]
    ours_train = [variants[n]["images_per_s"] for n in ("train_fp32", "train_bf16")
                  if variants[n]["available"]]
    best_train = max(ours_train) if ours_train else None
    if loader_values:
        loader = {"available": True, "images_per_s": _median(loader_values), "runs": loader_values,
                  "resize": settings["size"], "limit": settings["loader_limit"]}
        loader["ratio_to_training"] = _ratio(loader["images_per_s"], best_train)
    else:
        loader = {"available": False, "images_per_s": None, "ratio_to_training": None,
                  "unavailable": loader_notes[0] if loader_notes else "failed (see errors)"}

    def best(names):
        ratios = [variants[n]["ratio"] for n in names if variants[n]["ratio"] is not None]
        return max(ratios) if ratios else None

    rss = [variants[n]["max_rss_mib"] for n in ("train_fp32", "train_bf16")
           if variants[n]["available"]]

    def rate(name):
        return variants[name]["images_per_s"] if variants[name]["available"] else None

    default, default_infer, default_why = default_rows(runs, variants)
    torch_rates = [rate(n) for n in ("train_torch_fp32", "train_torch_bf16") if rate(n)]
    # Figures between rows, reported without goals: benchmarks/RESULTS.md compares them.
    comparisons = [
        ("default training vs book", variants[default]["ratio"], "x"),
        ("default training vs PyTorch fastest eager",
         _ratio(rate(default), max(torch_rates) if torch_rates else None), "x"),
        ("default training vs PyTorch bf16", _ratio(rate(default), rate("train_torch_bf16")),
         "x"),
        ("default training vs PyTorch fp32", _ratio(rate(default), rate("train_torch_fp32")),
         "x"),
        ("bf16 training vs ours fp32", _ratio(rate("train_bf16"), rate("train_fp32")), "x"),
        ("bf16 inference vs ours fp32 fused", _ratio(rate("infer_bf16"), rate("infer_fused")),
         "x"),
        ("inference vs book (best of bf16, fused fp32)", best(["infer_bf16", "infer_fused"]),
         "x"),
        ("default inference vs ONNX Runtime", _ratio(rate(default_infer), rate("infer_ort")),
         "x"),
        ("int8 inference vs ours fp32 fused", _ratio(rate("infer_int8"), rate("infer_fused")),
         "x"),
        ("int8 inference vs ours bf16 fused", _ratio(rate("infer_int8"), rate("infer_bf16")),
         "x"),
        ("int8 inference vs ONNX Runtime int8",
         _ratio(rate("infer_int8"), rate("infer_ort_int8")), "x"),
        ("int8 inference vs PyTorch int8", _ratio(rate("infer_int8"), rate("infer_torch_int8")),
         "x"),
        ("loader vs ours training (fastest)", loader["ratio_to_training"], "x"),
        ("peak RSS of ours training", max(rss) if rss else None, " MiB"),
    ]
    comparisons = [{"name": name, "value": value, "unit": unit}
                   for name, value, unit in comparisons]
    return {"meta": meta, "settings": settings, "gflop_per_image": gflop, "peak": peak,
            "tier": tier, "capped": capped, "default_training": default,
            "default_inference": default_infer, "default_why": default_why,
            "variants": variants, "loader": loader,
            "comparisons": comparisons, "errors": errors}


def _fmt(value, spec, none="-"):
    return none if value is None else format(value, spec)


def format_report(summary):
    """The printed header and table."""
    meta, s, peak = summary["meta"], summary["settings"], summary["peak"]
    lines = [
        "gluon_resnet benchmark: chapter ResNet-18, book (d2lzh) and PyTorch vs gluon_resnet",
        "date %s | CPU %s | %d cores | mxnet %s | load average at start %s"
        % (meta["date"], meta["cpu_model"], meta["cores"], meta["mxnet_version"],
           " ".join("%.2f" % x for x in meta["load_average_start"])),
        "command: %s" % meta["command"],
        "batch %d, %dx%d, %d round(s) x %d timed training step(s) (inference %d) after %d "
        "warm-up; medians over rounds"
        % (s["batch_size"], s["size"], s["size"], s["rounds"], s["steps"],
           timed_steps("infer", s), s["warmup"]),
        "GFLOP per image: training %.3f, inference %.3f"
        % (summary["gflop_per_image"]["train"], summary["gflop_per_image"]["infer"]),
    ]
    if summary.get("tier"):
        lines.append("tier %s: %s" % (summary["tier"], tier_text(summary)))
    lines.append("")
    header = "%-17s %10s %8s %9s %8s %10s" % ("variant", "img/s", "ratio", "GFLOP/s", "% peak",
                                              "peak RSS")
    for mode, title in (("train", "training"), ("infer", "inference")):
        lines += [title, header]
        for v in VARIANTS:
            if v.mode != mode:
                continue
            e = summary["variants"][v.name]
            if not e["available"]:
                lines.append("%-17s %s" % (v.label, "unavailable: " + e["unavailable"]))
                continue
            share = e["share_of_peak"]
            ratio = "-" if e["ratio"] is None else "%.2fx" % e["ratio"]  # no book row: --only
            lines.append("%-17s %10.1f %8s %9.1f %8s %7.0f MiB"
                         % (v.label, e["images_per_s"], ratio, e["gflops"],
                            _fmt(None if share is None else 100 * share, ".1f"),
                            e["max_rss_mib"]))
            if "accuracy" in e:
                lines.append("%-17s (test acc %.4f%s)" % (
                    "", e["accuracy"], "" if "fp32_accuracy" not in e
                    else ", fp32 %.4f" % e["fp32_accuracy"]))
            if "max_abs_diff_vs_unfused" in e:
                lines.append("%-17s (fused outputs differ from unfused by at most %.1e)"
                             % ("", e["max_abs_diff_vs_unfused"]))
        lines.append("")

    def peak_text(key):
        p = peak[key]
        return "%.1f" % p["gflops"] if p["gflops"] is not None else "unavailable (%s)" % p[
            "unavailable"]

    lines += [
        "peak (%dx%d matrix product, GFLOP/s): nd.dot fp32 %s | FullyConnected fp32 %s | "
        "FullyConnected bf16 %s | nd.dot bf16 %s | quantized FullyConnected int8 %s (GOP/s)"
        % (peak["matrix_size"], peak["matrix_size"], peak_text("dot_fp32"), peak_text("fc_fp32"),
           peak_text("fc_bf16"), peak_text("dot_bf16"), peak_text("fc_int8")),
        "  %% peak uses the best fp32 figure (%s) for fp32 rows, the best bf16 figure (%s) "
        "for bf16 rows and the int8 figure (%s) for int8 rows"
        % (_fmt(peak["fp32_gflops"], ".1f"), _fmt(peak["bf16_gflops"], ".1f"),
           _fmt(peak["int8_gflops"], ".1f")),
    ]
    loader = summary["loader"]
    if loader["available"]:
        lines.append("loader (Fashion-MNIST, resize %d, %s images): %.0f img/s = %sx ours training"
                     % (loader["resize"], loader["limit"] or "all 60000", loader["images_per_s"],
                        _fmt(loader["ratio_to_training"], ".1f")))
    else:
        lines.append("loader: not measured: %s" % loader["unavailable"])
    lines.append("default training (gluon-resnet train's precision here): %s"
                 % VARIANT_BY_NAME[summary["default_training"]].label)
    lines.append("default inference (gluon-resnet eval's): %s"
                 % VARIANT_BY_NAME[summary["default_inference"]].label)
    for mode, title in (("train", "training"), ("infer", "inference")):
        lines.append("  %s default: %s" % (title, summary["default_why"][mode]))
    lines += ["", "comparisons"]
    for c in summary["comparisons"]:
        spec = ".0f" if c["unit"] == " MiB" else ".2f"
        value = "n/a" if c["value"] is None else format(c["value"], spec) + c["unit"]
        lines.append("  %-46s %10s" % (c["name"], value))
    if summary["errors"]:
        lines += ["", "ERRORS"] + ["  " + e.replace("\n", "\n    ") for e in summary["errors"]]
    return "\n".join(lines)


def tier_text(summary):
    if not summary["capped"]:
        return "this CPU's own, uncapped"
    return ("capped: MXNet DNNL_MAX_CPU_ISA=%s, PyTorch ONEDNN_MAX_CPU_ISA=%s ATEN_CPU_CAPABILITY"
            "=%s; %s" % (summary["tier"], summary["tier"],
                         "avx2" if summary["tier"] == "AVX2" else "avx512", ORT_UNCAPPED))


def tier_runs(tier, plan, flags, settings, only=None):
    """``[(worker name, env or None when not run, note)]`` of one tier.

    bf16 rows only at tiers with bf16; the loader (no ISA in it) at the last tier only;
    with ``only`` (a set of worker names), the others are not run.
    """
    work = []
    for name in WORKERS:
        variant = VARIANT_BY_NAME.get(name)
        if only is not None and name not in only:
            work.append((name, None, NOT_SELECTED))
        elif variant is not None and variant.precision == "bf16" and not tiers.has_bf16(tier):
            work.append((name, None, "tier %s has no bf16" % tier))
        elif name == "loader" and tier != plan[-1]:
            work.append((name, None, "the loader is measured at tier %s only" % plan[-1]))
        else:
            work.append((name, tiers.worker_env(tier, side_of(name), flags), None))
    return work


def parse_only(text):
    """The set of worker names in ``--only``'s comma-separated ``text``; exits naming a bad one."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKERS]
    if unknown or not names:
        raise SystemExit("bench.py: --only: unknown worker %s; choose from %s"
                         % (", ".join(map(repr, unknown)) or "(none given)", ", ".join(WORKERS)))
    return set(names)


def resolve_settings(args):
    base = dict(TINY_SETTINGS if args.tiny else FULL_SETTINGS)
    for key in ("batch_size", "size", "rounds", "steps", "warmup", "dot_size", "loader_limit"):
        value = getattr(args, key)
        if value is not None:
            base[key] = value
    for key in ("batch_size", "size", "rounds", "steps", "dot_size"):
        if base[key] <= 0:
            raise SystemExit("bench.py: --%s must be a positive integer" % key.replace("_", "-"))
    if base["warmup"] < 1:
        raise SystemExit("bench.py: --warmup must be at least 1 (the first step builds the graph)")
    base["tiny"] = bool(args.tiny)
    for key in INT8_DEFAULTS:
        value = getattr(args, key, None)
        base[key] = os.path.abspath(value) if key == "int8_run" and value else (
            value if value is not None else INT8_DEFAULTS[key])
    return base


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, help="images per batch (default 256)")
    parser.add_argument("--size", type=int, help="image side in pixels (default 96)")
    parser.add_argument("--rounds", type=int, help="rounds of alternated runs (default 5)")
    parser.add_argument("--steps", type=int, help="timed steps per run (default 4)")
    parser.add_argument("--warmup", type=int, help="untimed steps before them (default 2)")
    parser.add_argument("--dot-size", type=int, help="side of the peak matrix product (2048)")
    parser.add_argument("--loader-limit", type=int,
                        help="images the loader pass reads (default: all 60000)")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    parser.add_argument("--tiny", action="store_true",
                        help="batch 8, 32x32, 1 round, 1 step, small matrix: a smoke test")
    parser.add_argument("--jobs", type=int, default=1, help="with --tiny only: run this many "
                        "workers at once (a quicker smoke test; timings of workers that share "
                        "the cores mean nothing)")
    parser.add_argument("--tiers", default="auto",
                        help="ISA tiers: auto (this CPU's own, uncapped; the default), all "
                        "(every tier it can emulate), or a list such as AVX2,AVX512_CORE")
    parser.add_argument("--save", action="store_true",
                        help="append the rows to RESULTS-DIR/<machine kind>.jsonl and "
                        "rewrite the tables of RESULTS.md beside RESULTS-DIR")
    parser.add_argument("--results-dir", metavar="DIR",
                        default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             "results"),
                        help="where --save writes (default benchmarks/results)")
    parser.add_argument("--only", metavar="NAMES",
                        help="run only these workers (comma-separated, e.g. "
                        "infer_fused,infer_ort); not with --save")
    parser.add_argument("--int8-run", metavar="RUN", help="a chapter_resnet18 run at --size: "
                        "the int8 rows quantize its weights, calibrate on its training images "
                        "and report accuracy on its test images (default: random weights)")
    parser.add_argument("--calib-images", type=int, help="calibration images of the int8 rows "
                        "with --int8-run (default 500)")
    parser.add_argument("--test-images", type=int, help="test images of the int8 rows' accuracy "
                        "(default 1000)")
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = run_worker(args.worker, json.loads(args.settings))
        sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
        sys.stdout.flush()
        return 0

    settings = resolve_settings(args)
    if args.jobs < 1 or (args.jobs > 1 and not args.tiny):
        raise SystemExit("bench.py: --jobs runs workers side by side, so their timings mean "
                         "nothing: it takes a positive integer, and more than 1 only with --tiny")
    only = parse_only(args.only) if args.only is not None else None
    if only is not None and args.save:
        raise SystemExit("bench.py: --save records whole tiers; run it without --only")
    # The driver measures nothing; the workers get the caller's environment (_CALLER_ENV).
    import gluon_resnet  # noqa: F401  (before MXNet, or it warns about threads)
    import mxnet as mx
    from gluon_resnet._cpu import cpu_flags
    from gluon_resnet.devices import cpu_model

    flags = set(cpu_flags())
    plan = tiers.plan_tiers(args.tiers, flags)

    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "cpu_model": cpu_model(), "cores": _all_cores(), "mxnet_version": mx.__version__,
            "python": platform.python_version(),
            "command": " ".join(shlex.quote(a) for a in ["python"] + sys.argv),
            "load_average_start": list(os.getloadavg())}
    runs = {tier: {name: [] for name in WORKERS} for tier in plan}
    errors = {tier: [] for tier in plan}
    started = time.perf_counter()
    for r in range(settings["rounds"]):
        planned = [(tier, name, env, note) for tier in plan
                   for name, env, note in tier_runs(tier, plan, flags, settings, only)]

        def run(item):
            _, name, env, note = item
            return {"unavailable": note} if env is None else launch(name, settings, env)

        # One at a time, in order; --tiny --jobs N: N at once, the results still in order.
        pool = concurrent.futures.ThreadPoolExecutor(args.jobs) if args.jobs > 1 else None
        try:
            results = pool.map(run, planned) if pool else map(run, planned)
            for (tier, name, _, _), result in zip(planned, results):
                if "error" in result:
                    errors[tier].append("round %d, tier %s: %s" % (r + 1, tier, result["error"]))
                runs[tier][name].append(result)
                print("round %d/%d %-16s %-16s %s"
                      % (r + 1, settings["rounds"], tier, name, _progress_text(result)),
                      file=sys.stderr, flush=True)
        finally:
            if pool:  # a Ctrl-C starts no more workers
                pool.shutdown(wait=False, cancel_futures=True)
    meta["seconds"] = time.perf_counter() - started
    meta["load_average_end"] = list(os.getloadavg())
    top = tiers.supported_tiers(flags)[-1]
    summaries = [collect(runs[tier], settings, meta, errors[tier], tier, tier != top)
                 for tier in plan]
    print("\n\n".join(format_report(summary) for summary in summaries))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summaries[0] if len(summaries) == 1
                      else {"meta": meta, "settings": settings, "tiers": summaries,
                            "errors": sum(errors.values(), [])}, f, indent=1)
    if args.save:
        versions = {"mxnet": mx.__version__, "torch": _version("torch"),
                    "onnxruntime": _version("onnxruntime")}
        rows = tiers.data_rows(summaries, meta, settings, versions, flags)
        path = tiers.append_rows(rows, args.results_dir,
                                 tiers.machine_kind(meta["cpu_model"], flags))
        print("%d rows appended to %s" % (len(rows), path), file=sys.stderr)
        document = os.path.join(os.path.dirname(os.path.abspath(args.results_dir)), "RESULTS.md")
        try:
            results_tables.update(args.results_dir, document)
        except ValueError as e:  # the rows are saved; only the tables wait
            print("bench.py: the rows are saved, but %s was not rewritten: %s"
                  % (document, e), file=sys.stderr)
            return 1
        print("tables of %s written from %s" % (document, args.results_dir), file=sys.stderr)
    return 1 if any(errors.values()) else 0


def _version(package):
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _progress_text(result):
    if "error" in result:
        return "FAILED"
    if "unavailable" in result:
        return "unavailable"
    if "images_per_s" in result:
        return "%.1f img/s" % result["images_per_s"]
    return " ".join("%s %.1f" % (k, v) for k, v in result.items() if isinstance(v, float))


if __name__ == "__main__":
    sys.exit(main())
