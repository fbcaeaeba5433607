"""bfloat16 training on CPUs that support it, through ``mx.contrib.amp``.

``amp.init(target_dtype='bfloat16')`` rewrites MXNet's operators for the whole
process, so it must run before the network is built and cannot be undone: a
process trains either in bf16 or in fp32.  Weights stay fp32 (master copies);
convolutions and dense layers compute in bf16, except the convolution that reads
the image (``layers.StemConv2D``), which stays fp32.

``auto`` (the default of ``gluon-resnet train``) trains in the precision
this CPU runs the network faster, measured once and cached
(``gluon_resnet.autoprecision``): bf16 is not faster everywhere (with AMX
and power-of-two widths it was, on AVX512-BF16 alone it was for some
networks, and widths such as 16, 48 or 96 send oneDNN's BN backward pass
to reference code).  In MXNet's numpy mode runs are fp32: AMP does not
convert numpy-mode operators (see ``resolve_precision``).
"""

import os
import sys

from ._cpu import cpu_flags
from ._mxnet import AMX
from .arrays import numpy_mode
from .autoprecision import (HEADER, Case, Decision, cache_path, decide, format_entry, machine,
                            read_cache)
from .validate import one_of
from mxnet.contrib import amp

__all__ = ["bf16_available", "bf16_kernels", "resolve_precision", "enable_bf16",
           "describe_precision", "show_decisions", "Precision", "Case", "PRECISIONS",
           "INFERENCE_PRECISIONS"]

PRECISIONS = ("fp32", "bf16", "auto")
#: ``eval``, ``predict`` and ``load_trained`` also take a run's int8 network (``.int8``).
INFERENCE_PRECISIONS = PRECISIONS + ("int8",)
#: Set to 1 to behave as if the CPU had no bf16 instructions (tests, comparisons).
DISABLE_ENV = "GLUON_RESNET_DISABLE_BF16"

_enabled = False


def bf16_available():
    """True when the CPU has AVX512-BF16 (or AMX-BF16) and bf16 is not disabled."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def bf16_kernels():
    """What bf16 runs on in this process: ``"AMX"``, ``"AVX512-BF16"`` or ``"fp32 fallback"``.

    AMX only when gluon_resnet switched it on before MXNet loaded (see
    ``gluon_resnet._mxnet``), or the user set ``DNNL_MAX_CPU_ISA`` to an AMX level.
    """
    if not bf16_available():
        return "fp32 fallback"
    isa = os.environ.get("DNNL_MAX_CPU_ISA", "").upper()
    if AMX[0] or ("AMX" in isa and "amx_bf16" in cpu_flags()):
        return "AMX"
    return "AVX512-BF16" if "avx512_bf16" in cpu_flags() else "fp32 fallback"


class Precision(str):
    """``"fp32"``, ``"bf16"`` or ``"int8"`` (a run's quantized network), with the
    ``Decision`` that chose it.

    ``why`` is the decision's line (None when the precision was asked for).
    """

    def __new__(cls, value, decision=None):
        self = super().__new__(cls, value)
        self.decision = decision or Decision(value, "requested")
        return self

    @property
    def why(self):
        return self.decision.describe()

    @property
    def news(self):
        """True when the line is worth a quiet command's while: bf16, or a measured choice."""
        return self.decision.news


def resolve_precision(requested, ctxs, notice=None, case=None, net=None):
    """The precision a run will use: ``"fp32"`` or ``"bf16"`` (a ``Precision``).

    ``"bf16"`` and ``"auto"`` fall back to fp32 on a GPU or on a CPU without
    bf16 instructions; an explicit ``"bf16"`` that falls back prints one line.
    ``"auto"`` otherwise decides for ``case`` (an ``autoprecision.Case``:
    network, input, batch, steps of the run) by measuring both precisions
    once (``autoprecision.decide``; ``net``, a throwaway copy of the network,
    lets a short run skip it cheaply); without ``case`` it stays in fp32.
    The result's ``why`` says how ``auto`` decided; ``notice`` gets the
    cache's notices (standard error by default).

    In MXNet's numpy mode (``npx.set_np()``) both fall back to fp32: AMP
    rewrites only the legacy operators (``mx.nd.*``, ``mx.sym.*``), and the
    layers of a numpy-mode network call ``npx.*`` ones, which it leaves in
    fp32 without a word.
    """
    one_of(requested, PRECISIONS, "precision")
    if requested == "fp32":
        return Precision("fp32")
    notice = notice or (lambda m: print(m, file=sys.stderr))
    on_cpu = all(c.device_type == "cpu" for c in ctxs)
    if numpy_mode():
        why = "MXNet's AMP does not reach numpy-mode (npx.set_np()) networks"
    elif not on_cpu:
        why = "the devices are not CPUs"
    elif not bf16_available():
        why = "this CPU has no AVX512-BF16"
    elif requested == "bf16":
        return Precision("bf16")
    elif case is None:
        return Precision("fp32", Decision("fp32", "unavailable", reason="no network to measure"))
    else:  # the devices of the case are those of the run
        case = case._replace(devices=",".join(str(c) for c in ctxs))
        decision = decide(case, notice, net=net)
        return Precision(decision.precision, decision)
    if requested == "bf16":
        notice("gluon-resnet: bf16 is not available (%s); training in fp32." % why)
        return Precision("fp32")
    return Precision("fp32", Decision("fp32", "unavailable", reason=why))


def describe_precision(precision):
    """One line for the run's log: the precision, bf16's kernels, and why ``auto`` chose it.

    The line is rendered from ``precision.decision`` (a ``Precision``); a plain string has none.
    """
    decision = getattr(precision, "decision", None)
    why = decision.describe() if decision is not None else None
    line = "precision: %s" % precision if precision != "bf16" else \
        "precision: bf16 on %s kernels" % bf16_kernels()
    return line + (" (%s)" % why if why else "")


def enable_bf16():
    """Turn on bf16 AMP for this process (idempotent)."""
    global _enabled
    if not _enabled:
        amp.init(target_dtype="bfloat16")
        _enabled = True


def show_decisions(model=None, size=None, batch_size=None, channels=1, measure=False, out=print):
    """What ``gluon-resnet precision`` prints: the cached decisions of this machine.

    With ``measure``, first times ``model`` (default ``chapter_resnet18``) at
    ``size`` (default 96) and ``batch_size`` (default 256) in both precisions,
    for training and inference, and replaces the cached answers.  ``model``,
    ``size`` and ``batch_size`` also select the rows shown (inference rows,
    measured at batch 256, whatever the batch size).
    """
    if measure:
        if not bf16_available() or numpy_mode():
            out("this CPU has no AVX512-BF16: auto trains in fp32, there is nothing to measure")
        else:
            case = Case(model or "chapter_resnet18", channels, (size or 96, size or 96),
                        batch_size or 256, "cpu(0)", "train")
            decision = decide(case, out, force=True)
            out("%s %dx%d batch %d: %s (%s)" % (case.network, case.size[0], case.size[1],
                                              case.batch, decision.precision,
                                              decision.describe()))
    here = machine()
    entries = read_cache(out)
    mine = [e for e in entries if e["machine"] == here
            and model in (None, e["network"]) and size in (None, e["size"][0])
            and (batch_size in (None, e["batch"]) or e["mode"] == "infer")]
    out("precision cache: %s" % cache_path())
    if not mine:
        out("no decisions measured on this machine%s; auto measures when a run is long enough, "
            "or run: gluon-resnet precision --measure" % (" for these options" if entries else ""))
    else:
        out(HEADER)
        for entry in mine:
            out(format_entry(entry))
    others = len(entries) - len([e for e in entries if e["machine"] == here])
    if others:
        out("(%d more for other CPUs or settings)" % others)
    return 0
