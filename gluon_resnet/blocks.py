"""Residual blocks.

This module holds the block of d2l-zh chapter 5.11 (``Residual``) and its
stage builder (``resnet_block``), with the book's names, arguments and math,
written as ``HybridBlock``s so that they run imperatively and hybridized.

References
----------
He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016,
section 3.2 (identity mapping by shortcuts) and figure 2.
"""

from ._mxnet import mx
from mxnet.gluon import nn

__all__ = ["Residual", "resnet_block", "check_positive_int"]


def check_positive_int(value, name, owner):
    """Return ``value`` if it is a positive ``int``; otherwise raise ``ValueError``.

    Parameters
    ----------
    value : object
        The argument to check.
    name : str
        The argument's name, used in the message.
    owner : str
        What the argument belongs to (for example ``"Residual"``).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            "%s: %s must be a positive integer, got %r." % (owner, name, value)
        )
    return value


def _shortcut_error(block, in_shape, out_shape):
    return ValueError(
        "%s cannot add its shortcut: the input has shape %s but the convolutions "
        "give %s. Use use_1x1conv=True so that a 1x1 convolution reshapes the "
        "input (needed when the channels change or strides > 1)."
        % (block.name, tuple(in_shape), tuple(out_shape))
    )


class Residual(nn.HybridBlock):
    """The residual block of d2l-zh 5.11 (He et al. 2016, figure 2).

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with two 3x3
    convolutions of ``num_channels`` channels (with bias, as in the book) and,
    when ``use_1x1conv`` is set, a 1x1 convolution on the shortcut.  With the
    same parameter values it computes exactly what ``d2lzh.Residual`` computes.

    Parameters
    ----------
    num_channels : int
        Output channels of both 3x3 convolutions (and of the 1x1 shortcut).
    use_1x1conv : bool, default False
        Put a 1x1 convolution with ``strides`` on the shortcut.  Required when
        the input does not have ``num_channels`` channels or ``strides > 1``.
    strides : int, default 1
        Stride of the first 3x3 convolution and of the 1x1 shortcut.

    Shapes
    ------
    Input ``(N, C, H, W)``; output ``(N, num_channels, ceil(H / strides),
    ceil(W / strides))``.  Without ``use_1x1conv`` the input must already have
    that shape, or ``ValueError`` is raised naming both shapes.
    """

    def __init__(self, num_channels, use_1x1conv=False, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.num_channels = check_positive_int(num_channels, "num_channels", "Residual")
        self.strides = check_positive_int(strides, "strides", "Residual")
        self.use_1x1conv = bool(use_1x1conv)
        with self.name_scope():
            self.conv1 = nn.Conv2D(num_channels, kernel_size=3, padding=1, strides=strides)
            self.conv2 = nn.Conv2D(num_channels, kernel_size=3, padding=1)
            if self.use_1x1conv:
                self.conv3 = nn.Conv2D(num_channels, kernel_size=1, strides=strides)
            else:
                self.conv3 = None
            self.bn1 = nn.BatchNorm()
            self.bn2 = nn.BatchNorm()

    def output_shape(self, in_shape):
        """Shape of the output for an input of shape ``in_shape`` (N, C, H, W)."""
        n, _, h, w = in_shape
        s = self.strides
        return (n, self.num_channels, (h + s - 1) // s, (w + s - 1) // s)

    def forward(self, x, *args):
        # Shapes are host-side metadata: checking them costs no device sync.
        if isinstance(x, mx.nd.NDArray) and not self.use_1x1conv:
            out_shape = self.output_shape(x.shape)
            if tuple(x.shape) != out_shape:
                raise _shortcut_error(self, x.shape, out_shape)
        return super().forward(x, *args)

    def hybrid_forward(self, F, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return F.relu(Y + X)


def resnet_block(num_channels, num_residuals, first_block=False, prefix=None):
    """One stage of the chapter's ResNet: ``num_residuals`` ``Residual`` blocks.

    Unless ``first_block`` is set, the first block halves height and width and
    changes the channels with a 1x1 shortcut convolution (``strides=2``).

    Parameters
    ----------
    num_channels : int
        Output channels of every block of the stage.
    num_residuals : int
        Number of ``Residual`` blocks.
    first_block : bool, default False
        The stage right after the stem keeps size and channels (the stem's
        max-pool has already halved the size).
    prefix : str, optional
        Name prefix of the returned container (for example ``"stage1_"``);
        not in the book, which leaves MXNet's default.

    Returns
    -------
    mxnet.gluon.nn.HybridSequential
        Input ``(N, C, H, W)``; output ``(N, num_channels, H', W')`` with
        ``H' = H`` for the first stage, ``ceil(H / 2)`` otherwise.
    """
    check_positive_int(num_channels, "num_channels", "resnet_block")
    check_positive_int(num_residuals, "num_residuals", "resnet_block")
    blk = nn.HybridSequential(prefix=prefix)
    with blk.name_scope():
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.add(Residual(num_channels, use_1x1conv=True, strides=2))
            else:
                blk.add(Residual(num_channels))
    return blk
