"""int8 inference: quantize a trained run with oneDNN, check it, keep it in the run folder.

``gluon-resnet quantize --params RUN [--calib-images N] [--max-drop 0.5]``
(``quantize_run``) makes ``RUN/int8.zip`` (``gluon_resnet.int8``), which
``eval``, ``predict`` and ``load_trained`` use with ``--precision int8``.

How
---
MXNet 1.9.1's ``mxnet.contrib.quantization.quantize_net_v2`` with oneDNN's
``MKLDNN_QUANTIZE`` graph pass: each convolution is fused with its
BatchNorm, its ReLU and the residual addition that follows it, then computes
in int8 with int32 accumulation; pooling, ReLU and the classifier follow in
int8 where oneDNN has the operator.  Three choices matter:

- **Calibration** (``CALIB_MODE = "naive"``): the range of every quantized
  layer's output is the minimum and maximum it reached on the calibration
  images, stored in the graph.  ``quantize_net_v2``'s default is ``"none"``
  (ranges computed at run time from each batch, although its docstring says
  ``entropy``), so the mode is always given.  ``"entropy"`` (thresholds by KL
  divergence) needs scipy, which gluon_resnet does not depend on.
- **Calibration images**: a class-balanced subset of the run's own training
  set (``limit=N`` of the run's loader, no shuffling or augmentation, the
  run's normalisation), ``DEFAULT_CALIB_IMAGES`` by default; fewer than the
  classes is refused.
- **Signed inputs**: ``quantized_dtype="auto"`` quantizes a layer's input to
  uint8 where the calibration saw no negative value (after a ReLU) and to
  int8 elsewhere (the normalised image, the residual sums).  The convolution
  that reads the image stays in fp32 (``keep_stem_fp32``): with one input
  channel it is a small share of the work, and it sees the image's full range.
- **Weight scales** (``GRANULARITY = "tensor-wise"``): one per layer; one per
  output channel (``"channel-wise"``) is available for comparisons.

The int8 network is then evaluated against the run's fp32 network (both
fused by oneDNN) on the test set: both accuracies and the share of images on
which their top-1 classes agree.  A network that loses more than
``max_drop`` accuracy points is not kept (``Int8Error`` saying what was kept
in fp32 and what to try); one that passes is written with a record::

    {"model", "weights_sha256" (the checkpoint's parameters), "calibration_mode",
     "calibration_images", "quantized_dtype", "excluded_layers", "test_images",
     "fp32_accuracy", "int8_accuracy", "agreement", "drop_points", "max_drop",
     "mxnet"}

Networks oneDNN cannot quantize are refused by name (``REFUSED``).
"""

import json
import warnings

import numpy as np

from ._mxnet import mx
from mxnet.contrib import quantization

from .checkpoint import checkpoint_file
from .data import load_data_fashion_mnist, load_data_image_folder
from .int8 import INT8_NAME, Int8Error, int8_file, refuse_numpy_mode, write_int8
from .trained import load_trained

__all__ = ["quantize_run", "quantize_network", "first_convolution", "evaluate_pair",
           "add_quantize_parser", "CALIB_MODE", "DEFAULT_CALIB_IMAGES", "DEFAULT_MAX_DROP",
           "REFUSED"]

#: How the ranges of the int8 layers are found (see the module's docstring).
CALIB_MODE = "naive"
#: Weight scales: one per output channel or one per layer (see the module's docstring).
GRANULARITY = "tensor-wise"
#: Calibration images by default (class-balanced, from the training set).
DEFAULT_CALIB_IMAGES = 500
#: A kept int8 network loses at most this many accuracy points against fp32.
DEFAULT_MAX_DROP = 0.5
#: Registered networks that are not quantized, with the reason.
REFUSED = {}
_CALIB_BATCH = 64


def first_convolution(symbol):
    """The name of the first ``Convolution`` node of ``symbol`` (the one that reads the image)."""
    for node in json.loads(symbol.tojson())["nodes"]:
        if node["op"] == "Convolution":
            return node["name"]
    return None


def quantize_network(net, calib_iter, calib_images, keep_stem_fp32=True,
                     calib_mode=CALIB_MODE, granularity=GRANULARITY):
    """``(int8 SymbolBlock, names of the layers kept in fp32)`` of the fp32 ``net``.

    Parameters
    ----------
    net : mxnet.gluon.HybridBlock
        The trained network, ``(N, C, H, W) -> (N, classes)``, weights loaded.
        It is hybridized (without a backend) and exported on the way.
    calib_iter : iterable of (X, y)
        Calibration batches: ``X`` ``(B, C, H, W)`` as the network takes them,
        ``y`` their labels (unused: MXNet's calibration reads (data, label) pairs).
    calib_images : int
        How many images of ``calib_iter`` calibrate.
    keep_stem_fp32 : bool
        Leave the convolution that reads the image in fp32.
    calib_mode : {"naive", "entropy", "none"}
        ``"none"``: no calibration (ranges found at run time; for comparisons).
    granularity : {"channel-wise", "tensor-wise"}
        One weight scale per output channel, or one per layer.
    """
    net.hybridize()
    excluded = []
    if keep_stem_fp32:
        stem = first_convolution(net(mx.sym.var("data")))
        excluded = [stem] if stem else []
    with warnings.catch_warnings():  # "Cannot decide type": the input's comes with it
        warnings.filterwarnings("ignore", "Cannot decide type", UserWarning)
        qnet = quantization.quantize_net_v2(
            net, quantized_dtype="auto", quantize_mode="full", quantize_granularity=granularity,
            exclude_layers=list(excluded),
            calib_data=calib_iter, calib_mode=calib_mode, num_calib_examples=calib_images,
            ctx=mx.cpu())
    return qnet, excluded


def evaluate_pair(fp32_net, int8_net, test_iter):
    """``(labels, fp32 top-1, int8 top-1)`` over ``test_iter``, three int64 arrays."""
    labels, first, second = [], [], []
    for X, y in test_iter:
        first.append(fp32_net(X).argmax(axis=1).asnumpy())
        second.append(int8_net(X).argmax(axis=1).asnumpy())
        labels.append(y.asnumpy())
    return tuple(np.concatenate(a).astype(np.int64) for a in (labels, first, second))


def _data(config, data, calib_images, test_images, data_root):
    """``(calibration batches, test batches)`` of the run, read as training read them."""
    if config.data is not None:
        stats = (data.mean, data.std) if data.mean is not None else False
        calib, test = load_data_image_folder(
            config.data, _CALIB_BATCH, resize=config.resize, limit=calib_images, shuffle=False,
            val_fraction=config.val_fraction, skip_bad_images=config.skip_bad_images,
            normalize=stats, notice=lambda line: None)
        if tuple(test.classes) != data.classes:
            raise Int8Error("%s now holds the classes %s, not the %s the network was trained on"
                            % (config.data, ", ".join(test.classes), ", ".join(data.classes)))
    else:
        calib, test = load_data_fashion_mnist(
            _CALIB_BATCH, resize=config.resize, root=data_root or config.data_root,
            limit=calib_images, test_limit=10000, shuffle=False)  # all, as eval reads them
    if test_images:
        test = _first(test, test_images)
    return calib, test


def _first(batches, count):
    out, n = [], 0
    for X, y in batches:
        out.append((X[:count - n], y[:count - n]))
        n += out[-1][0].shape[0]
        if n >= count:
            break
    return out


def quantize_run(path, calib_images=DEFAULT_CALIB_IMAGES, max_drop=DEFAULT_MAX_DROP,
                 test_images=None, data_root=None, out=print, keep_stem_fp32=True,
                 calib_mode=CALIB_MODE, granularity=GRANULARITY):
    """What ``gluon-resnet quantize`` does: make, check and keep the run's int8 network.

    Parameters
    ----------
    path : str
        A run folder or its ``checkpoint.ckpt``.
    calib_images : int
        Calibration images from the training set (class-balanced); at least
        the number of classes.
    max_drop : float
        Accuracy points (percent) the int8 network may lose against fp32.
    test_images : int, optional
        Compare on the first this many test images (default: all), as
        ``gluon-resnet eval --limit`` does.
    out : callable
        Gets the printed lines.

    Returns
    -------
    dict
        The record written into ``int8.zip``.

    Raises
    ------
    Int8Error
        Numpy mode; a network in ``REFUSED``; too few calibration images; an
        int8 network that loses more than ``max_drop`` points (nothing is written).
    CheckpointError
        ``path`` holds no checkpoint, or not a readable one.
    """
    refuse_numpy_mode("gluon-resnet quantize")
    ckpt = checkpoint_file(path)
    trained = load_trained(ckpt, mx.cpu(), "fp32")
    config, data, saved = trained.config, trained.data, trained.checkpoint
    if config.model in REFUSED:
        raise Int8Error("%s cannot be quantized: %s" % (config.model, REFUSED[config.model]))
    classes = len(data.classes)
    if calib_images < classes:
        raise Int8Error("--calib-images %d is fewer than the run's %d classes: calibration "
                        "needs every class; give at least %d" % (calib_images, classes, classes))
    calib, test = _data(config, data, calib_images, test_images, data_root)
    qnet, excluded = quantize_network(trained.net, calib, calib_images, keep_stem_fp32,
                                      calib_mode, granularity)
    qnet.hybridize(static_alloc=True)
    fp32 = trained.net
    fp32.hybridize(backend="MKLDNN", static_alloc=True)
    labels, first, second = evaluate_pair(fp32, qnet, test)
    fp32_acc, int8_acc = float((first == labels).mean()), float((second == labels).mean())
    agreement = float((first == second).mean())
    drop = round(100 * (fp32_acc - int8_acc), 4)
    out("%s on %d test images: fp32 test acc %.4f, int8 test acc %.4f (%+.2f points), top-1 "
        "agreement %.4f" % (config.model, len(labels), fp32_acc, int8_acc, -drop, agreement))
    kept = "%s (the convolution that reads the image)" % excluded[0] if excluded else "none"
    if drop > max_drop:
        raise Int8Error(
            "the int8 network loses %.2f accuracy points, more than --max-drop %g, so it is not "
            "kept (layers kept in fp32: %s); try more calibration images (--calib-images %d), "
            "or a larger --max-drop to keep it anyway" % (drop, max_drop, kept,
                                                         max(4 * calib_images, 2000)))
    record = {"model": config.model, "weights_sha256": saved.weights_digest(),
              "calibration_mode": calib_mode, "calibration_images": calib_images,
              "calibration_set": "class-balanced subset of the training set",
              "quantized_dtype": "auto", "granularity": granularity,
              "excluded_layers": excluded,
              "test_images": int(len(labels)), "fp32_accuracy": fp32_acc,
              "int8_accuracy": int8_acc, "agreement": agreement, "drop_points": drop,
              "max_drop": max_drop, "mxnet": mx.__version__}
    target = int8_file(ckpt)
    write_int8(target, qnet, record)
    out("wrote %s (int8; %s calibration on %d training images; kept in fp32: %s)"
        % (target, calib_mode, calib_images, kept))
    return record


def add_quantize_parser(sub, count, points):
    """The ``quantize`` sub-command of ``gluon-resnet`` (``count``, ``points``: argument types)."""
    p = sub.add_parser(
        "quantize", help="make a run's int8 network (oneDNN), check it against fp32 and keep it",
        description="Calibrate on a class-balanced subset of the run's training images, "
        "quantize with oneDNN (convolution, BN, ReLU and the residual addition fused, in "
        "int8), compare with the run's fp32 network on the test set and write %s into the "
        "run folder; then eval and predict take --precision int8." % INT8_NAME,
        epilog="example: gluon-resnet quantize --params runs/fast && gluon-resnet predict "
        "--params runs/fast --precision int8 images/", allow_abbrev=False)
    p.add_argument("--params", required=True, metavar="RUN", help="a run folder (or its "
                   "checkpoint.ckpt)")
    p.add_argument("--calib-images", type=count, default=DEFAULT_CALIB_IMAGES, metavar="N",
                   help="calibration images from the training set, class-balanced (default "
                   "%d)" % DEFAULT_CALIB_IMAGES)
    p.add_argument("--max-drop", type=points, default=DEFAULT_MAX_DROP, metavar="POINTS",
                   help="keep the int8 network only if it loses at most this many accuracy "
                   "points against fp32 (default %g)" % DEFAULT_MAX_DROP)
    p.add_argument("--test-images", type=count, metavar="N", help="compare on the first N test "
                   "images (default: all)")
    p.add_argument("--data-root", help="folder with the four Fashion-MNIST IDX files")
    p.set_defaults(func=_cmd_quantize)


def _cmd_quantize(args):
    quantize_run(args.params, args.calib_images, args.max_drop, args.test_images, args.data_root)
    return 0
