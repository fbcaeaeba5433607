"""``--precision auto``: bf16 or fp32, whichever this CPU runs faster, measured once.

Which precision is faster depends on the CPU (AMX, AVX512-BF16 alone), on
oneDNN's kernels for the network's widths and on the input size, so no rule
holds everywhere.  Instead a few steps are timed in each precision, in two
child processes (bf16 AMP cannot be undone inside a process), and bf16 is
chosen when it is at least ``THRESHOLD`` (5%) faster.  The answer is kept in
``$XDG_CACHE_HOME/gluon_resnet/precision.json`` (else
``~/.cache/gluon_resnet/``), keyed by the case (network, input shape, batch
size, devices, training or inference) and the machine (CPU model and flags,
MXNet version, threads, AMX, the oneDNN/MXNet settings in the environment).

Measuring costs at most ``MAX_SECONDS`` and at most ``MAX_SHARE`` of the
run's expected length.  When it cannot be afforded (a short run), or
``GLUON_RESNET_AUTO_MEASURE=0``, the cached answer of the nearest case (same
machine and network, nearest shape and batch) decides, else fp32.  A training
measurement also times inference (oneDNN fusion, batch 256), which ``eval``
and ``predict`` use; they never measure themselves.  A cache that cannot be
read or written costs one notice, never the run.

This module imports no model code: the children build their networks with
``gluon_resnet.models`` in a program of their own.
"""

import collections
import datetime
import json
import math
import os
import platform
import select
import subprocess
import sys
import tempfile
import time

from ._cpu import cpu_flags, cpuinfo, usable_cores
from ._mxnet import AMX, DISABLE_AMX_ENV, mx
from .summary import count_flops
from mxnet import autograd, gluon, init
from mxnet.contrib import amp

__all__ = ["Case", "decide", "choose", "machine", "cache_path", "read_cache", "cached_entries",
           "measure", "format_entry", "HEADER", "THRESHOLD", "MEASURE_ENV", "INFER_BATCH"]

#: bf16 must be at least this much faster (img/s ratio - 1) to be chosen.
THRESHOLD = 0.05
#: Measuring may take at most this many seconds, and this share of the run.
MAX_SECONDS = 30.0
MAX_SHARE = 0.05
#: Set to 0 to never measure (cached answers or fp32 only).
MEASURE_ENV = "GLUON_RESNET_AUTO_MEASURE"
#: Batch of the inference measurement: ``eval``'s and ``predict``'s.
INFER_BATCH = 256
#: Timed steps per child after the warm-up ones (the first builds oneDNN's primitives).
WARMUP, TRAIN_STEPS, INFER_STEPS = 1, 2, 2
# A lower bound of a child's start (Python and MXNet loading, network building): a run whose
# optimistic length makes two of them exceed MAX_SHARE is not measured at all.
_CHILD_START = 2.0
# Optimistic training throughput per core (FLOP/s, forward and backward): the chapter's
# network reached about a third of it in bf16 on AVX512-BF16, smaller networks less.
_FAST_FLOPS_PER_CORE = 4e11
_CACHE_FORMAT = 1
#: Part of the key: raised whenever gluon_resnet changes what either precision runs
#: (2: the image's convolution stays fp32 under bf16), so older decisions are measured again.
CODE_REVISION = 2

#: What ``decide`` is asked about.  ``steps``: steps of the run (None: do not measure).
Case = collections.namedtuple(
    "Case", "network channels size batch devices mode steps num_classes")
Case.__new__.__defaults__ = ("cpu(0)", "train", None, 10)

_noticed = []


def _notice_once(notice, message):
    if not _noticed:
        _noticed.append(message)
        notice("gluon-resnet: " + message)


def _measuring_allowed():
    return os.environ.get(MEASURE_ENV, "") not in ("0", "no", "false", "off")


def machine():
    """What the speeds depend on besides the case: CPU, flags, MXNet, threads and kernel settings.

    ``DNNL_*``/``ONEDNN_*``/``MKLDNN_*``/``MXNET_*``/``OMP_*`` variables can cap the
    instruction set or change kernels and threads, so each is part of the key.
    """
    settings = {k: v for k, v in sorted(os.environ.items())
                if k.startswith(("DNNL_", "ONEDNN_", "MKLDNN_", "MXNET_", "OMP_", "KMP_"))
                or k == DISABLE_AMX_ENV}
    return {"cpu": cpuinfo("model name") or platform.processor() or platform.machine(),
            "flags": " ".join(sorted(cpu_flags())), "cores": usable_cores(),
            "mxnet": mx.__version__, "amx": bool(AMX[0]), "settings": settings,
            "gluon_resnet": CODE_REVISION}


def cache_path():
    """``$XDG_CACHE_HOME/gluon_resnet/precision.json``, else ``~/.cache/gluon_resnet/...``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "gluon_resnet", "precision.json")


def _valid_entry(e):
    try:
        return (isinstance(e["machine"], dict) and isinstance(e["network"], str)
                and e["mode"] in ("train", "infer") and e["precision"] in ("fp32", "bf16")
                and all(isinstance(e[k], int) for k in ("channels", "batch"))
                and len(e["size"]) == 2 and all(e[k] > 0 for k in ("fp32", "bf16"))
                and isinstance(e["measured"], str) and isinstance(e["devices"], str))
    except (KeyError, TypeError):
        return False


def read_cache(notice=print):
    """The cached entries (a list of dicts); [] when there is no cache or it is unusable."""
    path = cache_path()
    try:
        with open(path) as f:
            text = f.read()
    except (FileNotFoundError, NotADirectoryError):  # nothing cached yet
        return []
    except (OSError, UnicodeDecodeError) as exc:
        _notice_once(notice, "cannot read the precision cache %s (%s); auto decides without it"
                     % (path, exc))
        return []
    try:
        data = json.loads(text)
        entries = data["decisions"] if data.get("format") == _CACHE_FORMAT else None
        if not isinstance(entries, list) or not all(_valid_entry(e) for e in entries):
            raise ValueError
    except (ValueError, TypeError, AttributeError, KeyError):
        _notice_once(notice, "the precision cache %s is damaged; it is ignored and will be "
                     "replaced" % path)
        return []
    return entries


def _write_cache(entries, notice=print):
    """Write ``entries`` atomically; one notice when the folder cannot be written."""
    path = cache_path()
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
        with os.fdopen(fd, "w") as f:
            json.dump({"format": _CACHE_FORMAT, "decisions": entries}, f, indent=1)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        _notice_once(notice, "cannot write the precision cache %s (%s); auto will measure "
                     "again next time" % (path, exc))
    finally:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass


def _same_place(entry, case, here):
    return (entry["machine"] == here and entry["network"] == case.network
            and entry["devices"] == case.devices and entry["channels"] == case.channels)


def _distance(entry, case):
    pixels = (entry["size"][0] * entry["size"][1]) / float(case.size[0] * case.size[1])
    return abs(math.log(pixels)) + abs(math.log(entry["batch"] / float(case.batch)))


def cached_entries(case, entries, here=None):
    """``(exact entry or None, nearest entry or None)`` of ``case`` among ``entries``.

    The nearest is of the same machine, network, devices and input channels: the
    same mode at the nearest shape and batch, else the training entry (for inference).
    """
    here = machine() if here is None else here
    exact = [e for e in entries if _same_place(e, case, here) and e["mode"] == case.mode
             and list(e["size"]) == list(case.size) and e["batch"] == case.batch]
    if exact:
        return exact[-1], None
    for mode in (case.mode, "train"):
        near = [e for e in entries if _same_place(e, case, here) and e["mode"] == mode]
        if near:
            return None, min(near, key=lambda e: _distance(e, case))
    return None, None


def choose(fp32, bf16):
    """``"bf16"`` when ``bf16`` img/s is at least ``THRESHOLD`` above ``fp32``'s, else fp32."""
    return "bf16" if bf16 >= fp32 * (1 + THRESHOLD) else "fp32"


def _speeds(entry):
    """``'150 img/s against 108 in fp32'``: the chosen precision's speed against the other's."""
    other = "fp32" if entry["precision"] == "bf16" else "bf16"
    return "%.0f img/s against %.0f in %s" % (entry[entry["precision"]], entry[other], other)


_ROW = "%-22s %-6s %-10s %6s %5s %10s %10s  %s"
#: The header of ``format_entry``'s lines.
HEADER = _ROW % ("network", "mode", "input", "batch", "auto", "fp32 img/s", "bf16 img/s",
                 "measured")


def format_entry(entry):
    """One line of ``gluon-resnet precision`` (columns of ``HEADER``)."""
    return _ROW % (entry["network"], entry["mode"], "%dx%dx%d" % ((entry["channels"],)
                                                                 + tuple(entry["size"])),
                   entry["batch"], entry["precision"], "%.1f" % entry["fp32"],
                   "%.1f" % entry["bf16"], entry["measured"])


# --- measuring ------------------------------------------------------------------------------

_CHILD = """
import json, sys, time
import gluon_resnet
from gluon_resnet.autoprecision import _child_main
from gluon_resnet.models import get_model
_child_main(json.loads(sys.argv[1]), get_model)
"""


def _child_main(spec, get_model):
    """In a child process: time steps of ``spec``'s network in ``spec["precision"]``.

    Prints ``train <seconds>`` and ``infer <seconds>`` lines, one per timed step, then
    ``done``.  ``get_model`` comes from the child's program, which may import above this layer.
    """
    if spec["precision"] == "bf16":
        amp.init(target_dtype="bfloat16")
    shape = (spec["channels"],) + tuple(spec["size"])

    def timed(kind, step, count):
        for i in range(WARMUP + count):
            start = time.perf_counter()
            step()
            mx.nd.waitall()
            if i >= WARMUP:
                print(kind, time.perf_counter() - start, flush=True)

    if spec["train_steps"]:
        net = get_model(spec["network"], num_classes=spec["num_classes"])
        net.initialize(init.Xavier())
        net.hybridize(static_alloc=True, static_shape=False)  # as build_network does
        trainer = gluon.Trainer(net.collect_params(), "sgd",
                                {"learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4})
        loss = gluon.loss.SoftmaxCrossEntropyLoss()
        X = mx.nd.random.uniform(shape=(spec["batch"],) + shape)
        y = mx.nd.array([i % spec["num_classes"] for i in range(spec["batch"])])

        def train_step():
            with autograd.record():
                out = loss(net(X), y)
            out.backward()
            trainer.step(spec["batch"])

        timed("train", train_step, spec["train_steps"])
    if spec["infer_steps"]:
        net = get_model(spec["network"], num_classes=spec["num_classes"])
        net.initialize(init.Xavier())
        X = mx.nd.random.uniform(shape=(spec["infer_batch"],) + shape)
        net(X[:1])
        net.hybridize(backend="MKLDNN", static_alloc=True)  # as evaluate_run does
        timed("infer", lambda: net(X), spec["infer_steps"])
    print("done", flush=True)


def _median(values):
    values = sorted(values)
    return values[len(values) // 2] if len(values) % 2 else sum(values[len(values) // 2 - 1:
                                                                     len(values) // 2 + 1]) / 2


class _OverBudget(Exception):
    pass


def _run_child(spec, deadline, check=None):
    """``{"train": [s, ...], "infer": [...]}`` of one child; ``_OverBudget`` past ``deadline``.

    ``check(times, now)`` may raise ``_OverBudget`` after each timed step.
    """
    env = dict(os.environ)
    if not AMX[0]:  # the child must meet the kernels this process meets
        env[DISABLE_AMX_ENV] = "1"
    times = {"train": [], "infer": []}
    with tempfile.TemporaryFile() as errors:  # a file: a chatty child never blocks on a pipe
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(spec)],
                                stdout=subprocess.PIPE, stderr=errors, env=env)
        pending = b""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                    raise _OverBudget
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    proc.wait()
                    errors.seek(0)
                    last = errors.read().decode(errors="replace").strip().splitlines() or ["?"]
                    raise RuntimeError("the measuring process failed: %s" % last[-1])
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    kind, _, value = line.decode().strip().partition(" ")
                    if kind == "done":
                        return times
                    times[kind].append(float(value))
                    if check is not None:
                        check(times, time.monotonic())
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()


def measure(case, budget=MAX_SECONDS, infer=True):
    """Time ``case`` in fp32 and bf16; ``(train entry or None, infer entry or None)``.

    Returns ``(None, None)`` when the measurement would cost more than ``budget``
    seconds, or more than ``MAX_SHARE`` of ``case.steps`` steps (when given):
    known after the first timed fp32 step.
    """
    start = time.monotonic()
    deadline = [start + budget]
    training = case.mode == "train"
    spec = {"network": case.network, "num_classes": case.num_classes,
            "channels": case.channels, "size": list(case.size), "batch": case.batch,
            "train_steps": TRAIN_STEPS if training else 0,
            "infer_steps": INFER_STEPS if infer or not training else 0,
            "infer_batch": INFER_BATCH if training else case.batch}

    def check(times, now):
        kind = "train" if training else "infer"
        if case.steps is None or len(times[kind]) != 1:
            return
        step = times[kind][0]
        allowed = min(budget, MAX_SHARE * step * case.steps)
        # This child's start, its remaining steps, and the same again for bf16; a training
        # child's inference steps cost about a third of a training step per image.
        expected = 2 * ((now - start) + step * (spec[kind + "_steps"] - 1))
        if training and spec["infer_steps"]:
            expected += 2 * step * (WARMUP + spec["infer_steps"]) * spec["infer_batch"] / (
                3.0 * case.batch)
        if expected > allowed:
            raise _OverBudget
        deadline[0] = start + allowed

    results = {}
    try:
        for precision in ("fp32", "bf16"):
            results[precision] = _run_child(dict(spec, precision=precision), deadline[0],
                                            check if precision == "fp32" else None)
    except _OverBudget:
        return None, None
    today = datetime.date.today().isoformat()
    here = machine()
    entries = []
    for mode, batch in (("train", case.batch), ("infer", spec["infer_batch"])):
        if not results["fp32"][mode] or not results["bf16"][mode]:
            entries.append(None)
            continue
        # Rounded first, so that the cached numbers give the cached decision.
        speed = {p: round(batch / _median(results[p][mode]), 1) for p in ("fp32", "bf16")}
        entries.append({"machine": here, "network": case.network, "devices": case.devices,
                        "mode": mode, "channels": case.channels, "size": list(case.size),
                        "batch": batch, "fp32": speed["fp32"], "bf16": speed["bf16"],
                        "precision": choose(speed["fp32"], speed["bf16"]), "measured": today})
    return tuple(entries)


def _store(new, notice):
    """Add ``new`` entries to the cache, replacing those of the same key."""
    def key(e):
        return (json.dumps(e["machine"], sort_keys=True), e["network"], e["devices"], e["mode"],
                e["channels"], tuple(e["size"]), e["batch"])

    new = [e for e in new if e is not None]
    keys = {key(e) for e in new}
    _write_cache([e for e in read_cache(notice) if key(e) not in keys] + new, notice)


def _optimistic_seconds(case, net):
    """A lower estimate of the run's length from its FLOPs, or None (no network to count)."""
    if net is None or case.steps is None:
        return None
    try:
        flops = count_flops(net, (1, case.channels) + tuple(case.size))["flops"]
    except (ValueError, mx.base.MXNetError):
        return None
    per_image = flops * (3 if case.mode == "train" else 1)  # backward: about twice the forward
    return case.steps * case.batch * per_image / (_FAST_FLOPS_PER_CORE * usable_cores())


def decide(case, notice=print, net=None, force=False):
    """``("bf16" or "fp32", why)`` for ``case``; measures when the run affords it.

    ``net`` (not initialised, never hybridized; a throwaway copy) lets a run
    too short to be worth measuring skip it without starting a process.
    ``force`` measures again whatever the cache holds (``gluon-resnet precision --measure``).
    """
    entries = read_cache(notice)
    exact, nearest = cached_entries(case, entries)
    if exact is not None and not force:
        return exact["precision"], "auto: %s on this CPU, measured %s" % (
            _speeds(exact), exact["measured"])
    why_not = None
    if not force and not _measuring_allowed():
        why_not = "measuring is off (%s=0)" % MEASURE_ENV
    elif not force and case.steps is None:
        why_not = "%s does not measure" % ("inference" if case.mode == "infer" else "this run")
    elif not force and os.environ.get("DMLC_ROLE"):
        why_not = "workers of a distributed job do not measure"
    else:
        guess = _optimistic_seconds(case, net)
        if not force and guess is not None and MAX_SHARE * guess < 2 * _CHILD_START:
            why_not = "the run is too short to measure"
    if why_not is None:
        try:
            train, infer = measure(case, budget=MAX_SECONDS if not force else 10 * MAX_SECONDS,
                                   infer=case.mode == "train")
        except (OSError, RuntimeError, ValueError) as exc:
            train = infer = None
            why_not = "measuring failed (%s)" % exc
        if train is not None or infer is not None:
            _store([train, infer], notice)
            entry = train if case.mode == "train" else infer
            return entry["precision"], "auto: %s on this CPU, measured %s" % (
                _speeds(entry), entry["measured"])
        why_not = why_not or "measuring would take more than %d s or %d%% of the run" % (
            MAX_SECONDS, 100 * MAX_SHARE)
    if nearest is not None:
        kind = "inference" if nearest["mode"] == "infer" else "training"
        return nearest["precision"], "auto: %s; the nearest case measured here (%s, batch %d " \
            "at %dx%d) ran %s on %s" % (why_not, kind, nearest["batch"], nearest["size"][0],
                                        nearest["size"][1], _speeds(nearest), nearest["measured"])
    return "fp32", "auto: %s, and nothing is measured for %s on this CPU yet" % (
        why_not, case.network)
