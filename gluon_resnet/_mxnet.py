"""Import MXNet once, with the thread setting and error messages a d2l reader needs.

MXNet is not a hard dependency of the distribution: a reader with a CUDA build
(``mxnet-cu112``, ``mxnet-cu117``, ...) must not get the CPU wheel installed on
top of it.  The CPU wheel comes with the ``[cpu]`` extra instead, and this
module explains what to install when no MXNet is importable.

Threads: left alone, MXNet 1.9.1 may run its operators on fewer OpenMP
threads than there are cores (one of two on a 2-core machine): when
``OMP_NUM_THREADS`` is unset, MXNet takes half the cores reported (it assumes
two hardware threads a core) and sets that as the OpenMP thread count of each
engine worker thread, the threads that run the operators.  Unless
``OMP_NUM_THREADS`` is set, it is set here to the number of cores this process
may use before MXNet loads.  When MXNet was imported first (every d2l page
starts with ``from mxnet import ...``), that is too late, and
``MXSetNumOMPThreads`` sets only the calling thread's count; instead
``_widen_worker_threads`` runs ``omp_set_num_threads`` on the worker of
``cpu(0)`` itself, pushed onto MXNet's engine as an operation.  oneDNN's
convolutions, batch norms and dense layers, nearly all of a ResNet's time, then
use every core; MXNet's own element-wise loops stay at its cap (half the
cores).  ``THREADS`` says which of the two happened.

AMX: MXNet 1.9.1's oneDNN (v2.4) has AMX-BF16 kernels but uses them only when
``DNNL_MAX_CPU_ISA=AVX512_CORE_AMX`` is in the environment the first time it
asks what the CPU can do, and the process must have asked Linux for the AMX
tile registers (or it dies with SIGILL).  Where the CPU has AMX, the user has
not set ``DNNL_MAX_CPU_ISA`` and ``GLUON_RESNET_DISABLE_AMX`` is unset or 0,
this module asks for the registers, sets the variable, loads MXNet, makes
oneDNN read its setting with one tiny operator and takes the variable out of
the environment again: the permission does not survive ``exec``, so a
program this process starts must never inherit the variable without asking
(a child that imports gluon_resnet asks for itself).  ``AMX`` says what happened.
"""

import ctypes
import os
import sys
import warnings

from ._cpu import cpu_flags, request_amx_permission, usable_cores
from ._testsignal import signal_at

_HOW_TO_INSTALL = (
    "gluon_resnet needs MXNet 1.9.1. On a CPU: pip install 'gluon-resnet[cpu]' "
    "(or pip install mxnet==1.9.1). With CUDA, install the matching build first, "
    "for example pip install mxnet-cu112==1.9.1, then pip install gluon-resnet."
)


THREADS_SET_HERE = False
_WIDEN = False
if "OMP_NUM_THREADS" not in os.environ:
    if "mxnet" not in sys.modules:
        os.environ["OMP_NUM_THREADS"] = str(usable_cores())
        THREADS_SET_HERE = True
    elif usable_cores() > 1:
        _WIDEN = True


#: Set to 1 to keep oneDNN off AMX (comparisons, or a kernel that misbehaves).
DISABLE_AMX_ENV = "GLUON_RESNET_DISABLE_AMX"
_ISA_ENV = "DNNL_MAX_CPU_ISA"


def _amx_plan():
    """``(switch it on here, why not)`` before MXNet loads."""
    if "amx_bf16" not in cpu_flags():
        return False, "this CPU has no AMX-BF16"
    # Asked whatever follows: it is harmless, and it keeps a process whose user set
    # DNNL_MAX_CPU_ISA to AMX from dying with SIGILL.
    granted = request_amx_permission()
    if os.environ.get(_ISA_ENV):
        return False, "%s=%s set by the user" % (_ISA_ENV, os.environ[_ISA_ENV])
    if os.environ.get(DISABLE_AMX_ENV, "") not in ("", "0"):
        return False, "%s is set" % DISABLE_AMX_ENV
    if "mxnet" in sys.modules:
        return False, "MXNet was imported before gluon_resnet"
    if not granted:
        return False, "Linux refused the AMX tile registers (arch_prctl)"
    return True, None


_switch_amx, _amx_why_not = _amx_plan()
if _switch_amx:
    os.environ[_ISA_ENV] = "AVX512_CORE_AMX"

try:
    import mxnet as mx  # noqa: F401  (the package imports mx from here)
    signal_at("import")  # test hook: a stop signal while gluon-resnet starts
except ImportError as exc:  # pragma: no cover - exercised only without MXNet
    raise ImportError("MXNet is not installed. " + _HOW_TO_INSTALL) from exc
except AttributeError as exc:  # pragma: no cover - numpy >= 1.24 removed np.bool
    import numpy as _np

    raise ImportError(
        "MXNet 1.9.1 cannot be imported with numpy %s (it uses np.bool, removed in "
        "numpy 1.24). Install numpy<1.24: pip install 'numpy>=1.17,<1.24'."
        % _np.__version__
    ) from exc
finally:
    if _switch_amx:
        try:
            if "mxnet" in sys.modules and hasattr(sys.modules["mxnet"], "nd"):
                # oneDNN reads DNNL_MAX_CPU_ISA once, at its first primitive; this is it.
                _nd = sys.modules["mxnet"].nd
                _nd.Convolution(_nd.ones((1, 1, 1, 1)), _nd.ones((1, 1, 1, 1)), kernel=(1, 1),
                                num_filter=1, no_bias=True).wait_to_read()
        finally:
            os.environ.pop(_ISA_ENV, None)

#: ``(True, "on")`` when oneDNN may use AMX in this process, else ``(False, reason)``.
AMX = (True, "on") if _switch_amx else (False, _amx_why_not)


class _Context(ctypes.Structure):
    """MXNet's C ``Context``: device type (1: CPU) and device id."""
    _fields_ = [("dev_type", ctypes.c_int), ("dev_id", ctypes.c_int)]


_ENGINE_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def _widen_worker_threads(threads):
    """Set the OpenMP thread count of the engine thread that runs ``cpu(0)``'s operators.

    Returns that thread's count afterwards (``omp_get_max_threads`` read in the
    thread), or None when it could not be set (no such symbol, engine error).
    One operation reaches one worker: with ``MXNET_CPU_WORKER_NTHREADS`` above 1
    the others keep their count, and so do the workers of ``cpu(1)`` and above.
    """
    lib = mx.base._LIB
    try:
        set_threads, get_threads = lib.omp_set_num_threads, lib.omp_get_max_threads
    except AttributeError:  # an MXNet built without OpenMP
        return None
    set_threads.argtypes, get_threads.restype = [ctypes.c_int], ctypes.c_int
    seen = []

    def run(_run_context, _param):
        set_threads(threads)
        seen.append(get_threads())

    func, ctx = _ENGINE_FUNC(run), _Context(1, 0)
    status = lib.MXEnginePushSync(func, None, None, ctypes.byref(ctx), None, 0, None, 0, None, 0,
                                  b"gluon_resnet_threads")
    mx.nd.waitall()  # the operation has run once this returns; func is still referenced here
    return seen[0] if status == 0 and seen else None


#: How this process got its threads: ``"environment"`` (``OMP_NUM_THREADS``, the user's or
#: set here), ``"engine"`` (set on MXNet's worker after MXNet was imported first), or
#: ``"one core"`` (nothing to do).
THREADS = "environment" if "OMP_NUM_THREADS" in os.environ else "one core"
if _WIDEN:
    if os.environ.get("MXNET_CPU_WORKER_NTHREADS", "1") == "1" and \
            _widen_worker_threads(usable_cores()) == usable_cores():
        THREADS = "engine"
    else:
        warnings.warn(
            "MXNet was imported before gluon_resnet without OMP_NUM_THREADS, so it may use only "
            "one of this machine's %d cores: import gluon_resnet first, or set "
            "OMP_NUM_THREADS=%d before starting Python." % (usable_cores(), usable_cores()),
            RuntimeWarning, stacklevel=3)
