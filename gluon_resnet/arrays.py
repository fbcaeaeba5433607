"""MXNet's two array modes, and the few operators the blocks call in each.

MXNet 1.9.1 computes on legacy arrays (``mx.nd.NDArray``, the first edition
of d2l-zh) or, after ``npx.set_np()``, on numpy-mode arrays
(``mxnet.np.ndarray``, the current edition).  The mode is the caller's:
nothing in gluon_resnet switches it.  Gluon hands ``hybrid_forward`` the
legacy namespaces in both modes (``F`` is ``mx.nd`` or ``mx.sym``); the
numpy-mode operators are ``F.np.*`` and ``F.npx.*``.  ``array_ops(F)`` gives
the blocks one name per operation and picks the operator of the mode that is
on, so a block's forward pass is written once.  The operators are the same
kernels in both modes (``npx.activation`` is ``Activation``): oneDNN runs
them alike.
"""

from ._mxnet import mx

__all__ = ["numpy_mode", "array_ops", "check_array_mode", "in_caller_mode", "as_legacy", "scalar"]


def numpy_mode():
    """True while MXNet's numpy mode is on (``npx.set_np()``) in this thread."""
    return mx.util.is_np_array()


def in_caller_mode(x):
    """A legacy array ``x`` as an array of the mode that is on (no copy)."""
    return x.as_np_ndarray() if numpy_mode() and not isinstance(x, mx.np.ndarray) else x


def scalar(x):
    """The value of a one-element array of either mode, as a Python float (waits for it)."""
    return float(x.asnumpy().item())


def as_legacy(x):
    """``x`` as a legacy ``mx.nd.NDArray`` (no copy), for code that computes in legacy mode."""
    return x.as_nd_ndarray() if isinstance(x, mx.np.ndarray) else x


def check_array_mode(x, owner, built_in_numpy_mode):
    """Raise ``TypeError`` when a network or its input ``x`` is of the mode that is off.

    Gluon's layers take the operators and the shape conventions of the mode
    that is on when they are built, and MXNet's operators cannot mix the two
    kinds of array.  Symbols and anything else that is not an array pass:
    MXNet checks them.
    """
    on = numpy_mode()
    if built_in_numpy_mode != on:
        if on:
            raise TypeError("%s was built in legacy mode, but MXNet's numpy mode is now on "
                            "(npx.set_np()); call npx.reset_np() before using it, or build it "
                            "again after npx.set_np()." % owner)
        raise TypeError("%s was built in MXNet's numpy mode, which is now off; call "
                        "npx.set_np() before using it, or build it again in legacy mode."
                        % owner)
    if not isinstance(x, mx.nd.NDArray) or isinstance(x, mx.np.ndarray) == on:
        return
    if on:
        raise TypeError("%s: MXNet's numpy mode is on (npx.set_np()), so the network expects "
                        "an mxnet.np array, got a legacy mx.nd.NDArray; convert it with "
                        "x.as_np_ndarray()." % owner)
    raise TypeError("%s: MXNet's numpy mode is off, so the network expects a legacy "
                    "mx.nd.NDArray, got an mxnet.np array; convert it with x.as_nd_ndarray(), "
                    "or call npx.set_np() before building the network." % owner)


class _LegacyOps:
    """The blocks' operations on legacy arrays and symbols."""

    def __init__(self, F):
        self.F = F

    def activation(self, x, act_type):
        # Not F.relu: on bf16 data MXNet 1.9.1 runs relu outside oneDNN, in a slow kernel.
        return self.F.Activation(x, act_type=act_type)

    def add(self, a, b):
        # add_n, not +: with + BN's backward pass gets a gradient in another memory layout
        # than its data in 16-channel networks and falls back to oneDNN's reference code.
        return self.F.add_n(a, b)

    def scale_channels(self, x, scale):
        """``x`` (N, C, H, W) times ``scale`` (N, C, 1, 1)."""
        return self.F.broadcast_mul(x, scale)

    def subsample(self, x, step):
        """Every ``step``-th row and column of ``x`` (N, C, H, W)."""
        return self.F.slice(x, begin=(None,) * 4, end=(None,) * 4, step=(1, 1, step, step))

    def append_zero_channels(self, x, count):
        """``x`` with ``count`` channels of zeros appended."""
        zero = self.F.zeros_like(self.F.slice_axis(x, axis=1, begin=0, end=1))
        return self.F.concat(x, self.F.broadcast_axis(zero, axis=1, size=count), dim=1)

    def softmax(self, x, axis):
        return self.F.softmax(x, axis=axis)

    def flip(self, x, axis):
        return self.F.flip(x, axis=axis)


class _NumpyOps(_LegacyOps):
    """The same operations on ``mxnet.np`` arrays and symbols (numpy mode)."""

    def activation(self, x, act_type):
        return self.F.npx.activation(x, act_type=act_type)

    def add(self, a, b):
        # Numpy mode has no add_n: the legacy one runs on legacy views of the same arrays
        # (no copy), and the step keeps legacy mode's oneDNN kernels (np.add is not one).
        return super().add(a.as_nd_ndarray(), b.as_nd_ndarray()).as_np_ndarray()

    def scale_channels(self, x, scale):
        return self.F.np.multiply(x, scale)

    def subsample(self, x, step):
        return self.F.npx.slice(x, begin=(None,) * 4, end=(None,) * 4, step=(1, 1, step, step))

    def append_zero_channels(self, x, count):
        # On a legacy view too: legacy concat is oneDNN's, np.concatenate is not.
        return super().append_zero_channels(x.as_nd_ndarray(), count).as_np_ndarray()

    def softmax(self, x, axis):
        return self.F.npx.softmax(x, axis=axis)

    def flip(self, x, axis):
        return self.F.np.flip(x, axis=axis)


def array_ops(F):
    """The blocks' operations for the mode that is on, on ``F`` (``mx.nd`` or ``mx.sym``).

    ``activation(x, act_type)``, ``add(a, b)``, ``scale_channels(x, scale)``,
    ``subsample(x, step)``, ``append_zero_channels(x, count)``, ``softmax(x,
    axis)``, ``flip(x, axis)``.  Outside ``hybrid_forward`` pass ``F=mx.nd``.
    """
    return _NumpyOps(F) if numpy_mode() else _LegacyOps(F)
