"""torchvision's ResNet weights into the registered networks: build, then load.

``resnet18_v1`` ... ``resnet152_v1``, ``resnext50_32x4d``, ``resnext101_32x8d``,
``wide_resnet50_2`` and ``wide_resnet101_2`` have torchvision's layout
(bias-free convolutions, BN after each, stride on the 3x3 convolution,
projection shortcuts only where the shape changes), so torchvision's
ImageNet weights fit them tensor for tensor::

    net, report = load_pretrained("resnet18_v1", "resnet18.pth", num_classes=10)
    print(report)                        # what was loaded, left out and converted
    net = get_model("resnet18_v1", pretrained="resnet18.pth")   # the same, without the report

The files are read by ``gluon_resnet.weights`` (numpy only, no pickle code
run).  This module sits above ``models``: it takes the architecture from the
spec table (``SUPPORTED_MODELS``) and from the network's ``arch`` (the
``ResNet`` arguments it was built with), never from its layers.

Key names
---------
torchvision's ``conv1``, ``bn1``, ``layer<k>.<i>.conv<j>`` / ``bn<j>``,
``layer<k>.<i>.downsample.0`` (convolution) / ``.1`` (BN) and ``fc`` are our
``features.0``, ``features.1``, ``features.<3+k>.<i>.conv<j>`` / ``bn<j>``,
``...shortcut.0`` / ``.1`` and ``output`` (the names ``save_parameters``
writes); BN's ``weight`` and ``bias`` are our ``gamma`` and ``beta``.
``num_batches_tracked`` (int64 counters used only in training) is ignored.
"""

import collections
import collections.abc
import dataclasses
import os
import re
import warnings

import numpy as np

from ._mxnet import mx

from .arrays import in_caller_mode
from .blocks import BasicBlockV1, BottleneckV1
from .models import RESNET_SPEC, RESNET_VARIANTS, ResNet, get_model as build_model
from .weights import WeightFileError, read_state_dict  # also importable from here, as before

__all__ = ["SUPPORTED_MODELS", "WeightFileError", "WeightMismatchError", "LoadReport",
           "read_state_dict", "torchvision_names", "torchvision_key_map",
           "load_torchvision_weights", "load_pretrained", "get_model"]

#: Options of ``RESNET_VARIANTS`` that keep torchvision's layout: grouped or wider 3x3
#: convolutions in the bottleneck (torchvision's ResNeXt and wide ResNets, by its names).
_LAYOUT_OPTIONS = {"groups", "base_width"}

SUPPORTED_MODELS = tuple(["resnet%d_v1" % depth for depth in sorted(RESNET_SPEC)]
                         + [name for name, (_, options, _) in RESNET_VARIANTS.items()
                            if set(options) <= _LAYOUT_OPTIONS])
"""The registered networks whose parameters have torchvision's layout."""


class WeightMismatchError(ValueError):
    """The weights do not fit the network: keys missing or unexpected, or shapes differ."""


# ---------------------------------------------------------------------------
# torchvision's names -> our parameters, from the network's architecture.
# ---------------------------------------------------------------------------

_LAYER_PARAMS = {"conv": (("weight", "weight"),),
                 "bn": (("weight", "gamma"), ("bias", "beta"),
                        ("running_mean", "running_mean"),
                        ("running_var", "running_var")),
                 "dense": (("weight", "weight"), ("bias", "bias"))}
_FAMILY_ERROR = ("torchvision's ResNet weights fit only the networks of its layout (%s: 7x7 stem, "
                 "post-activation blocks, shortcut 'B', stride on the 3x3 convolution); %s")


def _torchvision_arch(net):
    """``net.arch`` if ``net`` has torchvision's layout; else a ``ValueError`` saying why not."""
    arch = net.arch if isinstance(net, ResNet) else None
    if arch is None:
        problem = "got a %s." % type(net).__name__
    elif arch.stem != "imagenet":
        problem = "this network has another stem (%r)." % arch.stem
    elif arch.block not in (BasicBlockV1, BottleneckV1):
        problem = "this network's blocks are %s." % arch.block.__name__
    elif arch.shortcut != "B":
        problem = "this network has other shortcuts (%r)." % (arch.shortcut,)
    elif arch.stride_in_1x1:
        problem = "this network strides on the 1x1 convolution (stride_in_1x1)."
    elif arch.avg_down:
        problem = "this network average-pools before its projections (avg_down)."
    elif arch.se_reduction:
        problem = "this network has squeeze-and-excitation (se_reduction)."
    else:
        return arch
    raise ValueError(_FAMILY_ERROR % (", ".join(SUPPORTED_MODELS), problem))


def torchvision_names(arch):
    """torchvision's state_dict keys for ``arch``, each with our parameter's structural name.

    Parameters
    ----------
    arch : models.ResNetArch
        A torchvision-layout architecture (``net.arch``).

    Returns
    -------
    collections.OrderedDict of str -> str
        In torchvision's order, e.g. ``'layer2.0.downsample.1.weight'`` ->
        ``'features.5.0.shortcut.1.gamma'``: stage ``k`` is ``features[3 + k]``
        after the stem's convolution, BN, ReLU and max-pool; a stage's first
        block has a ``downsample`` when its stride or width changes, as in
        torchvision's ``_make_layer``.
    """
    convs = 3 if arch.block is BottleneckV1 else 2
    layers = [("conv1", "features.0", "conv"), ("bn1", "features.1", "bn")]
    width = arch.channels[0]
    for k, (count, channels) in enumerate(zip(arch.layers, arch.channels[1:]), 1):
        out = channels * arch.block.expansion
        for i in range(count):
            theirs, ours = "layer%d.%d" % (k, i), "features.%d.%d" % (3 + k, i)
            for j in range(1, convs + 1):
                layers += [("%s.conv%d" % (theirs, j), "%s.conv%d" % (ours, j), "conv"),
                           ("%s.bn%d" % (theirs, j), "%s.bn%d" % (ours, j), "bn")]
            if i == 0 and (k > 1 or out != width):
                layers += [(theirs + ".downsample.0", ours + ".shortcut.0", "conv"),
                           (theirs + ".downsample.1", ours + ".shortcut.1", "bn")]
        width = out
    layers.append(("fc", "output", "dense"))
    return collections.OrderedDict(
        ("%s.%s" % (theirs, their_param), "%s.%s" % (ours, our_param))
        for theirs, ours, kind in layers for their_param, our_param in _LAYER_PARAMS[kind])


def torchvision_key_map(net):
    """torchvision's state_dict keys of ``net``, each with the parameter it fills.

    Parameters
    ----------
    net : ResNet
        A network of ``SUPPORTED_MODELS`` (any ``num_classes`` and input channels).

    Returns
    -------
    collections.OrderedDict of str -> mxnet.gluon.Parameter
        In torchvision's order, for example ``'conv1.weight'`` -> the stem
        convolution's ``(64, C, 7, 7)`` weight, ``'layer2.0.downsample.1.weight'``
        -> the gamma of stage 2's first shortcut BN, ``'fc.bias'`` -> the
        ``(num_classes,)`` bias of ``net.output``.

    Raises
    ------
    ValueError
        ``net`` does not have torchvision's layout.
    """
    params = net._collect_params_with_prefix()  # the names save_parameters writes
    return collections.OrderedDict((theirs, params[ours]) for theirs, ours
                                   in torchvision_names(_torchvision_arch(net)).items())


def _arch_name(kind, counts, groups=1, base_width=64):
    """``'resnet50_v1'`` for ('bottleneck', (3, 4, 6, 3)); a description if no depth matches.

    ``groups`` and ``base_width`` of the bottlenecks' 3x3 convolution give
    torchvision's other names: ``resnext50_32x4d`` (32 groups of width 4),
    ``wide_resnet50_2`` (base width 128).
    """
    for depth, (spec_kind, spec_counts, _) in RESNET_SPEC.items():
        if (spec_kind, tuple(spec_counts)) == (kind, tuple(counts)):
            if groups > 1:
                return "resnext%d_%dx%dd" % (depth, groups, base_width)
            if base_width != 64 and base_width % 64 == 0:
                return "wide_resnet%d_%d" % (depth, base_width // 64)
            if base_width == 64:
                return "resnet%d_v1" % depth
    return "a ResNet of %s blocks %s%s" % (
        kind, "-".join(map(str, counts)),
        "" if (groups, base_width) == (1, 64) else " (groups %d, base width %d)"
        % (groups, base_width))


def _file_arch(state):
    """The architecture a torchvision state_dict describes.

    Depth from its ``layer<k>.<i>.conv<j>`` names; for bottlenecks, groups
    and base width from the shapes of the first block's convolutions (a
    ResNeXt's 3x3 weight is ``(width, width / groups, 3, 3)``).
    """
    blocks, bottleneck = {}, False
    for key in state:
        match = re.match(r"layer(\d+)\.(\d+)\.conv(\d+)\.weight$", key)
        if match:
            stage, index, conv = map(int, match.groups())
            blocks[stage] = max(blocks.get(stage, 0), index + 1)
            bottleneck |= conv == 3
    if not blocks:
        return None
    counts = tuple(blocks.get(k, 0) for k in range(1, max(blocks) + 1))
    groups, base_width = 1, 64
    conv1, conv2 = state.get("layer1.0.conv1.weight"), state.get("layer1.0.conv2.weight")
    if bottleneck and conv1 is not None and conv2 is not None \
            and len(np.shape(conv2)) == 4 and np.shape(conv2)[1]:
        width = np.shape(conv1)[0]  # stage 1: 64 * base_width / 64 * groups
        groups = max(1, width // np.shape(conv2)[1])
        base_width = max(1, width // groups)
    return _arch_name("bottleneck" if bottleneck else "basic", counts, groups, base_width)


# ---------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What ``load_torchvision_weights`` did.

    Attributes
    ----------
    source : str
        The file read (or ``'<state_dict>'``).
    network : str
        The architecture loaded into, e.g. ``'resnet18_v1'``.
    loaded : int
        Tensors copied into the network.
    values : int
        Numbers copied (the parameter count, BN statistics included).
    skipped : tuple of str
        Keys of the file left out on purpose (the classifier when skipped).
    ignored : tuple of str
        Keys with no counterpart that carry no weights (``num_batches_tracked``).
    notices : tuple of str
        Anything converted on the way (the stem summed to one input channel).
    """

    source: str
    network: str
    loaded: int
    values: int
    skipped: tuple = ()
    ignored: tuple = ()
    notices: tuple = ()

    def __str__(self):
        lines = ["loaded %d tensors (%s values) from %s into %s"
                 % (self.loaded, format(self.values, ","), self.source, self.network)]
        if self.skipped:
            lines.append("left out: %s" % ", ".join(self.skipped))
        if self.ignored:
            lines.append("ignored %d num_batches_tracked counters" % len(self.ignored))
        lines += ["notice: %s" % notice for notice in self.notices]
        return "\n".join(lines)


def _short_list(keys, limit=6):
    keys = list(keys)
    more = " and %d more" % (len(keys) - limit) if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _stem_for(weight, target_channels, key):
    """Fit the file's stem weight ``(64, c, 7, 7)`` to ``target_channels`` input channels."""
    have = weight.shape[1]
    if target_channels in (0, have):
        return weight, None
    if target_channels == 1:
        notice = ("%s: the file's %d-channel filters were summed over the input channels for "
                  "the 1-channel network (as timm does), so a grey image x gives the response "
                  "the RGB image (x, x, x) gives." % (key, have))
        return weight.sum(axis=1, keepdims=True), notice
    raise WeightMismatchError(
        "%s has %d input channels in the file and %d in the network; only a 1-channel "
        "network can be fitted (by summing the filters)." % (key, have, target_channels))


def load_torchvision_weights(net, path, *, skip_classifier=False, in_channels=None):
    """Load torchvision ResNet weights (``.pth`` or ``.safetensors``) into ``net``.

    Nothing is loaded unless everything fits: keys and shapes are checked
    first.  Parameters that are not initialised yet, or whose input channels
    are still deferred, are initialised from the file, on the context they
    were (or, with no ``initialize`` call yet, the CPU).

    Parameters
    ----------
    net : ResNet
        A network of ``SUPPORTED_MODELS`` from ``get_model``; the depth must
        match the file's.
    path : str, os.PathLike or mapping
        A weight file for ``read_state_dict``, or its result.
    skip_classifier : bool, default False
        Leave ``fc.weight`` and ``fc.bias`` out (fine-tuning with a new output
        layer of any size); ``net.output`` keeps its own values.
    in_channels : int, optional
        Input channels of the network, for a network built with
        ``in_channels=0`` whose stem is not shaped yet: 1 sums the stem's RGB
        filters (shape ``(64, 3, 7, 7) -> (64, 1, 7, 7)``), 3 or None keeps
        them.  When the network knows its input channels they must agree.

    Returns
    -------
    LoadReport
        Counts, keys left out and ignored, and notices; notices are also
        issued as ``UserWarning``.

    Raises
    ------
    WeightMismatchError
        Keys missing or unexpected (the message names them and the depth the
        file is for) or a shape that differs (naming the key and both shapes).
    WeightFileError
        The file cannot be read safely (see ``read_state_dict``).
    ValueError
        ``net`` is not a torchvision-layout ResNet (checked before the file is read).
    """
    _torchvision_arch(net)
    if isinstance(path, collections.abc.Mapping):
        state, source = collections.OrderedDict(path), "<state_dict>"
    else:
        state, source = read_state_dict(path), os.fspath(path)
    report = _load(net, state, source, skip_classifier, in_channels)
    for notice in report.notices:
        warnings.warn(notice, UserWarning, stacklevel=2)
    return report


def _load(net, state, source, skip_classifier, in_channels):
    """``load_torchvision_weights`` on a state_dict already read; issues no warnings."""
    arch = _torchvision_arch(net)
    kind = "bottleneck" if arch.block is BottleneckV1 else "basic"
    network = _arch_name(kind, arch.layers, arch.groups, arch.base_width)
    key_map = torchvision_key_map(net)
    classifier = {"fc.weight", "fc.bias"}
    skipped = tuple(k for k in key_map if k in classifier) if skip_classifier else ()
    wanted = [k for k in key_map if k not in skipped]
    ignored = tuple(k for k in state if k.endswith("num_batches_tracked") and k not in key_map)
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in key_map and k not in ignored
                  and not (skip_classifier and k in classifier)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("%d keys of %s are missing from the file (%s)"
                         % (len(missing), network, _short_list(missing)))
        if unexpected:
            parts.append("%d keys of the file have no place in it (%s)"
                         % (len(unexpected), _short_list(unexpected)))
        file_arch = _file_arch(state)
        hint = ""
        if file_arch and file_arch != network:
            hint = "  The file holds weights for %s; build that network instead." % file_arch
        raise WeightMismatchError("%s does not fit %s: %s.%s"
                                  % (source, network, "; ".join(parts), hint))

    target_channels = in_channels
    stem_shape = _shape(key_map["conv1.weight"])
    if stem_shape and stem_shape[1]:
        if in_channels not in (None, stem_shape[1]):
            raise ValueError("in_channels=%r, but the network's stem takes %d channels."
                             % (in_channels, stem_shape[1]))
        target_channels = stem_shape[1]
    notices, arrays, mismatched = [], {}, []
    for key in wanted:
        array = np.asarray(state[key])
        if key == "conv1.weight" and array.ndim == 4 and target_channels is not None:
            array, notice = _stem_for(array, target_channels, key)
            if notice:
                notices.append(notice)
        param = key_map[key]
        expected = _shape(param)
        if len(expected) != array.ndim or any(e not in (0, a)
                                              for e, a in zip(expected, array.shape)):
            mismatched.append("%s: file %s, network %s"
                              % (key, tuple(array.shape), _shape_text(expected)))
        arrays[key] = array
    if mismatched:
        hint = ""
        if any(m.startswith("fc.") for m in mismatched):
            hint = "  For a new output layer, pass skip_classifier=True."
        raise WeightMismatchError("%s does not fit %s: %d shapes differ (%s).%s"
                                  % (source, network, len(mismatched),
                                     "; ".join(mismatched[:6]), hint))

    values = 0
    for key, array in arrays.items():
        param = key_map[key]
        data = in_caller_mode(mx.nd.array(array, dtype=param.dtype or np.float32))
        # Block.load_parameters' own path: fills deferred shapes, keeps the context.
        param._load_init(data, None)
        values += array.size
    return LoadReport(source, network, len(arrays), values, skipped, ignored, tuple(notices))


def _shape(param):
    """``param``'s shape, 0 where it is not known yet (numpy mode writes -1 there)."""
    return tuple(max(d, 0) for d in param.shape or ())


def _shape_text(shape):
    """``(64, ?, 7, 7)`` for a shape whose input channels are still unknown."""
    dims = ["?" if d == 0 else str(d) for d in shape]
    return "(%s)" % (dims[0] + "," if len(dims) == 1 else ", ".join(dims))



def load_pretrained(name, path, *, skip_classifier=None, ctx=None, init=None, **kwargs):
    """Build the registered network ``name`` and load torchvision weights into it.

    As torchvision's ``_resnet(...)``: build, then load.  The network is
    initialised first (so a skipped classifier gets fresh values), then
    loaded with ``load_torchvision_weights``; if any shape is still deferred
    afterwards, one forward pass on zeros settles it.

    Parameters
    ----------
    name : str
        One of ``SUPPORTED_MODELS``, of the file's depth.
    path : str or os.PathLike
        A ``.pth`` or ``.safetensors`` file of torchvision's network of that name.
    skip_classifier : bool, optional
        Leave out ``fc``.  By default it is left out exactly when the file's
        classifier has another number of classes than the network
        (fine-tuning), with a notice.
    ctx : mxnet.Context or list, optional
        Where to initialise; default the CPU.
    init : mxnet.init.Initializer, optional
        For what the file does not fill (a skipped classifier); default
        MXNet's (uniform in [-0.07, 0.07]).
    **kwargs
        Passed to the model's factory: ``num_classes``, and ``in_channels=1``
        to sum the stem's RGB filters (with a notice).

    Returns
    -------
    (ResNet, LoadReport)
        The network, initialised with the file's weights (``(N, C, H, W) ->
        (N, num_classes)``), and what was loaded.  The report's notices
        (the classifier left out, the stem's filters summed) say what the
        arguments asked for, so they are not issued as warnings: ``print(report)``
        shows them.

    Raises
    ------
    WeightMismatchError, WeightFileError, ValueError
        See ``load_torchvision_weights``; ``ValueError`` also for a ``name``
        outside ``SUPPORTED_MODELS``, before the file is read.
    TypeError
        ``name`` is a network, not a name (``load_torchvision_weights`` takes one).
    """
    if not isinstance(name, str):
        raise TypeError("load_pretrained builds the network from its registered name, got a %s; "
                        "for a network already built, use load_torchvision_weights(net, path)."
                        % type(name).__name__)
    if name not in SUPPORTED_MODELS:
        raise ValueError("pretrained weights in torchvision's layout fit only %s; got %r."
                         % (", ".join(SUPPORTED_MODELS), name))
    net = build_model(name, **kwargs)
    _torchvision_arch(net)  # options such as stride_in_1x1=True: refused before reading
    net.initialize(init or mx.init.Uniform(), ctx=ctx)
    state = read_state_dict(path)
    notices = []
    if skip_classifier is None:
        theirs = state.get("fc.weight")
        ours = net.output.weight.shape
        skip_classifier = theirs is not None and theirs.shape[0] != ours[0]
        if skip_classifier:
            notices.append("fc left out: the file's classifier has %d classes, the network %d; "
                           "net.output keeps its fresh initialisation."
                           % (theirs.shape[0], ours[0]))
    report = _load(net, state, os.fspath(path), skip_classifier, None)
    report = dataclasses.replace(report, notices=tuple(notices) + report.notices)
    if any(0 in (_shape(p) or (0,)) for p in net.collect_params().values()):
        channels = _shape(net.features[0].weight)[1] or 3
        net(in_caller_mode(mx.nd.zeros((1, channels, 32, 32),
                                       ctx=net.output.weight.list_ctx()[0])))
    return net, report


def get_model(name, pretrained=None, **kwargs):
    """Build the registered model ``name``, with torchvision's weights if ``pretrained`` is given.

    Parameters
    ----------
    name : str
        One of ``models.list_models()``.
    pretrained : str or os.PathLike, optional
        A weight file of torchvision's network of the same name: a
        ``torch.save``-d state_dict (``.pth``, PyTorch >= 1.6) or a
        ``.safetensors`` file; only ``SUPPORTED_MODELS`` accept it.  It is
        read without PyTorch and without running pickle code.  With
        ``num_classes`` other than the file's the classifier is left out and
        freshly initialised (fine-tuning); with ``in_channels=1`` the stem's
        RGB filters are summed.  Keys or shapes that do not fit raise
        ``WeightMismatchError`` naming them.  ``load_pretrained`` does the
        same and also returns the ``LoadReport``.
    **kwargs
        Passed to the model's factory (for example ``num_classes=10``).

    Returns
    -------
    mxnet.gluon.HybridBlock
        An uninitialised network (``models.get_model``), or with
        ``pretrained`` one initialised from the file.
    """
    if pretrained is None:
        return build_model(name, **kwargs)
    return load_pretrained(name, pretrained, **kwargs)[0]
