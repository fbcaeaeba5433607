"""A run's int8 network on disk: ``int8.zip`` beside the checkpoint, read back and checked.

``gluon-resnet quantize`` (``gluon_resnet.quantize``) makes it; ``eval``,
``predict`` and ``load_trained`` read it with ``precision="int8"`` (or
``"auto"``, see ``auto_int8``).  The file is a zip archive with three members:

- ``symbol.json``: the quantized graph (oneDNN's fused int8 convolutions,
  ``_sg_mkldnn_conv``, with the calibrated ranges as attributes),
- ``model.params``: its parameters (``mx.nd.save`` format, ``arg:``/``aux:``
  names; the weights are fp32 and are quantized by the operators themselves),
- ``record.json``: how it was made (see ``gluon_resnet.quantize``), among it
  ``weights_sha256``, the digest of the checkpoint's parameters it came from.

It takes what the run's fp32 network takes: ``(N, C, H, W)`` float32 images,
normalised as in training (the loaders do it), and gives ``(N, classes)``
logits.  It is written like every file of a run (``checkpoint.atomic_write``):
a kill leaves the old file or the new one.  A file whose digest is not the
checkpoint's (another run's, or made before more training) is refused.

MXNet's quantized graph is built by the legacy symbol API, so int8 networks
run in legacy mode only: in numpy mode (``npx.set_np()``) loading one is
refused with a sentence that says how to switch back.
"""

import datetime
import json
import os
import shutil
import tempfile
import time
import warnings
import zipfile

from ._mxnet import mx

from .arrays import numpy_mode
from .autoprecision import MEASURE_ENV, THRESHOLD, cache_path, machine
from .checkpoint import CheckpointError, atomic_write

__all__ = ["INT8_NAME", "FORMAT", "Int8Error", "int8_file", "write_int8", "read_int8_record",
           "load_int8", "auto_int8", "show_int8_decisions", "refuse_numpy_mode",
           "AUTO_MAX_DROP"]

#: The int8 network's name in a run folder.
INT8_NAME = "int8.zip"
FORMAT = "gluon_resnet-int8-1"
#: ``auto`` uses an int8 network only if it lost at most this many accuracy points.
AUTO_MAX_DROP = 0.5
#: Batches timed for ``auto``'s decision, after one warm-up batch, and their size.
_TIMED, _BATCH = 3, 64


class Int8Error(CheckpointError):
    """A run's int8 network is missing, damaged, from other weights, or cannot be made."""


def refuse_numpy_mode(what):
    """Raise ``Int8Error`` in numpy mode: MXNet builds quantized graphs in legacy mode only."""
    if numpy_mode():
        raise Int8Error("%s needs MXNet's legacy mode, and numpy mode is on (npx.set_np()): "
                        "call npx.reset_np() first (MXNet 1.9.1 builds quantized graphs, and "
                        "SymbolBlocks, only in legacy mode)" % what)


def int8_file(checkpoint_path):
    """The ``int8.zip`` beside the checkpoint file ``checkpoint_path``."""
    return os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), INT8_NAME)


def write_int8(path, net, record):
    """Write the quantized ``net`` (a ``SymbolBlock`` called once, hybridized) and ``record``.

    Atomic (``checkpoint.atomic_write``); ``SaveError`` when the folder cannot be written.
    """
    record = dict(record, format=FORMAT)

    def write(tmp):
        work = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(tmp))
        try:
            prefix = os.path.join(work, "int8")
            net.export(prefix)
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
                z.write(prefix + "-symbol.json", "symbol.json")
                z.write(prefix + "-0000.params", "model.params")
                z.writestr("record.json", json.dumps(record, indent=1))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    atomic_write(path, write)


def _read(path, run):
    """``(symbol json text, params bytes, record)`` of the file at ``path``."""
    if not os.path.isfile(path):
        raise Int8Error("%s has no int8 network (%s): make one with gluon-resnet quantize "
                        "--params %s" % (run, INT8_NAME, run))
    try:
        with zipfile.ZipFile(path) as z:
            record = json.loads(z.read("record.json").decode("utf-8"))
            symbol, params = z.read("symbol.json").decode("utf-8"), z.read("model.params")
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError("format %r" % (record.get("format") if isinstance(record, dict)
                                            else None))
    except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise Int8Error("%s is damaged or not a gluon_resnet int8 network (%s): make it again "
                        "with gluon-resnet quantize --params %s" % (path, exc, run)) from None
    return symbol, params, record


def read_int8_record(checkpoint):
    """The record of the int8 network of ``checkpoint`` (a ``Checkpoint``), checked to be its own.

    Raises ``Int8Error`` for a missing or damaged file, or one made from other weights.
    """
    return _check(checkpoint, *_read(int8_file(checkpoint.path),
                                     os.path.dirname(checkpoint.path) or "."))[2]


def _check(checkpoint, symbol, params, record):
    run = os.path.dirname(checkpoint.path) or "."
    if record.get("weights_sha256") != checkpoint.weights_digest():
        raise Int8Error("%s was made from other weights than %s holds (another run's, or "
                        "before more training): make it again with gluon-resnet quantize "
                        "--params %s" % (int8_file(checkpoint.path), checkpoint.path, run))
    return symbol, params, record


def load_int8(checkpoint, ctx=None):
    """``(network, record)``: the int8 network of ``checkpoint`` (a ``Checkpoint``) on ``ctx``.

    The network is a ``mxnet.gluon.SymbolBlock``, ``(N, C, H, W) -> (N,
    classes)``, not hybridized.

    Raises
    ------
    Int8Error
        Numpy mode is on; the file is missing, damaged, or made from other weights.
    """
    ctx = ctx or mx.cpu()
    refuse_numpy_mode("an int8 network")
    if ctx.device_type != "cpu":
        raise Int8Error("int8 networks run on the CPU (oneDNN), not on %s" % ctx)
    run = os.path.dirname(checkpoint.path) or "."
    path = int8_file(checkpoint.path)
    symbol, params, record = _check(checkpoint, *_read(path, run))
    try:
        graph = mx.sym.load_json(symbol)
        arrays = mx.nd.load_frombuffer(params)
        with warnings.catch_warnings():  # "Cannot decide type": the input's comes with it
            warnings.filterwarnings("ignore", "Cannot decide type", UserWarning)
            net = mx.gluon.SymbolBlock(graph, mx.sym.var("data"))
        for name, param in net.collect_params().items():
            array = arrays.get("arg:" + name, arrays.get("aux:" + name))
            if array is None:
                raise ValueError("parameter %s is missing" % name)
            param._load_init(array, ctx, cast_dtype=True, dtype_source="saved")
    except (mx.base.MXNetError, ValueError, TypeError, AssertionError) as exc:
        raise Int8Error("%s is damaged (%s): make it again with gluon-resnet quantize --params %s"
                        % (path, str(exc).strip().splitlines()[0], run)) from None
    return net, record


# --- auto: int8 where it passed its check and runs faster here ------------------------------

def _speed_cache():
    return os.path.join(os.path.dirname(cache_path()), "int8.json")


def _images_per_second(net, shape):
    X = mx.nd.random.uniform(shape=(_BATCH,) + tuple(shape))
    net(X).wait_to_read()  # builds oneDNN's primitives
    start = time.perf_counter()
    for _ in range(_TIMED):
        net(X).wait_to_read()
    return round(_TIMED * _BATCH / (time.perf_counter() - start), 1)


def auto_int8(checkpoint, fp32_net, shape, record, notice=print, rival=None):
    """``(use int8?, why)`` for ``precision="auto"`` at inference.

    int8 only when its record passed the ``AUTO_MAX_DROP`` check and it ran at
    least ``autoprecision.THRESHOLD`` faster than the fused fp32 network on
    this machine, and than bf16 where ``auto`` would otherwise infer in bf16:
    ``rival`` is that inference ``autoprecision.Decision``; when it is bf16
    with measured speeds, int8 must beat fp32 by bf16's measured factor
    (``rival.bf16 / rival.fp32``) and the threshold.  The speeds are measured
    here once (a few batches of ``shape = (C, H, W)`` images, about as long
    as evaluating a few hundred images; with ``GLUON_RESNET_AUTO_MEASURE=0``
    only a cached measurement counts), kept in ``int8.json`` beside
    ``precision.json`` under the machine's key and the int8 file's weights
    digest, and read from there afterwards.  ``fp32_net`` is the run's
    network with its weights loaded; it is hybridized here with oneDNN fusion.
    """
    drop = record.get("drop_points")
    if not isinstance(drop, (int, float)) or drop > AUTO_MAX_DROP:
        return False, "auto: the run's int8 network lost %s accuracy points, more than %.1f" % (
            drop, AUTO_MAX_DROP)
    key = {"machine": machine(), "weights_sha256": record["weights_sha256"],
           "shape": list(shape)}
    entries = _read_speeds()
    found = [e for e in entries if e["key"] == key]
    if found:
        entry, when = found[-1], "measured %s" % found[-1]["measured"]
    elif os.environ.get(MEASURE_ENV, "") in ("0", "no", "false", "off"):
        return False, "auto: int8 is not measured on this CPU yet and measuring is off " \
            "(%s=0)" % MEASURE_ENV
    else:
        int8_net, _ = load_int8(checkpoint)
        int8_net.hybridize(static_alloc=True)
        fp32_net.hybridize(backend="MKLDNN", static_alloc=True)
        entry = {"key": key, "fp32": _images_per_second(fp32_net, shape),
                 "int8": _images_per_second(int8_net, shape),
                 "measured": datetime.date.today().isoformat(),
                 "network": record.get("model"), "run": os.path.dirname(
                     os.path.abspath(checkpoint.path))}
        when = "measured now"
        try:
            os.makedirs(os.path.dirname(_speed_cache()), exist_ok=True)
            atomic_write(_speed_cache(), lambda tmp: _dump(tmp, entries + [entry]))
        except OSError as exc:
            notice("gluon-resnet: cannot write %s (%s); auto will measure again next time"
                   % (_speed_cache(), exc))
    factor, against_bf16 = 1.0, ""
    if rival is not None and rival.precision == "bf16":
        if rival.fp32 and rival.bf16:
            factor = rival.bf16 / rival.fp32
            against_bf16 = " (bf16 ran %.2fx fp32 at inference, measured %s)" % (
                factor, rival.measured)
        else:
            against_bf16 = " (bf16 is not measured at inference here: int8 is compared with " \
                "fp32 only)"
    return _faster(entry, factor), "auto: int8 %.0f img/s against %.0f in fused fp32 on this " \
        "CPU, %s%s; it lost %.2f accuracy points" % (entry["int8"], entry["fp32"], when,
                                                     against_bf16, drop)


def _faster(entry, factor=1.0):
    """True when the measured int8 speed beats fused fp32 times ``factor`` by ``THRESHOLD``."""
    return entry["int8"] >= entry["fp32"] * factor * (1 + THRESHOLD)


def _read_speeds():
    try:
        with open(_speed_cache()) as f:
            entries = json.load(f)["entries"]
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("key"), dict)
                and isinstance(e.get("fp32"), (int, float))
                and isinstance(e.get("int8"), (int, float))]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def show_int8_decisions(model=None, out=print):
    """What ``gluon-resnet precision`` prints about int8: this machine's measured runs.

    One line per run's int8 network that ``auto`` measured here (network, run
    folder, image shape, the two speeds and the choice); ``model`` selects
    one network's lines.  Returns the number of lines shown.
    """
    here = machine()
    mine = [e for e in _read_speeds() if e["key"].get("machine") == here
            and model in (None, e.get("network"))]
    if not mine:
        out("int8 (inference with a run's int8 network): nothing measured on this machine%s; "
            "eval and predict with --precision auto measure a quantized run"
            % (" for this model" if model else ""))
        return 0
    out("int8 against fused fp32 (inference with a run's int8 network, img/s; where auto "
        "infers in bf16, int8 must also beat bf16):")
    for e in mine:
        choice = "int8" if _faster(e) else "fp32"
        out("  %-18s %s %s: fp32 %.0f, int8 %.0f -> %s (measured %s)" % (
            e.get("network") or "?", e.get("run") or "weights %s" % str(
                e["key"].get("weights_sha256"))[:12], "x".join(
                str(v) for v in e["key"].get("shape", [])), e["fp32"], e["int8"], choice,
            e.get("measured", "?")))
    return len(mine)


def _dump(path, entries):
    with open(path, "w") as f:
        json.dump({"entries": entries}, f, indent=1)
