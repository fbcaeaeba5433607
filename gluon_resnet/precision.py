"""bfloat16 training on CPUs that support it, through ``mx.contrib.amp``.

``amp.init(target_dtype='bfloat16')`` rewrites MXNet's operators for the whole
process, so it must run before the network is built and cannot be undone: a
process trains either in bf16 or in fp32.  Weights stay fp32 (master copies);
convolutions and dense layers compute in bf16.

``auto`` (the default of ``gluon-resnet train``) trains in bf16 where that is
faster: with AMX switched on (see ``gluon_resnet._mxnet``), and only for
networks whose convolutions all have a power-of-two number of output
channels, at least 32.
MXNet 1.9.1's oneDNN runs such layers in AMX kernels; other widths (16, 48,
96, ...) get kernels whose output layout sends BN's backward pass to oneDNN's
reference code, and the whole step becomes 1.5-5x slower than fp32 (measured
here, batch 256: ``compact_resnet8`` with 48 channels 1,414 img/s in fp32
against 288 in bf16; with 32 channels 3,025 against 3,845; the chapter's
network 124 against 194).  In MXNet's numpy mode runs are fp32: AMP does not
convert numpy-mode operators (see ``resolve_precision``).
"""

import os
import sys

from ._cpu import cpu_flags
from ._mxnet import AMX
from .arrays import numpy_mode
from .validate import one_of
from mxnet.contrib import amp
from mxnet.gluon import nn

__all__ = ["bf16_available", "bf16_suits", "bf16_kernels", "resolve_precision", "enable_bf16",
           "describe_precision", "PRECISIONS"]

PRECISIONS = ("fp32", "bf16", "auto")
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


def _conv_widths(block):
    widths = [block._channels] if isinstance(block, nn.Conv2D) else []
    for child in block._children.values():
        widths += _conv_widths(child)
    return widths


def bf16_suits(net):
    """True when every convolution of ``net`` has a power-of-two width of at least 32.

    Such networks train faster in bf16 than in fp32 on this project's CPUs;
    others train slower (see the module's docstring).  ``net`` need not be
    initialised.
    """
    widths = _conv_widths(net)
    return bool(widths) and all(w >= 32 and w & (w - 1) == 0 for w in widths)


def resolve_precision(requested, ctxs, notice=None, net=None):
    """The precision a run will use: ``"fp32"`` or ``"bf16"``.

    ``"bf16"`` and ``"auto"`` fall back to fp32 on a GPU or on a CPU without
    bf16 instructions; an explicit ``"bf16"`` that falls back prints one line.
    ``"auto"`` also stays in fp32 without AMX (on AVX512-BF16 alone bf16 ran
    slower than fp32 here: its matrix product reached 211 GFLOP/s against 309)
    and, given ``net``, when ``bf16_suits(net)`` is False.

    In MXNet's numpy mode (``npx.set_np()``) both fall back to fp32: AMP
    rewrites only the legacy operators (``mx.nd.*``, ``mx.sym.*``), and the
    layers of a numpy-mode network call ``npx.*`` ones, which it leaves in
    fp32 without a word.
    """
    one_of(requested, PRECISIONS, "precision")
    if requested == "fp32":
        return "fp32"
    on_cpu = all(c.device_type == "cpu" for c in ctxs)
    if numpy_mode():
        why = "MXNet's AMP does not reach numpy-mode (npx.set_np()) networks"
    elif not on_cpu:
        why = "the devices are not CPUs"
    elif not bf16_available():
        why = "this CPU has no AVX512-BF16"
    else:
        if requested == "auto" and (bf16_kernels() != "AMX"
                                    or (net is not None and not bf16_suits(net))):
            return "fp32"
        return "bf16"
    if requested == "bf16":
        (notice or (lambda m: print(m, file=sys.stderr)))(
            "gluon-resnet: bf16 is not available (%s); training in fp32." % why)
    return "fp32"


def describe_precision(precision):
    """One line for the run's log: the precision and, for bf16, the kernels it runs on."""
    if precision != "bf16":
        return "precision: fp32"
    return "precision: bf16 on %s kernels" % bf16_kernels()


def enable_bf16():
    """Turn on bf16 AMP for this process (idempotent)."""
    global _enabled
    if not _enabled:
        amp.init(target_dtype="bfloat16")
        _enabled = True
