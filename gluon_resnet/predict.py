"""Classify image files with a trained checkpoint: what ``gluon-resnet predict`` does.

The checkpoint says how its network saw images (``meta["data"]``, written by
training: class names, channels, input size, mean and std); each file is read
as the training data was (Pillow, converted to that many channels), resized
to that size with the loader's operator and normalised in the loader, so a
Fashion-MNIST image written out as PNG gets the values it had in training.
Checkpoints written before ``meta["data"]`` existed are Fashion-MNIST runs:
their ten class names, one channel, ``resize`` (or 28) pixels, no normalisation.
"""

import json
import os
import warnings

import numpy as np

from ._mxnet import mx

from .data import IMAGE_EXTENSIONS, FashionMNISTLoader, image_files
from .data.images import BadImages, decode_into_memory, probe_images, thread_pool
from .precision import describe_precision
from .trained import data_description, load_trained
from . import validate

__all__ = ["predict_files", "data_description", "collect_image_files", "format_predictions"]


def collect_image_files(paths):
    """The image files named by ``paths``: files as given, folders searched recursively.

    Raises ``FileNotFoundError`` for a path that does not exist and
    ``ValueError`` for a file without an image extension or a folder without images.
    """
    files = []
    for path in paths:
        if os.path.isdir(path):
            found, _ = image_files(path)
            if not found:
                raise ValueError("folder %s holds no image files (%s)"
                                 % (path, ", ".join(IMAGE_EXTENSIONS)))
            files += found
        elif os.path.isfile(path):
            if not path.lower().endswith(IMAGE_EXTENSIONS):
                raise ValueError("%s is not an image file (%s)"
                                 % (path, ", ".join(IMAGE_EXTENSIONS)))
            files.append(path)
        else:
            raise FileNotFoundError("%s does not exist" % path)
    if not files:
        raise ValueError("no image files given")
    return files


def _conversion_notice(headers, channels, size):
    """One line saying how many images were converted to grey or colour and resized, or None."""
    kind = "grey" if channels == 1 else "colour"
    converted = sum(1 for _, colour in headers if colour != (channels == 3))
    resized = sum(1 for shape, _ in headers if tuple(shape) != tuple(size))
    parts = []
    if converted:
        parts.append("converted %d of %d images to %s" % (converted, len(headers), kind))
    if resized:
        parts.append("resized %d of %d images to %dx%d" % (resized, len(headers), size[0], size[1]))
    if not parts:
        return None
    return "note: %s, as the network was trained on %s %dx%d images" % (
        " and ".join(parts), kind, size[0], size[1])


def predict_files(checkpoint, paths, top_k=1, ctx=None, batch_size=256, notice=None,
                  precision="auto", skip_bad_images=False):
    """The ``top_k`` classes of each image file, with their probabilities.

    Parameters
    ----------
    checkpoint : str
        A ``checkpoint.ckpt`` written by training (or its run folder).
    paths : list of str
        Image files and folders (searched recursively for PNG, JPEG, BMP).
    top_k : int, default 1
        How many classes per image, most probable first (at most all classes).
    notice : callable, optional
        Gets one line when images had to be converted (colour to grey or
        grey to colour) or resized to what the network was trained on;
        by default it is issued as a ``UserWarning``.  Also gets the
        precision line (``precision.describe_precision``) when it computes in bf16
        or ``auto`` chose by a measurement.
    precision : {"auto", "fp32", "bf16", "int8"}
        ``"auto"`` uses the inference decision cached for this network
        (``precision.resolve_precision``; fp32 when none is), or the run's
        int8 network where ``load_trained`` takes it.  bf16 turns on AMP for
        the whole process; int8 is the network ``gluon-resnet quantize`` made.
    skip_bad_images : bool, default False
        Leave out the files that cannot be decoded, naming them in one notice,
        instead of refusing them all (``ImageFolderError`` naming each).

    Returns
    -------
    list of dict
        One per file, in order: ``{"path": str, "top": [{"class": name,
        "probability": p}, ...]}``.
    """
    validate.positive_int(top_k, "top_k", "predict_files")
    ctx = ctx or mx.cpu()
    trained = load_trained(checkpoint, ctx, precision, notice=notice, batch_size=batch_size)
    data = trained.data
    classes, size = data.classes, data.size
    def say(line):
        if notice is None:
            warnings.warn(line, UserWarning, stacklevel=3)
        else:
            notice(line)

    files, bad = collect_image_files(paths), BadImages(skip_bad_images)
    with thread_pool() as pool:
        probed = probe_images(files, pool, bad)
        files = [files[i] for i, _, _ in probed]
        images, good = decode_into_memory(files, size, data.channels, True, pool, bad)
    bad.report(say)  # every file that cannot be decoded, refused or skipped at once
    if not good:
        raise ValueError("none of the %d image files given could be decoded" % len(bad.paths))
    files, headers = [files[i] for i in good], [probed[i][1:] for i in good]
    line = _conversion_notice(headers, data.channels, size)
    if line is not None:
        say(line)
    loader = FashionMNISTLoader(images, np.zeros(len(files), np.int64), batch_size,
                                mean=data.mean, std=data.std, classes=classes, ctx=ctx)
    if notice is not None and trained.precision.news:  # plain fp32 goes without saying
        notice(describe_precision(trained.precision))
    net = trained.net
    net.hybridize(static_alloc=True)
    probs = np.concatenate([mx.nd.softmax(net(X), axis=1).asnumpy() for X, _ in loader])
    k = min(top_k, len(classes))
    return [{"path": path, "top": [{"class": classes[j], "probability": float(p[j])}
                                   for j in np.argsort(-p, kind="stable")[:k]]}
            for path, p in zip(files, probs)]


def format_predictions(results, as_json=False):
    """Lines ``path<TAB>class probability[<TAB>class probability ...]``, or one JSON document."""
    if as_json:
        return json.dumps({"predictions": results}, indent=1)
    return "\n".join("\t".join([r["path"]] + ["%s %.4f" % (t["class"], t["probability"])
                                              for t in r["top"]]) for r in results)
