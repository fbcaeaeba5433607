"""``--precision auto``: bf16 or fp32, whichever this CPU runs faster, measured once.

Which precision is faster depends on the CPU (AMX, AVX512-BF16 alone), on
oneDNN's kernels for the network's widths and on the input size, so no rule
holds everywhere.  Instead steps are timed in each precision, in two child
processes (bf16 AMP cannot be undone inside a process) that run at the same
time and take turns: one fp32 step, one bf16 step, then bf16 first, and so on.
Whatever else the machine is doing slows both alike, so what decides is the
median of the rounds' ratios (fp32 step time over bf16 step time), not how
fast either was: bf16 is chosen when it is at least ``THRESHOLD`` (5%)
faster.  Rounds go on until most of them agree (``sure``) or the time for
measuring is spent.

Measuring may take ``MAX_SHARE`` of the run's expected length (known after
the first timed round), at most ``MAX_SECONDS``; ``gluon-resnet precision
--measure`` takes ``MEASURE_SECONDS``.  The answer is kept in
``$XDG_CACHE_HOME/gluon_resnet/precision.json`` (else
``~/.cache/gluon_resnet/``), keyed by the case (network, input shape, batch
size, devices, training or inference) and the machine (CPU model and flags,
MXNet version, threads, AMX, the oneDNN/MXNet settings in the environment).
An unsure answer and a failed measurement are kept too, with their reason:
a run of the same case measures again only when it is at least
``RETRY_FACTOR`` times as long (so it may spend more), or on
``gluon-resnet precision --measure``.

A run that does not measure (too short, ``GLUON_RESNET_AUTO_MEASURE=0``,
a distributed worker, a failed measurement) takes the nearest measured case
(same machine and network, nearest shape and batch), else what the CPU's
kernels make likely (``likely``).  A training measurement also times
inference (oneDNN fusion, batch 256), which ``eval`` and ``predict`` use;
they never measure themselves.  A cache that cannot be read or written costs
one notice, never the run.  Every answer is a ``Decision``.

This module imports no model code: the children build their networks with
``gluon_resnet.models`` in a program of their own.
"""

import collections
import dataclasses
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
from typing import Optional

from ._cpu import cpu_flags, cpuinfo, usable_cores
from ._mxnet import AMX, DISABLE_AMX_ENV, mx
from ._testsignal import signal_at
from .checkpoint import atomic_write
from .summary import count_flops
from mxnet import autograd, gluon, init
from mxnet.contrib import amp

__all__ = ["Case", "Decision", "SOURCES", "decide", "choose", "likely", "machine", "cache_path",
           "read_cache", "cached_entries", "measure", "format_entry", "HEADER", "THRESHOLD",
           "MEASURE_ENV", "INFER_BATCH"]

#: bf16 must be at least this much faster (img/s ratio - 1) to be chosen.
THRESHOLD = 0.05
#: Measuring may take this share of the run's expected length, and at most MAX_SECONDS.
MAX_SHARE = 0.03
MAX_SECONDS = 600.0
#: What ``gluon-resnet precision --measure`` may spend.
MEASURE_SECONDS = 120.0
#: A remembered unsure or failed measurement is tried again by a run this many times as long.
RETRY_FACTOR = 2
#: Set to 0 to never measure (cached answers, the nearest case, or the likely precision).
MEASURE_ENV = "GLUON_RESNET_AUTO_MEASURE"
#: Batch of the inference measurement: ``eval``'s and ``predict``'s.
INFER_BATCH = 256
#: Timed rounds: at least MIN_ROUNDS before a decision can be sure, at most MAX_ROUNDS;
#: inference gets INFER_ROUNDS.  A round is one step in each precision, after one warm-up
#: step each (the first builds oneDNN's primitives).
MIN_ROUNDS, MAX_ROUNDS, INFER_ROUNDS = 3, 15, 3
#: Share of the rounds that must fall on the median's side of the threshold to be sure.
AGREEMENT = 0.8
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
# oneDNN instruction-set levels (DNNL_MAX_CPU_ISA) that include its bf16 kernels.
_BF16_ISAS = ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX",
              "AVX512_CORE_AMX_FP16", "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16",
              "AVX10_2_512", "AVX10_2_512_AMX_2")

#: What ``decide`` is asked about.  ``steps``: steps of the run (None: do not measure).
Case = collections.namedtuple(
    "Case", "network channels size batch devices mode steps num_classes")
Case.__new__.__defaults__ = ("cpu(0)", "train", None, 10)

#: Where a ``Decision`` came from.
SOURCES = ("requested", "unavailable", "measured", "cached", "nearest", "likely")


@dataclasses.dataclass(frozen=True)
class Decision:
    """A precision and where it came from; ``describe()`` is the line a run prints.

    Attributes
    ----------
    precision : {"fp32", "bf16", "int8"}
        int8 only for inference, with a run's quantized network (``reason`` says how it
        was made or why auto took it).
    source : str
        One of ``SOURCES``: ``requested`` (``--precision fp32`` or ``bf16``),
        ``unavailable`` (no bf16 here: ``reason`` says why), ``measured`` (now),
        ``cached`` (this case, measured before), ``nearest`` (the nearest
        measured case: ``basis``), ``likely`` (nothing measured: the CPU's
        kernels, ``basis``).
    fp32, bf16 : float or None
        Images per second of each precision, when measured (for ``nearest``:
        the nearest case's).
    measured : str or None
        The day of that measurement (ISO format).
    reason : str or None
        Why nothing was measured for this case (``nearest``, ``likely``), or
        why bf16 is unavailable.
    sure : bool
        False when the rounds did not agree enough (a busy machine, close speeds).
    basis : str or None
        The nearest case (``"training, batch 32 at 96x96"``) or what the
        kernels say.
    """

    precision: str
    source: str
    fp32: Optional[float] = None
    bf16: Optional[float] = None
    measured: Optional[str] = None
    reason: Optional[str] = None
    sure: bool = True
    basis: Optional[str] = None

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16", "int8") or self.source not in SOURCES:
            raise ValueError("a Decision is fp32, bf16 or int8 from one of %s, not %r from %r"
                             % (", ".join(SOURCES), self.precision, self.source))

    @property
    def news(self):
        """True when worth a quiet command's line: bf16 or int8, or a choice from measured
        speeds."""
        return self.precision in ("bf16", "int8") or self.source in ("measured", "cached",
                                                                      "nearest")

    def speeds(self):
        """``'150 img/s against 108 in fp32'``: the chosen precision's speed against the other's."""
        other = "fp32" if self.precision == "bf16" else "bf16"
        return "%.0f img/s against %.0f in %s" % (getattr(self, self.precision),
                                                   getattr(self, other), other)

    def describe(self):
        """How ``auto`` decided, in one line (for a requested precision: None, or for int8
        how the run's int8 network was made)."""
        if self.source == "requested":
            return self.reason
        if self.precision == "int8":  # reason: the measured speeds and the accuracy check
            return "auto: " + self.reason
        if self.source == "unavailable":
            return "auto: " + self.reason
        if self.source in ("measured", "cached"):
            unsure = "" if self.sure else " (not sure yet: the rounds disagreed; " \
                "gluon-resnet precision --measure measures again)"
            return "auto: %s on this CPU%s, measured %s" % (self.speeds(), unsure,
                                                             self.measured)
        if self.source == "nearest":
            return "auto: %s; the nearest case measured here (%s) ran %s on %s" % (
                self.reason, self.basis, self.speeds(), self.measured)
        return "auto: %s; %s" % (self.reason, self.basis)


_noticed = []


def _notice_once(notice, message):
    if not _noticed:
        _noticed.append(message)
        notice("gluon-resnet: " + message)


def _measuring_allowed():
    return os.environ.get(MEASURE_ENV, "") not in ("0", "no", "false", "off")


def likely():
    """``(precision, why)`` that this CPU's kernels make likely faster, without measuring.

    bf16 where the CPU has AVX512-BF16 or AMX-BF16 and ``DNNL_MAX_CPU_ISA``
    does not cap oneDNN below its bf16 kernels; fp32 otherwise.
    """
    flags = cpu_flags()
    if not flags & {"avx512_bf16", "amx_bf16"}:
        return "fp32", "this CPU has no bf16 kernels, which makes fp32 likely the faster"
    cap = os.environ.get("DNNL_MAX_CPU_ISA", "").strip().upper()
    if cap and cap not in _BF16_ISAS:
        return "fp32", ("oneDNN is capped below its bf16 kernels (DNNL_MAX_CPU_ISA=%s), which "
                        "makes fp32 likely the faster" % cap)
    kernels = "AMX" if "amx_bf16" in flags and (AMX[0] or "AMX" in cap) else "AVX512-BF16"
    return "bf16", "this CPU's %s kernels make bf16 likely the faster" % kernels


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
    """A measured entry (speeds, precision), or a failed one (``failed``: why, no speeds)."""
    try:
        common = (isinstance(e["machine"], dict) and isinstance(e["network"], str)
                  and e["mode"] in ("train", "infer")
                  and all(isinstance(e[k], int) for k in ("channels", "batch"))
                  and len(e["size"]) == 2 and isinstance(e["measured"], str)
                  and isinstance(e["devices"], str) and isinstance(e.get("sure", True), bool)
                  and isinstance(e.get("steps"), (int, type(None))))
        if "failed" in e:
            return common and isinstance(e["failed"], str) and e["precision"] is None
        return common and e["precision"] in ("fp32", "bf16") and all(
            e[k] > 0 for k in ("fp32", "bf16"))
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
    """Write ``entries`` atomically (``checkpoint.atomic_write``); one notice when it cannot."""
    path = cache_path()

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump({"format": _CACHE_FORMAT, "decisions": entries}, f, indent=1)

    try:
        atomic_write(path, write)
    except OSError as exc:  # SaveError, or a cache folder inside a file
        _notice_once(notice, "cannot write the precision cache %s (%s); auto will measure "
                     "again next time" % (path, exc))


def _same_place(entry, case, here):
    return (entry["machine"] == here and entry["network"] == case.network
            and entry["devices"] == case.devices and entry["channels"] == case.channels)


def _same_case(entry, case, here):
    return (_same_place(entry, case, here) and entry["mode"] == case.mode
            and list(entry["size"]) == list(case.size) and entry["batch"] == case.batch)


def _distance(entry, case):
    pixels = (entry["size"][0] * entry["size"][1]) / float(case.size[0] * case.size[1])
    return abs(math.log(pixels)) + abs(math.log(entry["batch"] / float(case.batch)))


def cached_entries(case, entries, here=None):
    """``(exact entry or None, nearest entry or None)`` of ``case`` among ``entries``.

    Measured entries only (not failed ones).  The nearest is of the same
    machine, network, devices and input channels: the same mode at the
    nearest shape and batch, else the training entry (for inference).
    """
    here = machine() if here is None else here
    entries = [e for e in entries if "failed" not in e]
    exact = [e for e in entries if _same_case(e, case, here)]
    if exact:
        return exact[-1], None
    for mode in (case.mode, "train"):
        near = [e for e in entries if _same_place(e, case, here) and e["mode"] == mode]
        if near:
            return None, min(near, key=lambda e: _distance(e, case))
    return None, None


def _previous_attempt(case, entries, here):
    """The cached entry of exactly ``case``, measured or failed, or None."""
    same = [e for e in entries if _same_case(e, case, here)]
    return same[-1] if same else None


def choose(fp32, bf16):
    """``"bf16"`` when ``bf16`` img/s is at least ``THRESHOLD`` above ``fp32``'s, else fp32."""
    return "bf16" if bf16 >= fp32 * (1 + THRESHOLD) else "fp32"


def _entry_decision(entry, source):
    return Decision(entry["precision"], source, entry["fp32"], entry["bf16"], entry["measured"],
                    sure=entry.get("sure", True))


_ROW = "%-22s %-6s %-10s %6s %5s %10s %10s  %s"
#: The header of ``format_entry``'s lines.
HEADER = _ROW % ("network", "mode", "input", "batch", "auto", "fp32 img/s", "bf16 img/s",
                 "measured")


def format_entry(entry):
    """One line of ``gluon-resnet precision`` (columns of ``HEADER``).

    An unsure decision has ``?`` after it; a failed measurement shows ``-``
    and its reason.
    """
    failed = "failed" in entry
    return _ROW % (entry["network"], entry["mode"], "%dx%dx%d" % ((entry["channels"],)
                                                                 + tuple(entry["size"])),
                   entry["batch"],
                   "-" if failed else entry["precision"] + ("" if entry.get("sure", True)
                                                            else "?"),
                   "-" if failed else "%.1f" % entry["fp32"],
                   "-" if failed else "%.1f" % entry["bf16"],
                   entry["measured"] + (" (%s)" % entry["failed"] if failed else ""))


# --- measuring ------------------------------------------------------------------------------

_CHILD = """
import json, sys
import gluon_resnet
from gluon_resnet.autoprecision import _child_main
from gluon_resnet.models import get_model
_child_main(json.loads(sys.argv[1]), get_model)
"""


def _child_main(spec, get_model):
    """In a child process: time one step of ``spec``'s network per line read from stdin.

    Builds the training network (when ``spec["train"]``), prints ``ready``,
    then answers each ``train`` or ``infer`` line with ``train <seconds>`` or
    ``infer <seconds>`` (the inference network is built at the first
    ``infer``); ends at the end of its input.  ``get_model`` comes from the
    child's program, which may import above this layer.
    """
    if spec["precision"] == "bf16":
        amp.init(target_dtype="bfloat16")
    shape = (spec["channels"],) + tuple(spec["size"])
    steps = {}

    def timed(step):
        start = time.perf_counter()
        step()
        mx.nd.waitall()
        return time.perf_counter() - start

    if spec["train"]:
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

        steps["train"] = train_step

    def infer_step():
        if "net" not in steps:
            steps["net"] = get_model(spec["network"], num_classes=spec["num_classes"])
            steps["net"].initialize(init.Xavier())
            steps["X"] = mx.nd.random.uniform(shape=(spec["infer_batch"],) + shape)
            steps["net"](steps["X"][:1])
            steps["net"].hybridize(backend="MKLDNN", static_alloc=True)  # as evaluate_run does
        steps["net"](steps["X"])

    steps["infer"] = infer_step
    print("ready", flush=True)
    for line in sys.stdin:
        kind = line.strip()
        print(kind, timed(steps[kind]), flush=True)


def _median(values):
    values = sorted(values)
    return values[len(values) // 2] if len(values) % 2 else sum(values[len(values) // 2 - 1:
                                                                     len(values) // 2 + 1]) / 2


class _OverBudget(Exception):
    pass


class _Child:
    """One measuring process of ``spec`` (a precision); ``ask`` has it time one step.

    It runs in a session of its own, so that a terminal's Ctrl-C or hang-up
    reaches only this process, which ends it (``close``) on its way out.
    """

    def __init__(self, spec):
        env = dict(os.environ)
        if not AMX[0]:  # the child must meet the kernels this process meets
            env[DISABLE_AMX_ENV] = "1"
        self.errors = tempfile.TemporaryFile()  # a chatty child never blocks on a pipe
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errors, env=env, start_new_session=True)
        self.pending = b""

    def _line(self, deadline):
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise _OverBudget
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                self.proc.wait()
                self.errors.seek(0)
                last = self.errors.read().decode(errors="replace").strip().splitlines() or ["?"]
                raise RuntimeError("the measuring process failed: %s" % last[-1])
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode().strip()

    def ready(self, deadline):
        self._line(deadline)

    def ask(self, kind, deadline):
        """Seconds of one ``kind`` step (``"train"`` or ``"infer"``)."""
        try:
            self.proc.stdin.write(kind.encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died: reading says why
        answer, _, value = self._line(deadline).partition(" ")
        if answer != kind:
            raise RuntimeError("the measuring process answered %r" % answer)
        return float(value)

    def close(self):
        self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.errors):
            try:
                f.close()
            except OSError:
                pass


def _start_children(spec):
    """``{"fp32": child, "bf16": child}`` measuring ``spec`` (replaced by tests)."""
    children = {}
    try:
        for precision in ("fp32", "bf16"):
            children[precision] = _Child(dict(spec, precision=precision))
    except BaseException:
        for child in children.values():
            child.close()
        raise
    return children


def _sure(ratios):
    """True when at least ``AGREEMENT`` of ``MIN_ROUNDS`` or more rounds agree with their median."""
    if len(ratios) < MIN_ROUNDS:
        return False
    faster = sum(r >= 1 + THRESHOLD for r in ratios)
    needed = math.ceil(AGREEMENT * len(ratios))
    return faster >= needed or len(ratios) - faster >= needed


def _round(children, kind, order, deadline):
    """``(fp32 seconds, bf16 seconds)`` of one step each, run in ``order``."""
    seconds = {}
    for precision in order:
        seconds[precision] = children[precision].ask(kind, deadline)
    return seconds["fp32"], seconds["bf16"]


def measure(case, budget=None, infer=True, expected=None):
    """Time ``case`` in fp32 and bf16 in alternation; ``(train entry, infer entry)``.

    Each entry is a measured one (img/s of each precision, the median
    round's ratio; ``sure`` when the rounds agree), a failed one (``failed``:
    why), or None (that mode was not asked for, or no time was left for it).
    ``budget`` (seconds) is what measuring may take; None: ``MAX_SHARE`` of
    the run, ``case.steps`` steps at the faster precision's speed (known
    after the first timed round), at most ``MAX_SECONDS``; ``expected``, an
    optimistic length of the run, bounds the warm-up round.
    """
    start = time.monotonic()
    training = case.mode == "train"
    spec = {"network": case.network, "num_classes": case.num_classes,
            "channels": case.channels, "size": list(case.size), "batch": case.batch,
            "train": training, "infer_batch": INFER_BATCH if training else case.batch}
    if budget is not None:
        limit = budget
    elif expected is not None:  # until the first timed round tells
        limit = min(MAX_SECONDS, max(30.0, 10 * MAX_SHARE * expected))
    else:
        limit = MAX_SECONDS
    kinds = [k for k in ("train", "infer") if k == case.mode or (infer and k == "infer")]
    ratios = {kind: [] for kind in kinds}
    times = {kind: {"fp32": [], "bf16": []} for kind in kinds}
    failed = None
    children = {}
    try:
        children = _start_children(spec)
        for child in children.values():
            child.ready(start + limit)
        signal_at("measure")
        for kind in kinds:
            rounds = MAX_ROUNDS if kind == case.mode else INFER_ROUNDS
            _round(children, kind, ("fp32", "bf16"), start + limit)  # warm-up
            for i in range(rounds):
                began = time.monotonic()
                fp32, bf16 = _round(children, kind, ("fp32", "bf16") if i % 2 else
                                    ("bf16", "fp32"), start + limit)
                times[kind]["fp32"].append(fp32)
                times[kind]["bf16"].append(bf16)
                ratios[kind].append(fp32 / bf16)
                if budget is None and kind == case.mode and i == 0 and case.steps is not None:
                    limit = min(MAX_SECONDS, MAX_SHARE * case.steps * min(fp32, bf16))
                if _sure(ratios[kind]):
                    break
                # the next round costs about as much as this one
                if time.monotonic() + (time.monotonic() - began) > start + limit:
                    break
    except _OverBudget:
        failed = "the %.0f s for measuring ended before both precisions ran a timed step" % limit
    except (OSError, RuntimeError, ValueError) as exc:
        failed = "measuring failed (%s)" % exc
    finally:
        for child in children.values():
            child.close()
    today = datetime.date.today().isoformat()
    here = machine()
    entries = []
    for mode, batch in (("train", case.batch), ("infer", spec["infer_batch"])):
        base = {"machine": here, "network": case.network, "devices": case.devices,
                "mode": mode, "channels": case.channels, "size": list(case.size),
                "batch": batch, "measured": today, "steps": case.steps}
        if mode not in kinds or (mode != case.mode and not ratios[mode]):
            entries.append(None)  # not asked for, or no time left for it
        elif not ratios[mode]:
            entries.append(dict(base, precision=None, fp32=None, bf16=None, failed=failed or
                                "no timed round"))
        else:
            fp32 = round(batch / _median(times[mode]["fp32"]), 1)
            # The median round's ratio, rounded after, so that the numbers give the decision.
            bf16 = round(fp32 * _median(ratios[mode]), 1)
            entries.append(dict(base, fp32=fp32, bf16=bf16, precision=choose(fp32, bf16),
                                sure=_sure(ratios[mode]), rounds=len(ratios[mode])))
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


def _fallback(case, why_not, nearest):
    """The ``Decision`` of a case not measured now: the nearest measured case, else ``likely``."""
    if nearest is not None:
        kind = "inference" if nearest["mode"] == "infer" else "training"
        return Decision(nearest["precision"], "nearest", nearest["fp32"], nearest["bf16"],
                        nearest["measured"], why_not, nearest.get("sure", True),
                        "%s, batch %d at %dx%d" % (kind, nearest["batch"], nearest["size"][0],
                                                   nearest["size"][1]))
    precision, basis = likely()
    return Decision(precision, "likely", reason="%s, and nothing is measured for %s on this "
                    "CPU yet" % (why_not, case.network), basis=basis)


def decide(case, notice=print, net=None, force=False):
    """The ``Decision`` for ``case``; measures when the run affords it.

    ``net`` (not initialised, never hybridized; a throwaway copy) lets a run
    too short to be worth measuring skip it without starting a process.
    ``force`` measures again whatever the cache holds (``gluon-resnet precision --measure``).
    """
    here = machine()
    entries = read_cache(notice)
    exact, nearest = cached_entries(case, entries, here)
    previous = _previous_attempt(case, entries, here)
    why_not = guess = None
    if previous is not None and not force:
        longer = (case.steps is not None and previous.get("steps") is not None
                  and case.steps >= RETRY_FACTOR * previous["steps"])
        if exact is not None and (exact.get("sure", True) or not longer):
            return _entry_decision(exact, "cached")
        if "failed" in previous and not longer:
            why_not = "%s when this case was measured on %s (gluon-resnet precision " \
                "--measure tries again)" % (previous["failed"], previous["measured"])
    if why_not is not None:
        pass  # remembered: not measured again
    elif not force and not _measuring_allowed():
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
        train, infer = measure(case, budget=MEASURE_SECONDS if force else None,
                               infer=case.mode == "train",
                               expected=guess)
        _store([train, infer], notice)
        entry = train if case.mode == "train" else infer
        if "failed" not in entry:
            return _entry_decision(entry, "measured")
        why_not = entry["failed"]
    return _fallback(case, why_not, nearest)
