"""Residual blocks: the chapter's ``Residual`` and the units of the ResNet family.

First the block of d2l-zh chapter 5.11 (``Residual``) and its stage builder
(``resnet_block``), with the book's names, arguments and math, written as
``HybridBlock``s so that they run imperatively and hybridized.

Then the units of the papers, in torchvision's style (convolutions without
bias, BN after each, stride on the 3x3 convolution), each with its forward
pass written out: ``BasicBlockV1`` (conv-BN-ReLU-conv-BN, add, ReLU) and
``BottleneckV1`` (1x1, 3x3, 1x1), post-activation; ``BasicBlockV2`` and
``BottleneckV2``, pre-activation (BN-ReLU-conv, ..., add).  With
``shortcut=None`` a unit is the plain unit of the same layers.  The later
members of the family are options of the same four units: ``groups`` and
``base_width`` (ResNeXt, wide bottlenecks), ``se_reduction``
(squeeze-and-excite before the addition), ``dropout`` (before the last
convolution, as in Wide ResNets) and ``avg_down`` (ResNet-D's average pooling
before the projection shortcut).  ``make_stage`` builds one stage of any of
them; the parts (shortcuts, SE, convolutions) are in ``gluon_resnet.layers``.

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
section 3.2 (identity mapping by shortcuts), section 4.1 (bottleneck
architectures) and figures 2 and 5.

He, Zhang, Ren, Sun. "Identity Mappings in Deep Residual Networks", ECCV 2016,
section 4 and figure 4(e) (full pre-activation).

Goyal et al. "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
arXiv 1706.02677, section 5.1 (zero gamma in the last BN of each block).

Xie, Girshick, Dollar, Tu, He. "Aggregated Residual Transformations for Deep
Neural Networks" (ResNeXt), CVPR 2017, section 3.3 and figure 3(c) (grouped
convolution).

Zagoruyko, Komodakis. "Wide Residual Networks", BMVC 2016, section 2
(widened blocks, dropout between the convolutions).
"""

from ._mxnet import mx
from mxnet.gluon import nn

from .arrays import array_ops
from .layers import (SHORTCUTS, HybridSequential, SqueezeExcite, ZeroPadShortcut, _Block,
                     batch_norm, check_shortcut, conv1x1, conv3x3, make_shortcut)
from .validate import positive_int

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
# The ResNet family of the papers: the four units and the stage builder.
# ---------------------------------------------------------------------------

class _ResidualUnit(_Block):
    """What the family's units share: the arguments, dropout, squeeze-excite and shortcut.

    A unit makes its convolutions and BNs in ``_make_branch`` and computes in
    its own ``hybrid_forward``.  Every unit makes them in the order conv1, bn1,
    conv2, bn2, ... (pre-activation units too): Gluon names and initialises the
    parameters in that order, and checkpoints and golden outputs rely on it.
    See ``BasicBlockV1`` for the constructor's arguments.
    """

    kernels = ()   # kernel sizes of the residual branch's convolutions, in forward order
    expansion = 1  # output channels / channels
    version = 1    # 1: post-activation, 2: pre-activation

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
        with self.name_scope():
            self._make_branch(stride_in_1x1, zero_init_last_bn)
            self.dropout = nn.Dropout(dropout) if dropout else None
            self.se = (SqueezeExcite(self.out_channels, se_reduction, prefix="se_")
                       if se_reduction is not None else None)
            # Pre-activation units project an input their first BN has already normalised.
            self.shortcut = make_shortcut(shortcut, in_channels, self.out_channels, stride,
                                          normalize=self.version == 1, avg_down=avg_down)
        self.projects = self.shortcut is not None and not isinstance(self.shortcut,
                                                                     ZeroPadShortcut)

    def _make_branch(self, stride_in_1x1, zero_init_last_bn):
        """Make ``conv1``, ``bn1``, ... and set ``convs`` and ``bns`` (tuples, forward order)."""
        raise NotImplementedError

    @property
    def last_bn(self):
        """The BN whose gamma ``zero_init_last_bn`` sets to zero."""
        return self.bns[-1]

    def _drop(self, x):
        """Dropout (Wide ResNets) where the unit has it, else ``x``."""
        return x if self.dropout is None else self.dropout(x)

    def _excite(self, x):
        """Squeeze-and-excitation where the unit has it, else ``x``."""
        return x if self.se is None else self.se(x)

    def _add_shortcut(self, F, out, x):
        """``out`` plus the shortcut of ``x``; a plain unit (``shortcut=None``) returns ``out``."""
        if self.shortcut_kind is None:
            return out
        # add_n, not +, in both modes: arrays._LegacyOps.add says why, tests/test_blocks.py checks.
        return array_ops(F).add(out, x if self.shortcut is None else self.shortcut(x))


class BasicBlockV1(_ResidualUnit):
    """Basic block of ResNet-18/34 (He et al. 2016, figure 5 left; section 3.3).

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with two 3x3
    convolutions without bias.  All four blocks of the family share this
    constructor; with ``shortcut=None`` each is the plain unit of the same
    layers, without the addition.

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
    convs, bns : tuple
        The residual branch's convolutions and BNs, in forward order
        (``conv1``, ``conv2``, ... and ``bn1``, ``bn2``, ...).

    Shapes
    ------
    Input ``(N, in_channels, H, W)``; output ``(N, channels * expansion,
    ceil(H / stride), ceil(W / stride))``.
    """

    kernels = (3, 3)
    expansion = 1
    version = 1

    def _make_branch(self, stride_in_1x1, zero_init_last_bn):
        self.conv1 = conv3x3(self.width, self.stride, self.in_channels)
        self.bn1 = batch_norm(self.width)
        self.conv2 = conv3x3(self.out_channels, 1, self.width)
        self.bn2 = batch_norm(self.out_channels, zero_init=zero_init_last_bn)
        self.convs, self.bns = (self.conv1, self.conv2), (self.bn1, self.bn2)

    def hybrid_forward(self, F, x):
        out = _relu(F, self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(self._drop(out)))
        out = self._excite(out)
        return _relu(F, self._add_shortcut(F, out, x))


class BottleneckV1(_ResidualUnit):
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
    version = 1

    def _make_branch(self, stride_in_1x1, zero_init_last_bn):
        w = self.width
        stride1, stride3 = (self.stride, 1) if stride_in_1x1 else (1, self.stride)
        self.conv1 = conv1x1(w, stride1, self.in_channels)
        self.bn1 = batch_norm(w)
        self.conv2 = conv3x3(w, stride3, w, groups=self.groups)
        self.bn2 = batch_norm(w)
        self.conv3 = conv1x1(self.out_channels, 1, w)
        self.bn3 = batch_norm(self.out_channels, zero_init=zero_init_last_bn)
        self.convs = (self.conv1, self.conv2, self.conv3)
        self.bns = (self.bn1, self.bn2, self.bn3)

    def hybrid_forward(self, F, x):
        out = _relu(F, self.bn1(self.conv1(x)))
        out = _relu(F, self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self._drop(out)))
        out = self._excite(out)
        return _relu(F, self._add_shortcut(F, out, x))


class BasicBlockV2(_ResidualUnit):
    """Pre-activation basic block (He et al. 2016b, "Identity Mappings", figure 4(e)).

    ``conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut(x)``: BN and ReLU come
    before each convolution and nothing follows the addition, so the output
    can be negative.  A projection shortcut reads ``relu(bn1(x))`` and has no
    BN.  Same constructor and shapes as ``BasicBlockV1``.
    """

    kernels = (3, 3)
    expansion = 1
    version = 2

    def _make_branch(self, stride_in_1x1, zero_init_last_bn):
        self.conv1 = conv3x3(self.width, self.stride, self.in_channels)
        self.bn1 = batch_norm(self.in_channels)
        self.conv2 = conv3x3(self.out_channels, 1, self.width)
        self.bn2 = batch_norm(self.width, zero_init=zero_init_last_bn)
        self.convs, self.bns = (self.conv1, self.conv2), (self.bn1, self.bn2)

    def hybrid_forward(self, F, x):
        act = _relu(F, self.bn1(x))
        out = self.conv1(act)
        out = self.conv2(self._drop(_relu(F, self.bn2(out))))
        out = self._excite(out)
        # A projection reads the pre-activated input (as GluonCV does); a
        # parameter-free shortcut keeps the clean identity path of the paper.
        return self._add_shortcut(F, out, act if self.projects else x)


class BottleneckV2(_ResidualUnit):
    """Pre-activation bottleneck block (He et al. 2016b, figure 4(e); section 4).

    BN, ReLU, 1x1 convolution to ``channels``; BN, ReLU, 3x3 convolution; BN,
    ReLU, 1x1 convolution to ``4 * channels``; plus the shortcut, with no
    activation after the addition.  Same constructor as ``BasicBlockV1``, same
    shapes as ``BottleneckV1``.
    """

    kernels = (1, 3, 1)
    expansion = 4
    version = 2

    def _make_branch(self, stride_in_1x1, zero_init_last_bn):
        w = self.width
        stride1, stride3 = (self.stride, 1) if stride_in_1x1 else (1, self.stride)
        self.conv1 = conv1x1(w, stride1, self.in_channels)
        self.bn1 = batch_norm(self.in_channels)
        self.conv2 = conv3x3(w, stride3, w, groups=self.groups)
        self.bn2 = batch_norm(w)
        self.conv3 = conv1x1(self.out_channels, 1, w)
        self.bn3 = batch_norm(w, zero_init=zero_init_last_bn)
        self.convs = (self.conv1, self.conv2, self.conv3)
        self.bns = (self.bn1, self.bn2, self.bn3)

    def hybrid_forward(self, F, x):
        act = _relu(F, self.bn1(x))
        out = self.conv1(act)
        out = self.conv2(_relu(F, self.bn2(out)))
        out = self.conv3(self._drop(_relu(F, self.bn3(out))))
        out = self._excite(out)
        # As in BasicBlockV2: only a projection reads the pre-activated input.
        return self._add_shortcut(F, out, act if self.projects else x)


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
