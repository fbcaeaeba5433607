"""bfloat16 training on CPUs that support it, through ``mx.contrib.amp``.

``amp.init(target_dtype='bfloat16')`` rewrites MXNet's operators for the whole
process, so it must run before the network is built and cannot be undone: a
process trains either in bf16 or in fp32.  Weights stay fp32 (master copies);
convolutions and dense layers compute in bf16.
"""

import os
import sys

__all__ = ["bf16_available", "resolve_precision", "enable_bf16", "PRECISIONS"]

PRECISIONS = ("fp32", "bf16", "auto")
#: Set to 1 to behave as if the CPU had no bf16 instructions (tests, comparisons).
DISABLE_ENV = "GLUON_RESNET_DISABLE_BF16"

_enabled = False


def _cpu_flags():
    from .devices import cpuinfo

    return set((cpuinfo("flags") or "").split())


def bf16_available():
    """True when the CPU has AVX512-BF16 (or AMX-BF16) and bf16 is not disabled."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_precision(requested, ctxs, notice=None):
    """The precision a run will use: ``"fp32"`` or ``"bf16"``.

    ``"bf16"`` and ``"auto"`` fall back to fp32 on a GPU or on a CPU without
    bf16 instructions; an explicit ``"bf16"`` that falls back prints one line.
    """
    if requested not in PRECISIONS:
        raise ValueError("precision must be one of %s, got %r" % (", ".join(PRECISIONS), requested))
    if requested == "fp32":
        return "fp32"
    on_cpu = all(c.device_type == "cpu" for c in ctxs)
    if on_cpu and bf16_available():
        return "bf16"
    if requested == "bf16":
        why = "the devices are not CPUs" if not on_cpu else "this CPU has no AVX512-BF16"
        (notice or (lambda m: print(m, file=sys.stderr)))(
            "gluon-resnet: bf16 is not available (%s); training in fp32." % why)
    return "fp32"


def enable_bf16():
    """Turn on bf16 AMP for this process (idempotent)."""
    global _enabled
    if not _enabled:
        from mxnet.contrib import amp

        amp.init(target_dtype="bfloat16")
        _enabled = True
