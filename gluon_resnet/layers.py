"""The parts the residual units are made of: array-mode bases, convolutions, shortcuts, SE.

``blocks`` builds the units of the ResNet family from these: bias-free 3x3
and 1x1 convolutions, BN (optionally starting with zero gamma), the shortcut
options A, B and C (with ResNet-D's average pooling), and squeeze-and-excite.
``_Block`` and ``HybridSequential`` are Gluon's classes bound to the array
mode (legacy ``nd`` or numpy ``np``) they were built in.

References
----------
He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016,
sections 3.3 (options A and B) and 4.1 (option C).

Hu, Shen, Sun. "Squeeze-and-Excitation Networks", CVPR 2018, section 3 and
figure 3 (SE-ResNet module).

He, Zhang, Zhang, Zhang, Xie, Li. "Bag of Tricks for Image Classification with
Convolutional Neural Networks", CVPR 2019, section 4.1 and figure 2(c)
(ResNet-D: average pooling before the 1x1 projection).
"""

from ._mxnet import mx
from mxnet.gluon import nn

from .arrays import array_ops, check_array_mode, numpy_mode
from .validate import non_negative_int, positive_int

__all__ = ["HybridSequential", "SHORTCUTS", "check_shortcut", "conv3x3", "conv1x1", "batch_norm",
           "StemConv2D", "ZeroPadShortcut", "SqueezeExcite", "make_shortcut"]

# MXNet's own convolution operators, taken before bf16 AMP (``amp.init``, see
# ``precision.enable_bf16``) replaces them with versions that cast to bf16.
_CONVOLUTION_BEFORE_AMP = {mx.sym: mx.sym.Convolution, mx.nd: mx.nd.Convolution}


class _ArrayModeCheck:
    """Refuse an input, or a call, of the array mode the block was not built in.

    Without it MXNet says only that a legacy operator received a numpy array
    (or the reverse), or that a layer has no such operator, deep inside the
    network.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._built_in_numpy_mode = numpy_mode()

    def forward(self, x, *args):
        check_array_mode(x, self.name, self._built_in_numpy_mode)
        return super().forward(x, *args)


class _Block(_ArrayModeCheck, nn.HybridBlock):
    """The blocks' base: a ``HybridBlock`` that works in both array modes."""


class HybridSequential(_ArrayModeCheck, nn.HybridSequential):
    """Gluon's ``HybridSequential``, bound like the blocks to the array mode it was built in."""


SHORTCUTS = ("A", "B", "C")
"""Shortcut options of He et al. 2016 (sections 3.3 and 4.1); ``None`` means none."""


def check_shortcut(shortcut, owner):
    """``shortcut`` if it is ``'A'``, ``'B'``, ``'C'`` or ``None``; else ``ValueError``."""
    if shortcut is not None and shortcut not in SHORTCUTS:
        raise ValueError(
            "%s: shortcut must be 'A' (identity, zero-padded where the shape changes), "
            "'B' (1x1 projection where the shape changes), 'C' (1x1 projection in every "
            "block) or None (plain network, no shortcut); got %r." % (owner, shortcut)
        )
    return shortcut


def conv3x3(channels, stride=1, in_channels=0, stem=False, **kwargs):
    """3x3 convolution without bias, padding 1; a ``StemConv2D`` if ``stem``.

    ``(N, C, H, W) -> (N, channels, ceil(H/stride), ceil(W/stride))``.
    """
    layer = StemConv2D if stem else nn.Conv2D
    return layer(channels, kernel_size=3, strides=stride, padding=1, use_bias=False,
                 in_channels=in_channels, **kwargs)


def conv1x1(channels, stride=1, in_channels=0, **kwargs):
    """1x1 convolution without bias.

    ``(N, C, H, W) -> (N, channels, ceil(H/stride), ceil(W/stride))``.
    """
    return nn.Conv2D(channels, kernel_size=1, strides=stride, use_bias=False,
                     in_channels=in_channels, **kwargs)


class StemConv2D(nn.Conv2D):
    """``nn.Conv2D`` for the convolution that reads the image: it stays fp32 under bf16.

    Same parameters, names and outputs as ``nn.Conv2D``; ``(N, C, H, W) ->
    (N, channels, H', W')``.  It differs only when bf16 AMP is on: then it
    computes in fp32 where every other convolution computes in bf16, and the
    layers after it (BN, ReLU, pooling) follow in fp32 until the next
    convolution casts to bf16.  The reason is oneDNN 2.4's kernels: for a
    1-channel image in bf16 it picks a convolution that writes plain NCHW,
    not the blocked layout of its other kernels, so BN after the stem ran
    oneDNN's plain-layout code, several times slower (``benchmarks/RESULTS.md``,
    "The image's convolution in fp32"; ``benchmarks/stem_check.py`` measures
    the choice on any CPU with bf16).
    """

    def hybrid_forward(self, F, x, weight, bias=None):
        convolution = _CONVOLUTION_BEFORE_AMP.get(F)
        if numpy_mode() or convolution is None or convolution is F.Convolution:
            return super().hybrid_forward(F, x, weight, bias)  # no AMP: nothing to undo
        args = (x, weight) if bias is None else (x, weight, bias)
        out = convolution(*args, name="fwd", **self._kwargs)
        return self.act(out) if self.act is not None else out


def batch_norm(channels, zero_init=False, **kwargs):
    """``BatchNorm`` over ``channels`` channels; ``zero_init`` makes its gamma start at 0.

    The zero comes from the parameter's own initializer (``mx.init.Zero``),
    which wins over the one passed to ``net.initialize``.
    """
    gamma_init = mx.init.Zero() if zero_init else "ones"
    return nn.BatchNorm(in_channels=channels, gamma_initializer=gamma_init, **kwargs)


def _shape_changes(in_channels, out_channels, stride):
    """torchvision's rule: a block changes the shape iff it strides or changes channels."""
    return stride != 1 or in_channels != out_channels


class ZeroPadShortcut(_Block):
    """Shortcut option A (He et al. 2016, section 3.3): identity with zero padding.

    Keeps every ``stride``-th row and column, then appends ``extra_channels``
    channels of zeros.  It has no parameters.

    Parameters
    ----------
    extra_channels : int
        Zero channels appended after the input's channels (0 or more).
    stride : int, default 1
        Subsampling step along height and width.

    Shapes
    ------
    Input ``(N, C, H, W)``; output ``(N, C + extra_channels, ceil(H / stride),
    ceil(W / stride))``, the same as a 3x3 convolution with padding 1.
    """

    def __init__(self, extra_channels, stride=1, **kwargs):
        super().__init__(**kwargs)
        # Option A pads channels with zeros; it cannot drop any.
        self.extra_channels = non_negative_int(extra_channels, "extra_channels", "ZeroPadShortcut")
        self.stride = positive_int(stride, "stride", "ZeroPadShortcut")

    def hybrid_forward(self, F, x):
        ops = array_ops(F)
        if self.stride > 1:
            x = ops.subsample(x, self.stride)
        if self.extra_channels:
            x = ops.append_zero_channels(x, self.extra_channels)
        return x


class SqueezeExcite(_Block):
    """Squeeze-and-Excitation (Hu et al. 2018, section 3 and figure 3).

    Squeeze: global average pool to one value per channel.  Excite: a 1x1
    convolution (with bias) to ``channels // reduction`` channels, ReLU, a 1x1
    convolution back to ``channels``, sigmoid.  The input is multiplied by the
    result, channel by channel.  timm's ``SEModule`` rounds the squeezed width
    to the nearest multiple of 8 (at least 8); for the widths of the ImageNet
    ResNets (256 to 2048 channels, reduction 16) both give the same width.

    Parameters
    ----------
    channels : int
        Channels of the input (and of the output).
    reduction : int, default 16
        Ratio of ``channels`` to the squeezed width (the paper's r; at least 1
        squeezed channel).

    Shapes
    ------
    Input ``(N, channels, H, W)``; output the same shape.
    """

    def __init__(self, channels, reduction=16, **kwargs):
        super().__init__(**kwargs)
        self.channels = positive_int(channels, "channels", "SqueezeExcite")
        self.reduction = positive_int(reduction, "reduction", "SqueezeExcite")
        self.squeezed = max(1, channels // reduction)
        with self.name_scope():
            self.pool = nn.GlobalAvgPool2D()
            self.fc1 = nn.Conv2D(self.squeezed, kernel_size=1, in_channels=channels)
            self.fc2 = nn.Conv2D(channels, kernel_size=1, in_channels=self.squeezed)

    def hybrid_forward(self, F, x):
        ops = array_ops(F)
        scale = self.fc2(ops.activation(self.fc1(self.pool(x)), "relu"))  # (N, C, 1, 1)
        return ops.scale_channels(x, ops.activation(scale, "sigmoid"))


def make_shortcut(kind, in_channels, out_channels, stride, normalize=True, avg_down=False):
    """The shortcut branch of a block, or ``None`` when it is the identity (or absent).

    Parameters
    ----------
    kind : {'A', 'B', 'C', None}
        'A': ``ZeroPadShortcut`` where the shape changes, identity elsewhere.
        'B': 1x1 projection where the shape changes, identity elsewhere.
        'C': 1x1 projection in every block.  ``None``: no shortcut at all.
    in_channels, out_channels : int
        Channels entering and leaving the block.
    stride : int
        The block's stride.
    normalize : bool, default True
        Follow the projection with BN (post-activation blocks); pre-activation
        blocks project an already normalised input and leave it out.
    avg_down : bool, default False
        Projections only: where ``stride > 1``, subsample with a
        ``stride x stride`` average pool (ceil mode, padding not counted) and
        let the 1x1 convolution keep stride 1, so that it sees every input
        position (ResNet-D, He et al. 2019, figure 2(c)).  No parameters.

    Returns
    -------
    mxnet.gluon.HybridBlock or None
        ``(N, in_channels, H, W) -> (N, out_channels, ceil(H/stride), ceil(W/stride))``.
    """
    check_shortcut(kind, "make_shortcut")
    if avg_down and kind not in ("B", "C"):
        raise ValueError("make_shortcut: avg_down pools before a 1x1 projection; it needs "
                         "shortcut 'B' or 'C', got %r." % (kind,))
    if kind is None or (kind in "AB" and not _shape_changes(in_channels, out_channels, stride)):
        return None
    if kind == "A":
        return ZeroPadShortcut(out_channels - in_channels, stride, prefix="shortcut_")
    proj = HybridSequential(prefix="shortcut_")
    with proj.name_scope():
        if avg_down and stride > 1:
            proj.add(nn.AvgPool2D(pool_size=stride, strides=stride, ceil_mode=True,
                                  count_include_pad=False))
            stride = 1
        proj.add(conv1x1(out_channels, stride, in_channels))
        if normalize:
            proj.add(batch_norm(out_channels))
    return proj
