"""Evaluate a trained network on its test set, with figures.

A Fashion-MNIST run is evaluated on Fashion-MNIST's test set; a run on an
image folder (``config.data``) on that folder's test images, read as in
training (its resize, split and the normalisation stored in ``meta["data"]``).
"""

import os

import numpy as np

from ._mxnet import mx

from .arrays import as_legacy, in_caller_mode
from .checkpoint import checkpoint_file
from .data import get_fashion_mnist_labels, load_data_fashion_mnist, load_data_image_folder
from .plotting import close_figure, confusion_matrix, plot_confusion_matrix, plot_predictions
from .precision import describe_precision
from .trained import load_trained

__all__ = ["predict", "per_class_accuracy", "evaluate_run"]


def predict(net, data_iter, ctx=None):
    """Labels and predicted classes over ``data_iter`` as two numpy arrays.

    Predictions stay on the device until the end: one host sync in total.
    In numpy mode (``npx.set_np()``) legacy batches are viewed as ``mxnet.np``
    arrays, so the book's loaders of either edition work.
    """
    ctx = ctx or mx.cpu()
    labels, preds = [], []
    for X, y in data_iter:
        preds.append(as_legacy(net(in_caller_mode(X).as_in_context(ctx)).argmax(axis=1)))
        labels.append(as_legacy(y))
    if not preds:
        raise ValueError("predict: data_iter yielded no examples")
    return (mx.nd.concat(*labels, dim=0).asnumpy().astype(np.int64),
            mx.nd.concat(*preds, dim=0).asnumpy().astype(np.int64))


def per_class_accuracy(labels, predictions, num_classes=10):
    """Accuracy of each class (NaN for a class absent from ``labels``)."""
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            out[c] = (predictions[mask] == c).mean()
    return out


def _check_path(path, model):
    """Refuse a missing file, and a ``.params`` file (not a checkpoint) without ``model``."""
    path = checkpoint_file(path)
    if not os.path.isfile(path):
        raise ValueError("parameter file %s does not exist" % path)
    if not path.endswith(".ckpt") and not model:
        raise ValueError("a .params file does not say which network it holds: add --model NAME")


def evaluate_run(path, model=None, resize=None, data_root=None, confusion=None, samples=None,
                 limit=None, ctx=None, out=print, precision="fp32"):
    """Print test accuracy and per-class accuracy of a saved network.

    Parameters
    ----------
    path : str
        A ``checkpoint.ckpt`` written by training (or its run folder), or a
        ``.params`` file (then ``model`` names the network).
    confusion, samples : str, optional
        PNG paths for the confusion matrix and a grid of 32 test images with
        predicted and true labels.
    precision : {"fp32", "bf16", "auto", "int8"}
        ``"auto"`` (what ``gluon-resnet eval`` uses) evaluates in bf16 where
        it was measured faster for inference (``precision.resolve_precision``).
        bf16 turns on AMP for the whole process (``precision.enable_bf16``):
        every network built afterwards computes in bf16.  Either way the
        network runs with oneDNN's operator fusion (conv + BN + ReLU + add),
        which changes fp32 outputs by about 1e-7.

    Returns
    -------
    dict
        ``accuracy`` and ``per_class`` (list of 10 floats).
    """
    ctx = ctx or mx.cpu()
    _check_path(path, model)
    trained = load_trained(path, ctx, precision, model=model, notice=out,
                           size=(resize, resize) if resize else None)
    config, net, precision = trained.config, trained.net, trained.precision
    if config.data is not None:
        size, test_iter, names = _folder_test_set(config, trained.data, resize, out)
    else:
        size = resize or config.resize
        _, test_iter = load_data_fashion_mnist(256, resize=size, root=data_root or config.data_root)
        names = get_fashion_mnist_labels(range(10))
    if ctx.device_type == "cpu":
        # oneDNN fuses conv + BN + ReLU + add (about 1.3x faster in fp32, and what makes
        # bf16 inference fast).  static_shape must stay off: with it MXNet 1.9.1 fails on
        # the second call of some fused networks ("We can't generate TBlob for MKLDNN data").
        net.hybridize(backend="MKLDNN", static_alloc=True)
    else:
        net.hybridize(static_alloc=True)
    out(describe_precision(precision) + ", oneDNN operator fusion"
        * (ctx.device_type == "cpu"))
    if limit:
        test_iter = _first_examples(test_iter, limit)
    labels, preds = predict(net, test_iter, ctx)
    acc = float((labels == preds).mean())
    per_class = per_class_accuracy(labels, preds, len(names))
    out("%s on %d test images (%dx%d): test acc %.4f" % (config.model, len(labels), size or 28,
                                                        size or 28, acc))
    for name, a in zip(names, per_class):
        out("  %-12s %.4f" % (name, a))
    if confusion:
        close_figure(plot_confusion_matrix(confusion_matrix(labels, preds), names,
                                           path=confusion,
                                           title="%s: test acc %.4f" % (config.model, acc)))
        out("confusion matrix saved to %s" % confusion)
    if samples:
        X, y = next(iter(test_iter))
        X, y = X[:32], y[:32]
        p = net(in_caller_mode(X).as_in_context(ctx)).argmax(axis=1).asnumpy()
        close_figure(plot_predictions(X.asnumpy(), [names[int(i)] for i in y.asnumpy()],
                                      [names[int(i)] for i in p], path=samples))
        out("sample predictions saved to %s" % samples)
    return {"accuracy": acc, "per_class": per_class.tolist()}


def _folder_test_set(config, data, resize, out):
    """``(size, test_iter, class names)`` of a run on ``config.data``; ``data`` describes it.

    ``data`` is the run's ``DataDescription``.
    """
    if resize and resize != config.resize:
        raise ValueError("%s was trained on %s at its own size: leave out --resize"
                         % (config.model, config.data))
    stats = (data.mean, data.std) if data.mean is not None else False
    _, test_iter = load_data_image_folder(
        config.data, 256, resize=config.resize, val_fraction=config.val_fraction,
        skip_bad_images=config.skip_bad_images, normalize=stats, notice=out)
    if tuple(test_iter.classes) != data.classes:
        raise ValueError("%s now holds the classes %s, not the %s the network was trained on"
                         % (config.data, ", ".join(test_iter.classes), ", ".join(data.classes)))
    return data.size[0], test_iter, list(data.classes)


def _first_examples(data_iter, limit):
    """The first ``limit`` examples of ``data_iter`` as a list of batches."""
    batches, n = [], 0
    for X, y in data_iter:
        take = min(limit - n, X.shape[0])
        batches.append((X[:take], y[:take]))
        n += take
        if n >= limit:
            break
    return batches
