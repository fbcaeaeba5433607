"""Import MXNet once, with a message a d2l reader can act on when it fails.

MXNet is not a hard dependency of the distribution: a reader with a CUDA build
(``mxnet-cu112``, ``mxnet-cu117``, ...) must not get the CPU wheel installed on
top of it.  The CPU wheel comes with the ``[cpu]`` extra instead, and this
module explains what to install when no MXNet is importable.
"""

_HOW_TO_INSTALL = (
    "gluon_resnet needs MXNet 1.9.1. On a CPU: pip install 'gluon-resnet[cpu]' "
    "(or pip install mxnet==1.9.1). With CUDA, install the matching build first, "
    "for example pip install mxnet-cu112==1.9.1, then pip install gluon-resnet."
)

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
