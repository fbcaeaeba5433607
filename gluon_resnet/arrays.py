"""Arrays in the caller's mode: legacy ``nd`` arrays, or ``mxnet.np`` after ``npx.set_np()``.

The first edition of the book works with ``mx.nd`` arrays; the current one
turns on MXNet's numpy mode (``npx.set_np()``) at the top of every notebook.
The mode belongs to the caller: gluon_resnet reads it where it makes arrays
and never switches it.
"""

from ._mxnet import mx

__all__ = ["numpy_mode", "in_callers_mode", "scalar"]


def numpy_mode():
    """True after ``npx.set_np()`` (MXNet's numpy mode), False in the legacy ``nd`` mode."""
    return mx.util.is_np_array()


def in_callers_mode(x):
    """The legacy ``NDArray`` ``x`` as ``mxnet.np`` in numpy mode, else ``x`` itself (no copy)."""
    return x.as_np_ndarray() if numpy_mode() else x


def scalar(x):
    """The value of a one-element array of either mode, as a Python float (waits for it)."""
    return float(x.asnumpy().item())
