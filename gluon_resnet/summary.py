"""Print a network's layers with their output shapes and parameter counts.

The chapter prints ``layer.name, 'output shape:', X.shape`` for each top-level
layer; ``summarize`` does the same for any network of the registry, adds the
parameter counts, and explains an input that is too small for the network.
"""

import json

from ._mxnet import mx
from mxnet.gluon import nn

from .arrays import in_caller_mode

__all__ = ["top_level_layers", "summarize", "format_summary", "count_parameters",
           "count_flops", "activation_bytes", "layer_responses", "InputTooSmallError"]


class InputTooSmallError(ValueError):
    """The input is too small: some layer can no longer shrink the feature map."""


def top_level_layers(net):
    """The layers a shape table lists, as ``(label, block)`` pairs.

    A ``Sequential`` lists its children; a network with ``features`` and
    ``output`` lists the children of both; anything else is one layer.
    """
    def children(block):
        if isinstance(block, (nn.HybridSequential, nn.Sequential)):
            return list(block._children.values())
        return [block]

    if isinstance(net, (nn.HybridSequential, nn.Sequential)):
        blocks = children(net)
        parent = net
    elif hasattr(net, "features") and hasattr(net, "output"):
        blocks = children(net.features) + children(net.output)
        parent = net
    else:
        return [(net.name, net)]
    prefix = parent.prefix
    labels = []
    for b in blocks:
        name = b.name
        for p in (prefix, getattr(net, "features", parent).prefix):
            if name.startswith(p):
                name = name[len(p):]
        labels.append(name or b.name)
    return list(zip(labels, blocks))


def count_parameters(block, trainable_only=False):
    """Number of scalars in ``block``'s parameters (their shapes must be known).

    Parameters
    ----------
    block : mxnet.gluon.Block
        Initialised, or built with every input size given (``in_channels``).
    trainable_only : bool, default False
        Count only parameters with gradients (``grad_req != 'null'``), leaving
        out BN running means and variances: the convention of torchvision's
        and the papers' parameter counts.
    """
    total = 0
    for p in block.collect_params().values():
        if trainable_only and p.grad_req == "null":
            continue
        n = 1
        for d in p.shape:
            n *= d
        total += n
    return total


def _is_initialised(net):
    try:
        for p in net.collect_params().values():
            p.data()
        return True
    except RuntimeError:  # deferred or no initialisation yet
        return False


def summarize(net, input_shape=(1, 1, 224, 224), ctx=None):
    """Run ``net`` layer by layer on a random input and record each output.

    The input is an array of the mode that is on (legacy, or ``mxnet.np``
    after ``npx.set_np()``), so the table is the same in both.

    Parameters
    ----------
    net : mxnet.gluon.Block
        An initialised or uninitialised network (initialised here if needed,
        with MXNet's default initialiser).
    input_shape : tuple of int, default (1, 1, 224, 224)
        ``(N, C, H, W)`` of the input.
    ctx : mxnet.Context, optional
        Where to run; the CPU by default.

    Returns
    -------
    list of dict
        One row per top-level layer: ``name``, ``kind`` (class name),
        ``shape`` (output shape), ``params`` (trainable parameter count:
        BN running statistics are left out, as torchvision counts) and
        ``macs`` (multiply-accumulates of its convolutions and dense layers
        per image, as ``count_flops`` counts them; None when the layer is
        hybridized).

    Raises
    ------
    InputTooSmallError
        When a layer that downsamples receives a feature map already smaller
        than its stride, or a layer cannot run on its input at all.
    """
    ctx = ctx or mx.cpu()
    layers = top_level_layers(net)
    x = in_caller_mode(mx.nd.random.uniform(shape=tuple(input_shape), ctx=ctx))
    if not _is_initialised(net):
        net.initialize(ctx=ctx)
    rows = []
    for label, layer in layers:
        in_shape = x.shape
        try:
            with _counting_macs(layer) as macs:
                x = layer(x)
                x.wait_to_read()
        except mx.base.MXNetError as exc:
            raise InputTooSmallError(
                "input %s is too small or malformed for this network: layer %s (%s) "
                "cannot run on a %s feature map (%s)"
                % (tuple(input_shape), label, type(layer).__name__, tuple(in_shape),
                   str(exc).strip().splitlines()[0])
            ) from None
        rows.append({"name": label, "kind": type(layer).__name__, "shape": tuple(x.shape),
                     "params": count_parameters(layer, trainable_only=True),
                     "macs": None if macs is None else macs[0] // max(in_shape[0], 1),
                     "in_shape": tuple(in_shape)})
    _check_no_collapse(net, rows, input_shape)
    return rows


class _counting_macs:
    """``with _counting_macs(block) as macs``: ``macs[0]`` adds up the multiply-accumulates of
    the convolutions and dense layers in ``block`` while it runs (the whole batch).

    ``macs`` is None for a hybridized block, whose layers do not run one by one.
    """

    def __init__(self, block):
        self.block, self.handles, self.total = block, [], [0]

    def _conv(self, block, inputs, output):
        per_output = 1
        for d in block.weight.shape[1:]:  # (out, in / groups, kh, kw)
            per_output *= d
        self.total[0] += per_output * output.size

    def _dense(self, block, inputs, output):
        self.total[0] += block.weight.shape[1] * output.size  # (units, in_units)

    def _attach(self, block):
        if isinstance(block, nn.Conv2D):
            self.handles.append(block.register_forward_hook(self._conv))
        elif isinstance(block, nn.Dense):
            self.handles.append(block.register_forward_hook(self._dense))
        for child in block._children.values():
            self._attach(child)

    def __enter__(self):
        if _hybridized(self.block):
            return None
        self._attach(self.block)
        return self.total

    def __exit__(self, *exc_info):
        for handle in self.handles:
            handle.detach()


def _hybridized(block):
    return getattr(block, "_active", False) or any(
        _hybridized(child) for child in block._children.values())


def _check_no_collapse(net, rows, input_shape):
    """Raise if a downsampling layer got a map smaller than its stride.

    A layer's stride is read off a run at 224x224 (4-D outputs only): a layer
    that halves a 224 map but received a 1x1 map at the user's size has
    nothing left to downsample, which means the input is too small.
    """
    if len(input_shape) != 4 or min(input_shape[2:]) >= 224:
        return
    reference = summarize(net, tuple(input_shape[:2]) + (224, 224))
    for row, ref in zip(rows, reference):
        if len(ref["shape"]) != 4 or len(ref["in_shape"]) != 4:
            continue
        stride = max(ref["in_shape"][2] // max(ref["shape"][2], 1), 1)
        if stride > 1 and min(row["in_shape"][2:]) < stride and ref["shape"][2] > 1:
            raise InputTooSmallError(
                "input %dx%d is too small for this network: layer %s (%s) should shrink "
                "its input by %d but receives a %dx%d feature map. Use a larger input."
                % (input_shape[2], input_shape[3], row["name"], row["kind"], stride,
                   row["in_shape"][2], row["in_shape"][3])
            )


def format_summary(rows):
    """The rows of ``summarize`` as a text table with a total line.

    Columns: layer, output shape, trainable parameters, and MACs: the
    multiply-accumulates of the layer's convolutions and dense layers per image
    (FLOPs are about twice as many), ``-`` for a hybridized layer.
    """
    width = max([len(r["name"]) + len(r["kind"]) + 3 for r in rows] + [5])
    line = "%-*s  %-20s  %12s  %15s"
    lines = [line % (width, "layer", "output shape", "parameters", "MACs")]

    def macs(value):
        return "-" if value is None else format(value, ",")

    # Trainable parameters only, as in the tables of torchvision and the papers.
    for r in rows:
        label = "%s (%s)" % (r["name"], r["kind"])
        lines.append(line % (width, label, r["shape"], format(r["params"], ","),
                             macs(r.get("macs"))))
    counted = [r.get("macs") for r in rows]
    total = None if None in counted else sum(counted)
    lines.append(line % (width, "total", "", format(sum(r["params"] for r in rows), ","),
                         macs(total)))
    return "\n".join(lines)


def count_flops(net, input_shape=(1, 1, 224, 224), ctx=None):
    """Multiply-accumulates of one forward pass through the convolutions and dense layers.

    Batch norm, activations, pooling and additions are left out (under 1% of
    a ResNet's work), as in the papers and torchvision's tables.

    Parameters
    ----------
    net : mxnet.gluon.Block
        Not hybridized (the count hooks every layer's imperative call);
        initialised here with MXNet's default initialiser if needed.
    input_shape : tuple of int, default (1, 1, 224, 224)
        ``(1, C, H, W)``; counts are per image.
    ctx : mxnet.Context, optional

    Returns
    -------
    dict
        ``macs`` (multiply-accumulates per image) and ``flops`` (``2 * macs``:
        one multiplication and one addition each).
    """
    if getattr(net, "_active", False):
        raise ValueError("count_flops needs a network that is not hybridized: it hooks each "
                         "layer's call; count on a fresh copy or call net.hybridize(False)")
    if len(input_shape) != 4 or input_shape[0] != 1:
        raise ValueError("count_flops: input_shape must be (1, C, H, W), got %r"
                         % (tuple(input_shape),))
    ctx = ctx or mx.cpu()
    if not _is_initialised(net):
        net.initialize(ctx=ctx)
    total = [0]

    def conv_hook(block, inputs, output):
        weight = block.weight.shape  # (out, in / groups, kh, kw)
        per_output = 1
        for d in weight[1:]:
            per_output *= d
        total[0] += per_output * output.size

    def dense_hook(block, inputs, output):
        total[0] += block.weight.shape[1] * output.size

    handles = []

    def attach(block):
        if isinstance(block, nn.Conv2D):
            handles.append(block.register_forward_hook(conv_hook))
        elif isinstance(block, nn.Dense):
            handles.append(block.register_forward_hook(dense_hook))
        for child in block._children.values():
            attach(child)

    attach(net)
    try:
        net(in_caller_mode(mx.nd.zeros(tuple(input_shape), ctx=ctx))).wait_to_read()
    finally:
        for h in handles:
            h.detach()
    return {"macs": total[0], "flops": 2 * total[0]}


def _response_layers(block):
    """The BNs that normalise a 3x3 convolution's output, in the order of the forward pass."""
    if getattr(block, "version", 1) == 2 and hasattr(block, "bns"):
        raise ValueError("layer_responses: %s is a pre-activation unit, whose BN comes before "
                         "its convolution; the responses are defined for post-activation "
                         "(v1) and plain networks" % type(block).__name__)
    pairs = list(zip(block.convs, block.bns)) if hasattr(block, "convs") else []
    if not pairs:
        children = list(block._children.values())
        pairs = list(zip(children, children[1:]))
    found = [bn for conv, bn in pairs
             if isinstance(conv, nn.Conv2D) and isinstance(bn, nn.BatchNorm)
             and conv._kwargs["kernel"] == (3, 3)]
    if not hasattr(block, "convs"):
        for child in block._children.values():
            found += _response_layers(child)
    return found


def layer_responses(net, X):
    """Standard deviation of each 3x3 layer's response (He et al. 2016, figure 7).

    The response of a 3x3 convolution is its output after its BN and before
    the ReLU or the shortcut's addition.  In a residual network it is the
    residual function's contribution; the paper shows these stay smaller
    than in the plain network of the same depth.

    Parameters
    ----------
    net : mxnet.gluon.Block
        An initialised post-activation (v1) or plain network, not hybridized
        (the measurement hooks each BN's imperative call; call
        ``net.hybridize(False)`` first).
    X : NDArray
        ``(N, C, H, W)`` input batch, for example test images.  BN uses its
        running statistics (inference mode).

    Returns
    -------
    list of float
        One standard deviation per 3x3 layer, over all ``N x C x H x W``
        elements of its response, in the order of the forward pass (the stem
        first).  Its length is the network's number of 3x3 layers: 19 for the
        20-layer CIFAR networks, 55 for the 56-layer ones.
    """
    if getattr(net, "_active", False):
        raise ValueError("layer_responses needs a network that is not hybridized: it hooks "
                         "each BN's call; call net.hybridize(False) first")
    layers = _response_layers(net)
    if not layers:
        raise ValueError("layer_responses: %s has no 3x3 convolution followed by BN"
                         % type(net).__name__)
    stds = {}

    def hook(block, inputs, output):
        stds[id(block)] = float(output.asnumpy().std())

    handles = [bn.register_forward_hook(hook) for bn in layers]
    try:
        net(X).wait_to_read()
    finally:
        for h in handles:
            h.detach()
    return [stds[id(bn)] for bn in layers]


def activation_bytes(net, input_shape=(1, 1, 224, 224), value_bytes=4):
    """Bytes of the outputs of every convolution and dense layer of one forward pass.

    Training keeps each of them (or a tensor of its size: the BN or ReLU
    after it) until the backward pass, so this is a lower bound of the
    memory a training step takes; the other layers' outputs, gradients, the
    parameters and the optimizer state come on top.  Read from the symbolic
    graph (shape inference only: nothing is allocated, ``net`` need not be
    initialised).

    Parameters
    ----------
    net : mxnet.gluon.HybridBlock
    input_shape : tuple of int, default (1, 1, 224, 224)
        ``(N, C, H, W)``; the bytes are for ``N`` images.
    value_bytes : int, default 4
        Bytes per value (4 for fp32, 2 for bf16).
    """
    internals = net(mx.sym.var("data")).get_internals()
    _, shapes, _ = internals.infer_shape(data=tuple(input_shape))
    kept = {node["name"] + "_output" for node in json.loads(internals.tojson())["nodes"]
            if node["op"] in ("Convolution", "FullyConnected")}
    values = 0
    for name, shape in zip(internals.list_outputs(), shapes):
        if name in kept:
            count = 1
            for d in shape:
                count *= d
            values += count
    return values * value_bytes
