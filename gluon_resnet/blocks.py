"""Residual blocks.

This module holds the block of d2l-zh chapter 5.11 (``Residual``) and its
stage builder (``resnet_block``), with the book's names, arguments and math,
written as ``HybridBlock``s so that they run imperatively and hybridized.

Below them come the blocks of the ResNet family of the papers, in
torchvision's style (convolutions without bias, BN after each, stride on the
3x3 convolution): ``BasicBlockV1`` and ``BottleneckV1`` (post-activation),
``BasicBlockV2`` and ``BottleneckV2`` (pre-activation), the shortcut options
A, B and C, and ``make_stage``, which builds one stage of any of them.  The
later members of the family are options of the same four blocks, not new
blocks: ``groups`` and ``base_width`` (ResNeXt, wide bottlenecks),
``se_reduction`` (``SqueezeExcite`` before the addition), ``dropout`` (before
the last convolution, as in Wide ResNets) and ``avg_down`` (ResNet-D's
average pooling before the projection shortcut).

Every block works in both of MXNet's array modes, imperative and hybridized,
with the same numbers: on legacy ``nd`` arrays (the first edition of the
book) and, after ``npx.set_np()``, on ``mxnet.np`` arrays (the current
edition); ``gluon_resnet.arrays`` picks the operators.  A block belongs to
the mode that was on when it was built (Gluon's layers do); an input of the
other mode, or a call after the mode changed, gets a ``TypeError`` that says
what to do.

References
----------
He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016,
section 3.2 (identity mapping by shortcuts), section 3.3 (options A and B),
section 4.1 (option C, bottleneck architectures) and figures 2 and 5.

He, Zhang, Ren, Sun. "Identity Mappings in Deep Residual Networks", ECCV 2016,
section 4 and figure 4(e) (full pre-activation).

Goyal et al. "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
arXiv 1706.02677, section 5.1 (zero gamma in the last BN of each block).

Xie, Girshick, Dollar, Tu, He. "Aggregated Residual Transformations for Deep
Neural Networks" (ResNeXt), CVPR 2017, section 3.3 and figure 3(c) (grouped
convolution).

Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016, section 2
(widened blocks, dropout between the convolutions).

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

__all__ = ["Residual", "resnet_block", "check_positive_int", "SHORTCUTS", "check_shortcut",
           "conv3x3", "conv1x1", "batch_norm", "ZeroPadShortcut", "SqueezeExcite",
           "make_shortcut", "BasicBlockV1", "BottleneckV1", "BasicBlockV2", "BottleneckV2",
           "make_stage", "HybridSequential"]


#: The package's one positive-integer check (``gluon_resnet.validate``), under the name
#: the blocks have always exported.
check_positive_int = positive_int


def _relu(F, x):
    """ReLU through oneDNN's activation operator, in either array mode (see ``arrays``)."""
    return array_ops(F).activation(x, "relu")


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


def _shortcut_error(block, in_shape, out_shape):
    return ValueError(
        "%s cannot add its shortcut: the input has shape %s but the convolutions "
        "give %s. Use use_1x1conv=True so that a 1x1 convolution reshapes the "
        "input (needed when the channels change or strides > 1)."
        % (block.name, tuple(in_shape), tuple(out_shape))
    )


class Residual(_Block):
    """The residual block of d2l-zh 5.11 (He et al. 2016, figure 2).

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with two 3x3
    convolutions of ``num_channels`` channels (with bias, as in the book) and,
    when ``use_1x1conv`` is set, a 1x1 convolution on the shortcut.  With the
    same parameter values it computes exactly what ``d2lzh.Residual`` computes,
    and in numpy mode (``npx.set_np()``, on ``mxnet.np`` arrays) what the
    current edition's ``d2l.Residual`` computes.

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
        Y = _relu(F, self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return _relu(F, Y + X)


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
    blk = HybridSequential(prefix=prefix)
    with blk.name_scope():
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.add(Residual(num_channels, use_1x1conv=True, strides=2))
            else:
                blk.add(Residual(num_channels))
    return blk


# ---------------------------------------------------------------------------
# The ResNet family of the papers: helpers, shortcuts, blocks, stage builder.
# ---------------------------------------------------------------------------

SHORTCUTS = ("A", "B", "C")
"""Shortcut options of He et al. 2016 (sections 3.3 and 4.1); ``None`` means none."""


def check_shortcut(shortcut, owner):
    """Return ``shortcut`` if it is ``'A'``, ``'B'``, ``'C'`` or ``None``; else raise ``ValueError``."""
    if shortcut is not None and shortcut not in SHORTCUTS:
        raise ValueError(
            "%s: shortcut must be 'A' (identity, zero-padded where the shape changes), "
            "'B' (1x1 projection where the shape changes), 'C' (1x1 projection in every "
            "block) or None (plain network, no shortcut); got %r." % (owner, shortcut)
        )
    return shortcut


def conv3x3(channels, stride=1, in_channels=0, **kwargs):
    """3x3 convolution without bias, padding 1: ``(N, C, H, W) -> (N, channels, ceil(H/stride), ceil(W/stride))``."""
    return nn.Conv2D(channels, kernel_size=3, strides=stride, padding=1, use_bias=False,
                     in_channels=in_channels, **kwargs)


def conv1x1(channels, stride=1, in_channels=0, **kwargs):
    """1x1 convolution without bias: ``(N, C, H, W) -> (N, channels, ceil(H/stride), ceil(W/stride))``."""
    return nn.Conv2D(channels, kernel_size=1, strides=stride, use_bias=False,
                     in_channels=in_channels, **kwargs)


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
        self.stride = check_positive_int(stride, "stride", "ZeroPadShortcut")

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
        self.channels = check_positive_int(channels, "channels", "SqueezeExcite")
        self.reduction = check_positive_int(reduction, "reduction", "SqueezeExcite")
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


class _ResidualUnit(_Block):
    """Convolutions, BNs and shortcut shared by the four blocks of the family.

    Subclasses set ``kernels`` (the convolutions' kernel sizes), ``expansion``
    (output channels / ``channels``) and ``version`` (1: post-activation,
    2: pre-activation), and write ``hybrid_forward``.  See ``BasicBlockV1``
    for the constructor's arguments.
    """

    kernels = ()
    expansion = 1
    version = 1

    def __init__(self, in_channels, channels, stride=1, shortcut="B", stride_in_1x1=False,
                 zero_init_last_bn=False, groups=1, base_width=64, se_reduction=None,
                 dropout=0.0, avg_down=False, **kwargs):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.in_channels = check_positive_int(in_channels, "in_channels", owner)
        self.channels = check_positive_int(channels, "channels", owner)
        self.stride = check_positive_int(stride, "stride", owner)
        self.shortcut_kind = check_shortcut(shortcut, owner)
        self.groups = check_positive_int(groups, "groups", owner)
        self.base_width = check_positive_int(base_width, "base_width", owner)
        self.out_channels = channels * self.expansion
        if shortcut == "A" and self.out_channels < in_channels:
            raise ValueError("%s: shortcut 'A' can only add zero channels, but the block maps %d "
                             "channels to %d; use shortcut 'B'." % (owner, in_channels,
                                                                    self.out_channels))
        if len(self.kernels) == 2 and (groups != 1 or base_width != 64):
            raise ValueError("%s: groups and base_width apply to the 3x3 convolution of a "
                             "bottleneck (ResNeXt, wide ResNets); basic blocks take groups=1 and "
                             "base_width=64 and are widened through channels, got groups=%r, "
                             "base_width=%r." % (owner, groups, base_width))
        # torchvision's and timm's rule: the inner width grows with base_width / 64 per group.
        self.width = int(channels * base_width / 64) * groups
        if self.width == 0:
            raise ValueError("%s: channels * base_width / 64 must be at least 1, got %d * %d / 64."
                             % (owner, channels, base_width))
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0 <= dropout < 1:
            raise ValueError("%s: dropout must be a probability in [0, 1), got %r."
                             % (owner, dropout))
        if se_reduction is not None:
            check_positive_int(se_reduction, "se_reduction", owner)
        if avg_down and shortcut not in ("B", "C"):
            raise ValueError("%s: avg_down pools before a 1x1 projection shortcut; it needs "
                             "shortcut 'B' or 'C', got %r." % (owner, shortcut))
        preact = self.version == 2
        strided = 0 if stride_in_1x1 else self.kernels.index(3)
        widths = [self.width] * (len(self.kernels) - 1) + [self.out_channels]
        convs, bns = [], []
        with self.name_scope():
            c_in = in_channels
            for i, (kernel, c_out) in enumerate(zip(self.kernels, widths)):
                conv_stride = stride if i == strided else 1
                if kernel == 3:
                    conv = conv3x3(c_out, conv_stride, c_in, groups=groups)
                else:
                    conv = conv1x1(c_out, conv_stride, c_in)
                # v1: BN after the convolution; v2: BN (and ReLU) before it.
                bn = batch_norm(c_in if preact else c_out,
                                zero_init=zero_init_last_bn and i == len(widths) - 1)
                setattr(self, "conv%d" % (i + 1), conv)
                setattr(self, "bn%d" % (i + 1), bn)
                convs.append(conv)
                bns.append(bn)
                c_in = c_out
            # Wide ResNets: dropout on the input of the last convolution.
            self.dropout = nn.Dropout(dropout) if dropout else None
            self.se = (SqueezeExcite(self.out_channels, se_reduction, prefix="se_")
                       if se_reduction is not None else None)
            self.shortcut = make_shortcut(shortcut, in_channels, self.out_channels, stride,
                                          normalize=not preact, avg_down=avg_down)
        self.convs, self.bns = tuple(convs), tuple(bns)
        self.projects = self.shortcut is not None and not isinstance(self.shortcut,
                                                                     ZeroPadShortcut)

    def layer_sequence(self):
        """The block's operations in forward order, as short labels.

        For diagrams and teaching (``plotting.plot_blocks`` draws them).

        Returns
        -------
        main : list of str
            The residual branch, then ``"add"`` where the shortcut joins and,
            for post-activation blocks, the final ``"ReLU"``.
        shortcut : list of str or None
            The shortcut branch: ``[]`` for the identity, ``None`` for a plain
            block without shortcut.
        """
        def conv_label(conv):
            k, stride = conv._kwargs["kernel"][0], conv._kwargs["stride"][0]
            groups = conv._kwargs["num_group"]
            return "conv %dx%d, %d%s%s" % (k, k, conv._channels,
                                           ", g%d" % groups if groups > 1 else "",
                                           ", /%d" % stride if stride > 1 else "")

        def shortcut_label(layer):
            if isinstance(layer, nn.Conv2D):
                return conv_label(layer)
            if isinstance(layer, nn.AvgPool2D):
                k = layer._kwargs["kernel"][0]
                return "avg-pool %dx%d, /%d" % (k, k, layer._kwargs["stride"][0])
            return "BN"

        main = []
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            drop = ["dropout"] if i == last and self.dropout is not None else []
            if self.version == 2:
                main += ["BN", "ReLU"] + drop + [conv_label(conv)]
            else:
                main += (["ReLU"] if i else []) + drop + [conv_label(conv), "BN"]
        if self.se is not None:
            main.append("SE, %d -> %d -> %d" % (self.se.channels, self.se.squeezed,
                                                 self.se.channels))
        if self.shortcut_kind is None:
            return main + (["ReLU"] if self.version == 1 else []), None
        main.append("add")
        if self.version == 1:
            main.append("ReLU")
        if self.shortcut is None:
            shortcut = []
        elif isinstance(self.shortcut, ZeroPadShortcut):
            shortcut = ["zero-pad +%d%s" % (self.shortcut.extra_channels,
                                             ", /%d" % self.stride if self.stride > 1 else "")]
        else:
            shortcut = [shortcut_label(layer) for layer in self.shortcut]
        return main, shortcut

    @property
    def last_bn(self):
        """The BN whose gamma ``zero_init_last_bn`` sets to zero."""
        return self.bns[-1]

    def _last_conv_input(self, out):
        """Dropout, where the block has it, on the input of its last convolution."""
        return out if self.dropout is None else self.dropout(out)

    def _add_shortcut(self, F, out, x):
        """Squeeze-excite the residual branch (if set), then add the shortcut."""
        if self.se is not None:
            out = self.se(out)
        if self.shortcut_kind is None:
            return out
        # add_n, not +, in both modes: arrays._LegacyOps.add says why, tests/test_blocks.py checks.
        return array_ops(F).add(out, x if self.shortcut is None else self.shortcut(x))


class _PostActivationUnit(_ResidualUnit):
    version = 1

    def hybrid_forward(self, F, x):
        out = x
        last = len(self.convs) - 1
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            if i:
                out = _relu(F, out)
            if i == last:
                out = self._last_conv_input(out)
            out = bn(conv(out))
        return _relu(F, self._add_shortcut(F, out, x))


class _PreActivationUnit(_ResidualUnit):
    version = 2

    def hybrid_forward(self, F, x):
        act = _relu(F, self.bns[0](x))
        out = self.convs[0](act)
        last = len(self.convs) - 1
        for i, (conv, bn) in enumerate(zip(self.convs[1:], self.bns[1:]), 1):
            out = _relu(F, bn(out))
            if i == last:
                out = self._last_conv_input(out)
            out = conv(out)
        # A projection reads the pre-activated input (as GluonCV does); a
        # parameter-free shortcut keeps the clean identity path of the paper.
        return self._add_shortcut(F, out, act if self.projects else x)


class BasicBlockV1(_PostActivationUnit):
    """Basic block of ResNet-18/34 (He et al. 2016, figure 5 left; section 3.3).

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with two 3x3
    convolutions without bias.  All four blocks of the family share this
    constructor.

    Parameters
    ----------
    in_channels : int
        Channels of the input (needed to decide and build the shortcut).
    channels : int
        Width of the block; the output has ``channels * expansion`` channels.
    stride : int, default 1
        Stride of the block: on the first 3x3 convolution (torchvision), or on
        the first 1x1 convolution of a bottleneck when ``stride_in_1x1``.
    shortcut : {'B', 'A', 'C', None}, default 'B'
        Shortcut option (see ``make_shortcut``); ``None`` gives a plain block.
    stride_in_1x1 : bool, default False
        Bottlenecks only: stride on the first 1x1 convolution, as in the
        original paper and Caffe models.  Basic blocks have no 1x1 convolution.
    zero_init_last_bn : bool, default False
        Initialise the gamma of the block's last BN to zero (Goyal et al. 2017,
        section 5.1), so the residual branch starts at zero.
    groups : int, default 1
        Bottlenecks only: groups of the 3x3 convolution, ResNeXt's cardinality
        (Xie et al. 2017, figure 3(c)).
    base_width : int, default 64
        Bottlenecks only: channels per group at ``channels == 64``.  The inner
        width (of the first two convolutions) is ``int(channels * base_width /
        64) * groups``, torchvision's rule: 64 and 1 group is ResNet,
        ``groups=32, base_width=4`` ResNeXt-32x4d, 128 a wide ResNet
        (bottleneck twice as wide, same output channels).
    se_reduction : int, optional
        Put a ``SqueezeExcite(channels * expansion, se_reduction)`` on the
        residual branch, right before the shortcut's addition (Hu et al. 2018,
        figure 3; the paper uses 16).  ``None``: no squeeze-excite.
    dropout : float, default 0
        Dropout probability on the input of the last convolution (between the
        two convolutions of a basic block, after the BN and ReLU, as in Wide
        ResNets, Zagoruyko & Komodakis 2016, section 2.4).  0: no dropout.
    avg_down : bool, default False
        Projection shortcuts (options 'B', 'C') subsample by average pooling
        instead of a strided 1x1 convolution (ResNet-D, He et al. 2019).

    Attributes
    ----------
    expansion : int
        1 here, 4 for bottlenecks.
    version : int
        1 here (post-activation), 2 for the pre-activation blocks.
    width : int
        Channels of the inner convolutions (``channels`` unless ``groups`` or
        ``base_width`` change it).

    Shapes
    ------
    Input ``(N, in_channels, H, W)``; output ``(N, channels * expansion,
    ceil(H / stride), ceil(W / stride))``.
    """

    kernels = (3, 3)
    expansion = 1


class BottleneckV1(_PostActivationUnit):
    """Bottleneck block of ResNet-50/101/152 (He et al. 2016, figure 5 right; section 4.1).

    1x1 convolution reducing to ``channels``, 3x3 convolution, 1x1 convolution
    expanding to ``4 * channels``, each followed by BN (and ReLU, the last one
    after the shortcut's addition).  Same constructor as ``BasicBlockV1``.
    With ``groups`` and ``base_width`` the first two convolutions have
    ``width`` channels and the 3x3 one is grouped: the ResNeXt block (Xie et
    al. 2017, figure 3(c)) and the wide bottleneck of torchvision's
    ``wide_resnet50_2``.

    Shapes
    ------
    Input ``(N, in_channels, H, W)``; output ``(N, 4 * channels,
    ceil(H / stride), ceil(W / stride))``.
    """

    kernels = (1, 3, 1)
    expansion = 4


class BasicBlockV2(_PreActivationUnit):
    """Pre-activation basic block (He et al. 2016b, "Identity Mappings", figure 4(e)).

    ``conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x)``: BN and ReLU come
    before each convolution and nothing follows the addition, so the output
    can be negative.  A projection shortcut reads ``relu(bn1(x))`` and has no
    BN.  Same constructor and shapes as ``BasicBlockV1``.
    """

    kernels = (3, 3)
    expansion = 1


class BottleneckV2(_PreActivationUnit):
    """Pre-activation bottleneck block (He et al. 2016b, figure 4(e); section 4).

    BN, ReLU, 1x1 convolution to ``channels``; BN, ReLU, 3x3 convolution; BN,
    ReLU, 1x1 convolution to ``4 * channels``; plus the shortcut, with no
    activation after the addition.  Same constructor as ``BasicBlockV1``, same
    shapes as ``BottleneckV1``.
    """

    kernels = (1, 3, 1)
    expansion = 4


def make_stage(block, in_channels, channels, num_blocks, stride=1, prefix=None, **block_kwargs):
    """One stage of a family network: ``num_blocks`` blocks of class ``block``.

    torchvision's ``_make_layer``: only the first block strides and changes
    the channels, so only it gets a projection (or zero-padding) shortcut under
    options 'A' and 'B'; the others map ``channels * block.expansion``
    channels to themselves.

    Parameters
    ----------
    block : type
        ``BasicBlockV1``, ``BottleneckV1``, ``BasicBlockV2`` or ``BottleneckV2``.
    in_channels : int
        Channels entering the stage.
    channels : int
        Width of each block (output: ``channels * block.expansion``).
    num_blocks : int
        Number of blocks.
    stride : int, default 1
        Stride of the first block.
    prefix : str, optional
        Name prefix of the container, for example ``"stage2_"``.
    **block_kwargs
        ``shortcut``, ``stride_in_1x1``, ``zero_init_last_bn``, ``groups``,
        ``base_width``, ``se_reduction``, ``dropout``, ``avg_down``: passed to
        every block (see ``BasicBlockV1``).

    Returns
    -------
    mxnet.gluon.nn.HybridSequential
        Input ``(N, in_channels, H, W)``; output ``(N, channels *
        block.expansion, ceil(H / stride), ceil(W / stride))``.
    """
    check_positive_int(num_blocks, "num_blocks", "make_stage")
    stage = HybridSequential(prefix=prefix)
    with stage.name_scope():
        for i in range(num_blocks):
            stage.add(block(in_channels, channels, stride if i == 0 else 1, **block_kwargs))
            in_channels = channels * block.expansion
    return stage
