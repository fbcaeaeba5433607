"""Networks and the model registry.

Three networks are called "ResNet-18" in the d2l world; here each has a name
that says which one it is:

- ``chapter_resnet18``: the network of d2l-zh chapter 5.11 (7x7/2 stem with
  max-pool, ``Residual`` blocks with biased convolutions, ``Dense(10)``).
- ``resnet18``: ``d2lzh.resnet18(num_classes)``, the small-image variant used
  later in the book (3x3/1 stem, no max-pool).  Same name, same meaning.
- ``resnet18_v1`` ... ``resnet152_v2``, ``plain18``, ``plain34``,
  ``cifar_resnet20_v1`` ... ``cifar_resnet110_v2``: the family of the papers,
  built by one ``ResNet`` class from one spec table (``RESNET_SPEC``, plus
  ``cifar_spec`` for the 6n+2 CIFAR networks).  ``resnet18_v1`` is the
  torchvision/paper ResNet-18 (bias-free convolutions, 1000 classes).
- ``resnext50_32x4d``, ``resnext101_32x8d``, ``wide_resnet50_2``,
  ``wide_resnet101_2``, ``resnet50_v1c``, ``resnet18_v1d``, ``resnet50_v1d``,
  ``seresnet50``:
  the later papers' networks, as options of the same class and table
  (``RESNET_VARIANTS``: grouped and widened bottlenecks, the deep stem and
  average-pool shortcut of "Bag of Tricks", squeeze-and-excitation).
- ``wrn16_4``, ``wrn28_10``, ``wrn40_4``: CIFAR Wide ResNets
  (``wrn(depth, k)``, pre-activation basic blocks of 16k/32k/64k channels).

Every network is reachable through ``get_model(name, **kwargs)``;
``list_models()`` lists the names.  Pretrained weights are loaded above this
module, by ``gluon_resnet.pretrained`` (``gluon_resnet.get_model(name,
pretrained=FILE)``).  Like their blocks, the networks work on
legacy ``nd`` arrays and, after ``npx.set_np()``, on ``mxnet.np`` arrays.

One module for the family: the spec table, the one class built from it and
every registered name are read together (the blocks are in ``blocks``, the
weights in ``pretrained``).
"""

import collections
import difflib
import functools
import inspect
import re

from ._mxnet import mx
from mxnet.gluon import nn

from .arrays import in_caller_mode
from .blocks import (resnet_block, check_positive_int, check_shortcut, conv3x3, batch_norm,
                     make_stage, _Block, _ResidualUnit, BasicBlockV1, BottleneckV1, BasicBlockV2,
                     BottleneckV2, HybridSequential)
from .summary import count_parameters
from .layers import StemConv2D

__all__ = ["chapter_resnet18", "resnet18", "register_model", "list_models",
           "get_model", "model_description", "model_input_channels", "count_model_parameters",
           "unknown_model_message",
           "ResNet", "ResNetArch", "RESNET_SPEC", "CIFAR_DEPTHS", "BLOCKS", "cifar_spec",
           "get_resnet", "cifar_resnet", "cifar_plain", "CIFAR_PLAIN_DEPTHS", "plain_resnet",
           "compact_resnet8", "compact_resnet8_w32", "compact_resnet9", "RESNET_VARIANTS",
           "resnet_variant", "WRN_CONFIGS", "wrn_spec", "wrn"]

#: Python's messages for arguments that do not fit a function's signature.
_ARGUMENT_ERROR = re.compile(r"unexpected keyword argument|missing \d+ required|takes \d+ "
                             r"positional|multiple values for argument")

_Entry = collections.namedtuple("_Entry", "factory description input_channels")
_REGISTRY = {}


def register_model(name, description, input_channels=1):
    """Decorator: register ``factory`` under ``name`` with a one-line description.

    ``input_channels`` is the channel count the model is meant for (1 for
    Fashion-MNIST, 3 for ImageNet and CIFAR); ``gluon-resnet models`` counts
    parameters at it.  The networks themselves infer their input channels.
    """

    def wrap(factory):
        if name in _REGISTRY:
            raise RuntimeError("model %r is registered twice" % name)
        _REGISTRY[name] = _Entry(factory, description, input_channels)
        return factory

    return wrap


def list_models():
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def model_description(name):
    """The one-line description a model was registered with."""
    return _lookup(name).description


def model_input_channels(name):
    """The input channels a model was registered for (1 or 3)."""
    return _lookup(name).input_channels


def unknown_model_message(name):
    """The sentence for a model name that is not registered: the closest names, not all of them.

    ``"unknown model 'resnt18'; did you mean resnet18? ('gluon-resnet models' or
    list_models() lists all 42)"``.
    """
    close = difflib.get_close_matches(str(name), list_models(), n=3, cutoff=0.6)
    guess = "; did you mean %s?" % " or ".join(filter(None, [", ".join(close[:-1]), close[-1]])) \
        if close else ""
    return "unknown model %r%s ('gluon-resnet models' or list_models() lists all %d)" % (
        name, guess, len(list_models()))


def _lookup(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(unknown_model_message(name)) from None


def get_model(name, **kwargs):
    """Build the registered model ``name``.

    Parameters
    ----------
    name : str
        One of ``list_models()``.
    **kwargs
        Passed to the model's factory (for example ``num_classes=10``).

    Returns
    -------
    mxnet.gluon.HybridBlock
        An uninitialised network.  ``gluon_resnet.get_model`` (in
        ``gluon_resnet.pretrained``) also takes ``pretrained=FILE``.
    """
    factory = _lookup(name).factory
    if "pretrained" in kwargs:
        raise ValueError("gluon_resnet.models.get_model builds networks without weights; for "
                         "pretrained=, use gluon_resnet.get_model or "
                         "gluon_resnet.pretrained.load_pretrained.")
    try:
        inspect.signature(factory).bind(**kwargs)
        net = factory(**kwargs)
    except TypeError as exc:
        # A factory that passes **kwargs on rejects an argument deeper down, with Python's
        # own message; any other TypeError is a bug and must show as one.
        if not _ARGUMENT_ERROR.search(str(exc)):
            raise
        raise ValueError("model %r does not accept these arguments: %s" % (name, exc)) from None
    return net


def _chapter_head(net, num_classes):
    net.add(resnet_block(64, 2, first_block=True, prefix="stage1_"),
            resnet_block(128, 2, prefix="stage2_"),
            resnet_block(256, 2, prefix="stage3_"),
            resnet_block(512, 2, prefix="stage4_"))
    net.add(nn.GlobalAvgPool2D(), nn.Dense(num_classes))


@register_model("chapter_resnet18",
                "d2l-zh 5.11's ResNet-18: 7x7/2 stem + max-pool, biased convs, 1-channel input")
def chapter_resnet18(num_classes=10):
    """The ResNet-18 of d2l-zh chapter 5.11.

    Stem: 7x7/2 convolution with 64 channels, BN, ReLU, 3x3/2 max-pool; then
    ``resnet_block(64, 2, first_block=True)``, ``resnet_block(128, 2)``,
    ``resnet_block(256, 2)``, ``resnet_block(512, 2)``, global average pool and
    ``Dense(num_classes)``.

    Parameters
    ----------
    num_classes : int, default 10
        Size of the output layer.

    Returns
    -------
    mxnet.gluon.nn.HybridSequential
        Input ``(N, C, H, W)`` (C = 1 for Fashion-MNIST; inferred at the first
        call); output ``(N, num_classes)``.  For a (1, 1, 224, 224) input the
        ten top-level layers give (1, 64, 112, 112) three times, (1, 64, 56, 56)
        twice, (1, 128, 28, 28), (1, 256, 14, 14), (1, 512, 7, 7),
        (1, 512, 1, 1) and (1, num_classes).
    """
    check_positive_int(num_classes, "num_classes", "chapter_resnet18")
    net = HybridSequential(prefix="chapter_resnet18_")
    with net.name_scope():
        net.add(StemConv2D(64, kernel_size=7, strides=2, padding=3),
                nn.BatchNorm(),
                nn.Activation("relu"),
                nn.MaxPool2D(pool_size=3, strides=2, padding=1))
        _chapter_head(net, num_classes)
    return net


@register_model("resnet18",
                "d2lzh.resnet18(num_classes): 3x3/1 stem, no max-pool, for small images")
def resnet18(num_classes=10):
    """``d2lzh.resnet18(num_classes)``: the book's ResNet-18 for small images.

    Like ``chapter_resnet18`` but with a 3x3/1 convolution stem (64 channels,
    BN, ReLU) and no max-pool, so 28x28 or 32x32 inputs keep enough resolution.

    Parameters
    ----------
    num_classes : int, default 10
        Size of the output layer (d2lzh requires it; 10 is the default here).

    Returns
    -------
    mxnet.gluon.nn.HybridSequential
        Input ``(N, C, H, W)``; output ``(N, num_classes)``; the last stage
        has shape ``(N, 512, H / 8, W / 8)`` (rounded up).
    """
    check_positive_int(num_classes, "num_classes", "resnet18")
    net = HybridSequential(prefix="resnet18_")
    with net.name_scope():
        net.add(StemConv2D(64, kernel_size=3, strides=1, padding=1),
                nn.BatchNorm(),
                nn.Activation("relu"))
        _chapter_head(net, num_classes)
    return net


def count_model_parameters(name, trainable_only=True, size=32, **kwargs):
    """Parameters of the registered model ``name`` at its registered input channels.

    The network is built with ``kwargs`` and its shapes are inferred for a
    ``(1, model_input_channels(name), size, size)`` input, symbolically: no
    parameter is allocated and nothing is computed, so the 127 M parameters of
    ``wide_resnet101_2`` are counted as quickly as ResNet-18's.

    Parameters
    ----------
    name : str
        One of ``list_models()``.
    trainable_only : bool, default True
        Leave out BN running statistics (torchvision's convention).
    size : int, default 32
        Input height and width; small is fast and changes no count.
    **kwargs
        Passed to the factory (for example ``num_classes=10``).
    """
    net = get_model(name, **kwargs)
    net.infer_shape(in_caller_mode(mx.nd.zeros((1, model_input_channels(name), size, size))))
    return count_parameters(net, trainable_only=trainable_only)


# ---------------------------------------------------------------------------
# The ResNet family of the papers: one class, one spec table, thin factories.
# ---------------------------------------------------------------------------

STEMS = {"imagenet": "7x7/2 stem + max-pool", "small": "3x3/1 stem", "halve": "3x3/2 stem",
         "deep": "3x3/1 + 3x3/2 stem", "imagenet_deep": "three 3x3 stem (/2) + max-pool",
         "conv": "3x3/1 conv stem without BN"}
VERSIONS = {1: "post-activation, He et al. 2016", 2: "pre-activation, He et al. 2016b"}

BLOCKS = {("basic", 1): BasicBlockV1, ("bottleneck", 1): BottleneckV1,
          ("basic", 2): BasicBlockV2, ("bottleneck", 2): BottleneckV2}
"""Block class by (kind, version)."""

RESNET_SPEC = {
    18: ("basic", (2, 2, 2, 2), (64, 64, 128, 256, 512)),
    34: ("basic", (3, 4, 6, 3), (64, 64, 128, 256, 512)),
    50: ("bottleneck", (3, 4, 6, 3), (64, 64, 128, 256, 512)),
    101: ("bottleneck", (3, 4, 23, 3), (64, 64, 128, 256, 512)),
    152: ("bottleneck", (3, 8, 36, 3), (64, 64, 128, 256, 512)),
}
"""He et al. 2016, table 1: depth -> (block kind, blocks per stage, channels).

``channels`` is the stem's width followed by each stage's block width; a
bottleneck stage outputs 4 times its width.
"""

RESNET_VARIANTS = {
    "resnext50_32x4d": (50, {"groups": 32, "base_width": 4}, "ResNeXt-50 32x4d (Xie et al. 2017)"),
    "resnext101_32x8d": (101, {"groups": 32, "base_width": 8},
                         "ResNeXt-101 32x8d (Xie et al. 2017)"),
    "wide_resnet50_2": (50, {"base_width": 128}, "Wide ResNet-50-2 (torchvision)"),
    "wide_resnet101_2": (101, {"base_width": 128}, "Wide ResNet-101-2 (torchvision)"),
    "resnet50_v1c": (50, {"stem": "imagenet_deep"}, "ResNet-50-C (He et al. 2019)"),
    "resnet18_v1d": (18, {"stem": "imagenet_deep", "avg_down": True},
                     "ResNet-18-D (He et al. 2019)"),
    "resnet50_v1d": (50, {"stem": "imagenet_deep", "avg_down": True},
                     "ResNet-50-D (He et al. 2019)"),
    "seresnet50": (50, {"se_reduction": 16}, "SE-ResNet-50 (Hu et al. 2018)"),
}
"""Later members of the ImageNet family as options of ``RESNET_SPEC``'s networks.

name -> (depth in ``RESNET_SPEC``, options of ``ResNet``, title).  All use
post-activation (v1) blocks and shortcut B.  The names are torchvision's
(ResNeXt, wide), GluonCV's (``_v1c``, ``_v1d``: ResNet-C and -D of "Bag of
Tricks"; our ``_v1`` already strides in the 3x3 convolution, their ResNet-B)
and timm's (``seresnet50``).  The tests check the parameter counts these
libraries publish for the same names.  Other depths are options away, for
example ``get_resnet(101, stem="imagenet_deep", avg_down=True)`` (ResNet-101-D);
only a few are registered, because every registered model runs through the
tests parametrised over the registry.
"""

#: Wide ResNets of Zagoruyko & Komodakis 2016 that are registered: (depth, k).
WRN_CONFIGS = ((16, 4), (28, 10), (40, 4))

CIFAR_DEPTHS = (20, 32, 44, 56, 110)
#: Depths of the plain CIFAR networks registered as ``cifar_plain<depth>``.
CIFAR_PLAIN_DEPTHS = (20, 32, 44, 56)
"""The CIFAR-10 networks of He et al. 2016, section 4.2, that are registered."""


def cifar_spec(depth):
    """Spec of the CIFAR ResNet with ``depth = 6n + 2`` layers (He et al. 2016, section 4.2).

    Three stages of ``n`` basic blocks with 16, 32 and 64 channels after a
    16-channel 3x3 stem, in ``RESNET_SPEC``'s format.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError("CIFAR ResNets have 6n+2 layers for n >= 1 (registered: %s); got %r."
                         % (", ".join(map(str, CIFAR_DEPTHS)), depth))
    n = (depth - 2) // 6
    return ("basic", (n, n, n), (16, 16, 32, 64))


def wrn_spec(depth, k):
    """Spec of the Wide ResNet WRN-``depth``-``k`` (Zagoruyko & Komodakis 2016, table 1).

    Three stages of ``(depth - 4) / 6`` basic blocks with ``16k``, ``32k`` and
    ``64k`` channels after a 16-channel 3x3 stem, in ``RESNET_SPEC``'s format.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError("Wide ResNets have 6n+4 layers for n >= 1 (registered: %s); got %r."
                         % (", ".join("WRN-%d-%d" % dk for dk in WRN_CONFIGS), depth))
    check_positive_int(k, "k", "wrn")
    n = (depth - 4) // 6
    return ("basic", (n, n, n), (16, 16 * k, 32 * k, 64 * k))


def _block_class(kind, version):
    try:
        return BLOCKS[kind, version]
    except KeyError:
        raise ValueError("version must be %s; got %r."
                         % (" or ".join("%d (%s)" % kv for kv in VERSIONS.items()), version)
                         ) from None


def _stem(kind, width, in_channels):
    """The layers before the first stage: conv, BN, ReLU (and max-pool for 'imagenet').

    'imagenet': 7x7/2 convolution and 3x3/2 max-pool (maps 4x smaller);
    'small': 3x3/1 convolution (same size); 'halve': 3x3/2 convolution (2x smaller);
    'deep': a 3x3/1 convolution of a third of the width (at least 1 channel), BN
    and ReLU at full size first, then the 'halve' stem.
    'imagenet_deep': ResNet-C's stem (He et al. 2019, figure 2(b)): three 3x3
    convolutions of ``width / 2``, ``width / 2`` and ``width`` channels, the
    first with stride 2, each followed by BN and ReLU, then the 3x3/2 max-pool
    (the same maps as 'imagenet').
    'conv': a 3x3/1 convolution alone, for pre-activation networks whose first
    block normalises its input (Wide ResNets, Zagoruyko & Komodakis 2016).
    """
    if kind not in STEMS:
        raise ValueError("stem must be %s; got %r."
                         % (" or ".join("%r (%s)" % kv for kv in STEMS.items()), kind))
    if kind == "conv":
        return [conv3x3(width, 1, in_channels, stem=True, prefix="conv_")]
    layers = []
    if kind == "imagenet_deep":
        half = max(1, width // 2)
        for i, stride in enumerate((2, 1)):
            layers += [conv3x3(half, stride, in_channels, stem=i == 0, prefix="conv%d_" % i),
                       batch_norm(half, prefix="bn%d_" % i),
                       nn.Activation("relu", prefix="relu%d_" % i)]
            in_channels = half
    if kind == "deep":
        narrow = max(1, width // 3)
        layers += [conv3x3(narrow, 1, in_channels, stem=True, prefix="conv0_"),
                   batch_norm(narrow, prefix="bn0_"), nn.Activation("relu", prefix="relu0_")]
        in_channels = narrow
    if kind == "imagenet":
        conv = StemConv2D(width, kernel_size=7, strides=2, padding=3, use_bias=False,
                          in_channels=in_channels, prefix="conv_")
    else:
        stride = 1 if kind in ("small", "imagenet_deep") else 2
        conv = conv3x3(width, stride, in_channels, stem=not layers, prefix="conv_")
    layers += [conv, batch_norm(width, prefix="bn_"), nn.Activation("relu", prefix="relu_")]
    if kind in ("imagenet", "imagenet_deep"):
        layers.append(nn.MaxPool2D(pool_size=3, strides=2, padding=1, prefix="pool_"))
    return layers


ResNetArch = collections.namedtuple(
    "ResNetArch", "block layers channels stem shortcut stride_in_1x1 groups base_width "
    "se_reduction avg_down")
"""The arguments of ``ResNet`` that decide its layers and how they connect (``ResNet.arch``).

What is left out (``num_classes``, ``in_channels``, ``zero_init_last_bn``,
``dropout``) changes sizes, initial values or training only.
"""


class ResNet(_Block):
    """A ResNet of the papers: stem, stages of residual blocks, pool, classifier.

    He et al. 2016, section 3.4 and table 1 (ImageNet), section 4.2 (CIFAR);
    with pre-activation blocks, He et al. 2016b, whose appendix adds a final
    BN and ReLU after the last block.

    Parameters
    ----------
    block : type
        ``BasicBlockV1``, ``BottleneckV1``, ``BasicBlockV2`` or ``BottleneckV2``;
        its ``version`` decides whether the final BN + ReLU is added.
    layers : sequence of int
        Blocks per stage, for example ``(2, 2, 2, 2)``.
    channels : sequence of int
        Stem width, then each stage's block width (one more entry than ``layers``).
    num_classes : int, default 1000
        Size of the output layer.
    in_channels : int, default 0
        Input channels; 0 infers them at the first call.
    stem : {'imagenet', 'small', 'halve', 'deep', 'imagenet_deep', 'conv'}, default 'imagenet'
        'imagenet': 7x7/2 convolution, BN, ReLU, 3x3/2 max-pool (4x smaller
        maps); 'small': 3x3/1 convolution, BN, ReLU, for 28x28 or 32x32 images;
        'halve': 3x3/2 convolution, BN, ReLU (2x smaller maps, cheap at 28x28).
        'deep': 3x3/1 convolution of a third of the width, BN, ReLU, then the
        'halve' stem (the same maps, one full-size layer more).
        'imagenet_deep': ResNet-C's three 3x3 convolutions (``channels[0] / 2``,
        ``channels[0] / 2``, ``channels[0]``; the first /2), each with BN and
        ReLU, then the max-pool (He et al. 2019).  'conv': a 3x3/1 convolution
        alone, for pre-activation blocks (Wide ResNets).
    shortcut : {'B', 'A', 'C', None}, default 'B'
        Shortcut option of every block (see ``make_shortcut``); ``None`` builds
        the plain network of section 4.1.
    stride_in_1x1 : bool, default False
        Bottlenecks stride on their first 1x1 convolution instead of the 3x3.
        The default, stride on the 3x3, is torchvision's and is what He et al.
        2019 call ResNet-B.
    zero_init_last_bn : bool, default False
        Zero gamma in the last BN of every block (Goyal et al. 2017).
    groups : int, default 1
        Groups of the bottlenecks' 3x3 convolutions (ResNeXt's cardinality).
    base_width : int, default 64
        Bottleneck channels per group at block width 64: the inner width is
        ``int(width * base_width / 64) * groups`` (32 groups of 4: ResNeXt-32x4d;
        128 with 1 group: the wide ResNets of torchvision).
    se_reduction : int, optional
        Squeeze-and-excitation in every block with this reduction (Hu et al.
        2018 use 16); ``None``: none.
    dropout : float, default 0
        Dropout on the input of each block's last convolution (Wide ResNets).
    avg_down : bool, default False
        Projection shortcuts subsample by a 2x2 average pool before their 1x1
        convolution (ResNet-D, He et al. 2019).
    **kwargs
        ``prefix`` and ``params`` of ``HybridBlock``.

    Attributes
    ----------
    features : mxnet.gluon.nn.HybridSequential
        conv, bn, relu, [pool], stage1 ... stageK, [post_bn, post_relu], gap.
    output : mxnet.gluon.nn.Dense
        The classifier.
    arch : ResNetArch
        The architecture it was built with, as data (``gluon_resnet.pretrained``
        derives torchvision's key names from it).

    Shapes
    ------
    Input ``(N, C, H, W)``; output ``(N, num_classes)``.  Stage ``k`` outputs
    ``channels[k] * block.expansion`` channels; the first keeps the size of the
    stem's output (H/4 for 'imagenet' and 'imagenet_deep', H for 'small' and
    'conv', H/2 for 'halve' and 'deep'), each later one halves it.
    """

    def __init__(self, block, layers, channels, num_classes=1000, in_channels=0,
                 stem="imagenet", shortcut="B", stride_in_1x1=False, zero_init_last_bn=False,
                 groups=1, base_width=64, se_reduction=None, dropout=0.0, avg_down=False,
                 **kwargs):
        super().__init__(**kwargs)
        if not (isinstance(block, type) and issubclass(block, _ResidualUnit)):
            raise ValueError("ResNet: block must be one of %s; got %r."
                             % (", ".join(b.__name__ for b in BLOCKS.values()), block))
        layers, channels = list(layers), list(channels)
        if not layers or len(channels) != len(layers) + 1:
            raise ValueError("ResNet: channels needs one entry for the stem plus one per stage "
                             "(%d stages), got %d." % (len(layers), len(channels)))
        for i, n in enumerate(layers):
            check_positive_int(n, "layers[%d]" % i, "ResNet")
        check_positive_int(num_classes, "num_classes", "ResNet")
        if in_channels != 0 and not (isinstance(in_channels, int) and in_channels > 0):
            raise ValueError("ResNet: in_channels must be a positive integer, or 0 to infer it "
                             "at the first call; got %r." % (in_channels,))
        check_shortcut(shortcut, "ResNet")
        self.arch = ResNetArch(block, tuple(layers), tuple(channels), stem, shortcut,
                               stride_in_1x1, groups, base_width, se_reduction, avg_down)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            self.features.add(*_stem(stem, channels[0], in_channels))
            width = channels[0]
            for i, (n, c) in enumerate(zip(layers, channels[1:])):
                self.features.add(make_stage(
                    block, width, c, n, stride=1 if i == 0 else 2, prefix="stage%d_" % (i + 1),
                    shortcut=shortcut, stride_in_1x1=stride_in_1x1,
                    zero_init_last_bn=zero_init_last_bn, groups=groups, base_width=base_width,
                    se_reduction=se_reduction, dropout=dropout, avg_down=avg_down))
                width = c * block.expansion
            if block.version == 2:
                self.features.add(batch_norm(width, prefix="post_bn_"),
                                  nn.Activation("relu", prefix="post_relu_"))
            self.features.add(nn.GlobalAvgPool2D(prefix="gap_"))
            self.output = nn.Dense(num_classes, in_units=width, prefix="dense_")

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def _family_net(spec, version, default_prefix, **kwargs):
    kind, layers, channels = spec
    kwargs.setdefault("prefix", default_prefix)
    return ResNet(_block_class(kind, version), layers, channels, **kwargs)


def _imagenet_spec(depth):
    if depth not in RESNET_SPEC:
        raise ValueError("ResNet depth must be one of %s; got %r. For CIFAR networks of 6n+2 "
                         "layers use cifar_resnet(depth)."
                         % (", ".join(map(str, sorted(RESNET_SPEC))), depth))
    return RESNET_SPEC[depth]


def get_resnet(depth, version=1, num_classes=1000, shortcut="B", **kwargs):
    """The ImageNet ResNet of ``depth`` layers (He et al. 2016, table 1).

    Parameters
    ----------
    depth : int
        18, 34, 50, 101 or 152 (``RESNET_SPEC``).
    version : int, default 1
        1: post-activation blocks; 2: pre-activation blocks (He et al. 2016b).
    num_classes : int, default 1000
        Size of the output layer.
    shortcut : {'B', 'A', 'C', None}, default 'B'
        Shortcut option; ``None`` gives the plain network.
    **kwargs
        ``in_channels``, ``stem``, ``stride_in_1x1``, ``zero_init_last_bn``,
        ``groups``, ``base_width``, ``se_reduction``, ``dropout``, ``avg_down``,
        ``prefix``: see ``ResNet``.  ``RESNET_VARIANTS`` names the combinations
        of the later papers (ResNeXt, wide, ResNet-C/D, SE-ResNet).

    Returns
    -------
    ResNet
        Uninitialised; ``(N, C, H, W) -> (N, num_classes)``.
    """
    return _family_net(_imagenet_spec(depth), version, "resnet%s_v%s_" % (depth, version),
                       num_classes=num_classes, shortcut=shortcut, **kwargs)


def plain_resnet(depth, version=1, num_classes=1000, shortcut=None, **kwargs):
    """The plain network of ``depth`` layers (He et al. 2016, section 4.1, figure 4 left).

    ``get_resnet(depth)`` without shortcuts, for the degradation experiment.
    ``shortcut`` exists only to reject a shortcut with a clear message.
    """
    if shortcut is not None:
        raise ValueError("plain networks have no shortcut, got shortcut=%r; use "
                         "get_resnet(%r, shortcut=%r) for the residual network."
                         % (shortcut, depth, shortcut))
    return _family_net(_imagenet_spec(depth), version, "plain%s_" % (depth,),
                       num_classes=num_classes, shortcut=None, **kwargs)


def cifar_resnet(depth, version=1, num_classes=10, shortcut="A", stem="small", **kwargs):
    """The CIFAR-10 ResNet of ``depth = 6n + 2`` layers (He et al. 2016, section 4.2).

    Parameters
    ----------
    depth : int
        20, 32, 44, 56, 110, or any other ``6n + 2``.
    version : int, default 1
        1: post-activation blocks; 2: pre-activation blocks (He et al. 2016b).
    num_classes : int, default 10
        Size of the output layer.
    shortcut : {'A', 'B', 'C', None}, default 'A'
        The paper uses option A (no parameters) on CIFAR.
    stem : {'small', 'imagenet'}, default 'small'
        A 3x3/1 convolution with 16 channels.
    **kwargs
        ``in_channels``, ``zero_init_last_bn``, ``prefix``: see ``ResNet``.

    Returns
    -------
    ResNet
        Uninitialised; ``(N, C, 32, 32) -> (N, num_classes)``, stages of
        ``(N, 16, 32, 32)``, ``(N, 32, 16, 16)`` and ``(N, 64, 8, 8)``.
    """
    return _family_net(cifar_spec(depth), version, "cifar_resnet%s_v%s_" % (depth, version),
                       num_classes=num_classes, shortcut=shortcut, stem=stem, **kwargs)


def cifar_plain(depth, num_classes=10, shortcut=None, **kwargs):
    """The plain CIFAR network of ``depth = 6n + 2`` layers (He et al. 2016, figure 6 left).

    ``cifar_resnet(depth)`` without shortcuts; ``shortcut`` exists only to
    reject one with a clear message.
    """
    if shortcut is not None:
        raise ValueError("plain networks have no shortcut, got shortcut=%r; use "
                         "cifar_resnet(%r, shortcut=%r) for the residual network."
                         % (shortcut, depth, shortcut))
    return _family_net(cifar_spec(depth), 1, "cifar_plain%s_" % (depth,),
                       num_classes=num_classes, shortcut=None, stem="small", **kwargs)


def wrn(depth, k, num_classes=10, dropout=0.0, **kwargs):
    """The CIFAR Wide ResNet WRN-``depth``-``k`` (Zagoruyko & Komodakis 2016).

    A 3x3 convolution to 16 channels (no BN: the first block normalises), then
    three stages of ``(depth - 4) / 6`` pre-activation basic blocks with
    ``16k``, ``32k`` and ``64k`` channels (the last two start with stride 2),
    a 1x1 projection where the shape changes (option B), the final BN and
    ReLU of pre-activation networks, global average pool and classifier.
    With ``dropout`` > 0 each block drops out the input of its second
    convolution (the paper's section 2.4 uses 0.3 on CIFAR).

    Parameters
    ----------
    depth : int
        ``6n + 4``: 16, 28, 40, ...
    k : int
        Widening factor (1 gives a pre-activation ResNet with option B).
    num_classes : int, default 10
        Size of the output layer.
    dropout : float, default 0
        Dropout probability between the two convolutions of every block.
    **kwargs
        ``in_channels``, ``shortcut``, ``stem``, ``zero_init_last_bn``,
        ``prefix``: see ``ResNet``.

    Returns
    -------
    ResNet
        Uninitialised; ``(N, C, 32, 32) -> (N, num_classes)``, stages of
        ``(N, 16k, 32, 32)``, ``(N, 32k, 16, 16)`` and ``(N, 64k, 8, 8)``.
    """
    kwargs.setdefault("stem", "conv")
    kwargs.setdefault("shortcut", "B")
    return _family_net(wrn_spec(depth, k), 2, "wrn%s_%s_" % (depth, k),
                       num_classes=num_classes, dropout=dropout, **kwargs)


def resnet_variant(name, num_classes=1000, **kwargs):
    """The named variant ``name`` of ``RESNET_VARIANTS`` (ResNeXt, wide, ResNet-C/D, SE).

    Parameters
    ----------
    name : str
        A key of ``RESNET_VARIANTS``, for example ``"resnext50_32x4d"``.
    num_classes : int, default 1000
        Size of the output layer.
    **kwargs
        Options of ``ResNet``; they override the variant's own (for example
        ``in_channels=1`` or ``se_reduction=8``).

    Returns
    -------
    ResNet
        Uninitialised; ``(N, C, H, W) -> (N, num_classes)``.
    """
    if name not in RESNET_VARIANTS:
        raise ValueError("unknown ResNet variant %r; the variants are: %s"
                         % (name, ", ".join(sorted(RESNET_VARIANTS))))
    depth, options, _ = RESNET_VARIANTS[name]
    kwargs = dict(options, **kwargs)
    kwargs.setdefault("prefix", name + "_")
    return get_resnet(depth, 1, num_classes=num_classes, **kwargs)


def _describe_options(options):
    """The variant options of ``RESNET_VARIANTS`` as a short phrase."""
    parts = []
    groups, base_width = options.get("groups", 1), options.get("base_width", 64)
    if groups > 1:
        parts.append("3x3 convolutions in %d groups (%d channels each in stage 1)"
                     % (groups, base_width))
    elif base_width != 64:
        parts.append("bottlenecks %g times as wide" % (base_width / 64))
    if options.get("avg_down"):
        parts.append("2x2 avg-pool before each strided projection")
    if options.get("se_reduction"):
        parts.append("squeeze-excite with reduction %d" % options["se_reduction"])
    return ", ".join(parts)


def _describe(title, spec, stem, shortcut, version=None):
    kind, layers, _ = spec
    text = "%s: %s blocks %s, %s, " % (title, kind, "-".join(map(str, layers)), STEMS[stem])
    text += "no shortcut (plain)" if shortcut is None else "shortcut %s" % shortcut
    return text if version is None else "%s, v%d (%s)" % (text, version, VERSIONS[version])


def _compact_resnet(stem, prefix, num_classes, kwargs, width=48):
    """The compact networks: one basic block per stage, ``width``/2x/4x channels, ``stem``."""
    kwargs.setdefault("prefix", prefix)
    return ResNet(BasicBlockV1, (1, 1, 1), (width, width, 2 * width, 4 * width),
                  num_classes=num_classes, stem=stem, **kwargs)


@register_model("compact_resnet8",
                "a compact ResNet-8 for 28x28 images: 3x3/2 stem, basic blocks 1-1-1 of "
                "48/96/192 channels, shortcut B")
def compact_resnet8(num_classes=10, **kwargs):
    """A small, fast ResNet for 28x28 Fashion-MNIST (``compact_resnet8_w32`` is the ``fast``
    recipe's network, ``compact_resnet9`` the ``best`` recipe's).

    A 3x3/2 stem (48 channels) and three stages of one basic block each
    (48, 96, 192 channels) at 14x14, 7x7 and 4x4: 8 weighted layers, 0.69 M
    parameters and 23 M multiply-accumulates per 28x28 image.  48 channels
    because MXNet 1.9.1's oneDNN ran them fastest in fp32 (benchmarks/RESULTS.md).

    Returns
    -------
    ResNet
        ``(N, C, 28, 28) -> (N, num_classes)``.
    """
    return _compact_resnet("halve", "compact_resnet8_", num_classes, kwargs)


@register_model("compact_resnet8_w32",
                "compact_resnet8 at 32/64/128 channels; the fast recipe's network")
def compact_resnet8_w32(num_classes=10, **kwargs):
    """``compact_resnet8`` with 32/64/128 channels (the ``fast`` recipe's network).

    In bf16 on AMX, MXNet 1.9.1's oneDNN runs 32- and 64-channel layers in
    AMX kernels, but 48-channel ones in AVX-512 kernels whose output layout
    sends BN's backward pass to oneDNN's reference code, so this width is the
    one that pays in bf16 (speeds in benchmarks/RESULTS.md).  0.31 M
    parameters, 10.2 M multiply-accumulates per 28x28 image.

    Returns
    -------
    ResNet
        ``(N, C, 28, 28) -> (N, num_classes)``.
    """
    return _compact_resnet("halve", "compact_resnet8_w32_", num_classes, kwargs, width=32)


@register_model("compact_resnet9",
                "compact_resnet8 with a deep stem: 3x3/1 at 16 channels, then 3x3/2 at 48; "
                "the best recipe's network")
def compact_resnet9(num_classes=10, **kwargs):
    """``compact_resnet8`` with one more convolution, at full size (the ``best`` recipe's network).

    The stem first maps the image to 16 channels with a 3x3/1 convolution
    (BN, ReLU) at 28x28, so that the 3x3/2 convolution after it sees
    features rather than pixels; the rest is ``compact_resnet8``.  9
    weighted layers, 0.70 M parameters, 24 M multiply-accumulates per 28x28
    image (speed against ``compact_resnet8``: benchmarks/RESULTS.md).

    Returns
    -------
    ResNet
        ``(N, C, 28, 28) -> (N, num_classes)``.
    """
    return _compact_resnet("deep", "compact_resnet9_", num_classes, kwargs)


def _register_family():
    for depth, spec in sorted(RESNET_SPEC.items()):
        for version in VERSIONS:
            register_model("resnet%d_v%d" % (depth, version),
                           _describe("ResNet-%d" % depth, spec, "imagenet", "B", version),
                           input_channels=3)(functools.partial(get_resnet, depth, version))
    for depth in (18, 34):
        register_model("plain%d" % depth,
                       _describe("plain-%d" % depth, RESNET_SPEC[depth], "imagenet", None, 1),
                       input_channels=3)(functools.partial(plain_resnet, depth))
    for depth in CIFAR_PLAIN_DEPTHS:  # the plain nets of the CIFAR paper's figure 6
        register_model("cifar_plain%d" % depth,
                       _describe("CIFAR plain-%d" % depth, cifar_spec(depth), "small", None, 1),
                       input_channels=3)(functools.partial(cifar_plain, depth))
    for depth in CIFAR_DEPTHS:
        for version in VERSIONS:
            register_model("cifar_resnet%d_v%d" % (depth, version),
                           _describe("CIFAR ResNet-%d" % depth, cifar_spec(depth), "small", "A",
                                     version),
                           input_channels=3)(functools.partial(cifar_resnet, depth, version))
    for name, (depth, options, title) in sorted(RESNET_VARIANTS.items()):
        text = _describe(title, RESNET_SPEC[depth], options.get("stem", "imagenet"), "B")
        extra = _describe_options(options)
        register_model(name, text + (", " + extra if extra else ""),
                       input_channels=3)(functools.partial(resnet_variant, name))
    for depth, k in WRN_CONFIGS:
        spec = wrn_spec(depth, k)
        register_model("wrn%d_%d" % (depth, k),
                       _describe("WRN-%d-%d (Zagoruyko & Komodakis 2016)" % (depth, k), spec,
                                 "conv", "B", 2) + ", widths %s" % "/".join(map(str, spec[2][1:])),
                       input_channels=3)(functools.partial(wrn, depth, k))


_register_family()
