"""Import MXNet once, with the thread setting and error messages a d2l reader needs.

MXNet is not a hard dependency of the distribution: a reader with a CUDA build
(``mxnet-cu112``, ``mxnet-cu117``, ...) must not get the CPU wheel installed on
top of it.  The CPU wheel comes with the ``[cpu]`` extra instead, and this
module explains what to install when no MXNet is importable.

Threads: left alone, MXNet 1.9.1 runs its operators on one OpenMP thread on
the 2-core machines this project is measured on, half the machine.  Unless
``OMP_NUM_THREADS`` is set, it is set here to the number of cores this process
may use, which must happen before MXNet is first imported (setting it later,
or MXNet's ``MXSetNumOMPThreads``, does not reach its worker threads).
"""

import os
import sys
import warnings

_HOW_TO_INSTALL = (
    "gluon_resnet needs MXNet 1.9.1. On a CPU: pip install 'gluon-resnet[cpu]' "
    "(or pip install mxnet==1.9.1). With CUDA, install the matching build first, "
    "for example pip install mxnet-cu112==1.9.1, then pip install gluon-resnet."
)


def usable_cores():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


THREADS_SET_HERE = False
if "OMP_NUM_THREADS" not in os.environ:
    if "mxnet" not in sys.modules:
        os.environ["OMP_NUM_THREADS"] = str(usable_cores())
        THREADS_SET_HERE = True
    elif usable_cores() > 1:
        warnings.warn(
            "MXNet was imported before gluon_resnet without OMP_NUM_THREADS, so it may use only "
            "one of this machine's %d cores: import gluon_resnet first, or set "
            "OMP_NUM_THREADS=%d before starting Python." % (usable_cores(), usable_cores()),
            RuntimeWarning, stacklevel=3)

try:
    import mxnet as mx  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without MXNet
    raise ImportError("MXNet is not installed. " + _HOW_TO_INSTALL) from exc
except AttributeError as exc:  # pragma: no cover - numpy >= 1.24 removed np.bool
    import numpy as _np

    raise ImportError(
        "MXNet 1.9.1 cannot be imported with numpy %s (it uses np.bool, removed in "
        "numpy 1.24). Install numpy<1.24: pip install 'numpy>=1.17,<1.24'."
        % _np.__version__
    ) from exc
