"""Helpers shared by the tests."""

import contextlib
import importlib.util
import json
import os
import struct

import numpy as np
import pytest

import mxnet as mx
from mxnet import init, npx
from mxnet.gluon import nn

from gluon_resnet.checkpoint import save_checkpoint
from gluon_resnet.config import TrainConfig
from gluon_resnet.data import TEXT_LABELS
from gluon_resnet.models import get_model


def randomize_params(net, seed=0):
    """Give every parameter (BN running statistics included) a random value.

    The values are arrays of the mode that is on (legacy, or numpy after ``npx.set_np()``).
    """
    rng = np.random.RandomState(seed)
    array = mx.np.array if mx.util.is_np_array() else mx.nd.array
    for name, p in net.collect_params().items():
        if name.endswith("running_var") or name.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, size=p.shape)
        else:
            value = rng.normal(0, 0.1, size=p.shape)
        p.set_data(array(value, dtype=p.dtype))


@contextlib.contextmanager
def numpy_mode_on():
    """Numpy mode on inside the ``with``, off again afterwards whatever happens."""
    npx.set_np()
    try:
        yield
    finally:
        npx.reset_np()


def array_of_mode(values):
    """``values`` (a numpy array) as an array of the mode that is on, of the same dtype."""
    return (mx.np.array if mx.util.is_np_array() else mx.nd.array)(values, dtype=values.dtype)


def uniform_values(shape, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, shape).astype(np.float32)


def copy_params(src, dst):
    """Copy ``src``'s parameters into ``dst`` by registration order, checking shapes."""
    sp = list(src.collect_params().values())
    dp = list(dst.collect_params().values())
    assert len(sp) == len(dp), (len(sp), len(dp))
    for a, b in zip(sp, dp):
        assert a.shape == b.shape, (a.name, a.shape, b.name, b.shape)
        b.set_data(a.data())


DATA_DIR = "/usr/share/datasets/fashion-mnist"
#: Why a test that needs Fashion-MNIST skips: the tests read Debian's files and never download.
NO_DATA = ("Debian's dataset-fashion-mnist is not installed (no %s); the tests never download "
           "it: apt-get install dataset-fashion-mnist" % DATA_DIR)
HAVE_DATA = all(os.path.isfile(os.path.join(DATA_DIR, name)) for name in (
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz"))
#: Marks a test that reads Fashion-MNIST.
needs_data = pytest.mark.skipif(not HAVE_DATA, reason=NO_DATA)


def require_data():
    """Skip the calling test or fixture, with ``NO_DATA``, when Fashion-MNIST is missing."""
    if not HAVE_DATA:
        pytest.skip(NO_DATA)


def book_net(residual_cls):
    """The chapter's network exactly as the book builds it, from a given block class."""
    def block(num_channels, num_residuals, first_block=False):
        blk = nn.Sequential()
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.add(residual_cls(num_channels, use_1x1conv=True, strides=2))
            else:
                blk.add(residual_cls(num_channels))
        return blk

    net = nn.Sequential()
    net.add(nn.Conv2D(64, kernel_size=7, strides=2, padding=3), nn.BatchNorm(),
            nn.Activation("relu"), nn.MaxPool2D(pool_size=3, strides=2, padding=1))
    net.add(block(64, 2, first_block=True), block(128, 2), block(256, 2), block(512, 2))
    net.add(nn.GlobalAvgPool2D(), nn.Dense(10))
    return net


def write_fashion_folder(root, train=300, test=100, layout="split"):
    """Write balanced subsets of Fashion-MNIST as PNG files in class folders under ``root``.

    ``layout='split'``: ``root/train/<class>/`` and ``root/test/<class>/``;
    ``'tree'``: the training subset only, in ``root/<class>/``.  Files are
    named ``<index in the IDX file, 5 digits>.png``.  Returns ``(train_idx,
    test_idx)``, the indices into the IDX arrays that were written.
    """
    import os

    from PIL import Image

    from gluon_resnet.data import TEXT_LABELS, balanced_subset, load_fashion_mnist_arrays

    train_x, train_y, test_x, test_y = load_fashion_mnist_arrays(DATA_DIR)
    written = []
    for split, x, y, n in (("train", train_x, train_y, train), ("test", test_x, test_y, test)):
        keep = balanced_subset(y, n)
        written.append(keep)
        if layout == "tree" and split == "test":
            continue
        for i in keep:
            folder = os.path.join(root, *([] if layout == "tree" else [split]), TEXT_LABELS[y[i]])
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(x[i]).save(os.path.join(folder, "%05d.png" % i))
    return tuple(written)


#: The name ``tiny_net`` is registered under while a test needs it (``registered_tiny_net``).
TINY_MODEL = "test_tiny_conv"


def tiny_net(num_classes=10):
    """About 13,600 parameters for 28x28 images: conv 3x3/2 (8 channels), BN, ReLU, dense.

    Small enough that a checkpoint of it (parameters and momentum) can be kept in the
    repository (tests/data/); BN gives it running statistics to save and restore.
    """
    net = nn.HybridSequential(prefix="tiny_")
    with net.name_scope():
        net.add(nn.Conv2D(8, 3, strides=2), nn.BatchNorm(), nn.Activation("relu"),
                nn.Dense(num_classes))
    return net


def register_tiny_net(registry):
    """Register ``tiny_net`` as ``TINY_MODEL`` in ``registry`` (a copy of models._REGISTRY)."""
    from gluon_resnet import models

    registry[TINY_MODEL] = models._Entry(tiny_net, "a tiny test network", 1)


# A tiny run: the fast recipe's network at 28x28 on 100 images, two batches an epoch; fp32,
# because bf16 AMP would switch this whole test process to bf16.
TINY = dict(model="compact_resnet8_w32", resize=None, limit=100, batch_size=50, epochs=1,
            precision="fp32")
FASHION = {"classes": list(TEXT_LABELS), "channels": 1, "size": [28, 28], "mean": None,
           "std": None}


def made_run(folder, epochs_done=1, **changes):
    """A run folder as training leaves it after ``epochs_done`` epochs, without the training:
    a fresh network's checkpoint, ``config.json`` and ``history.json``.  Returns its config."""
    config = TrainConfig(**dict(TINY, epochs=epochs_done, **changes))
    net = get_model(config.model, num_classes=config.num_classes)
    net.initialize(init.Xavier())
    net(mx.nd.zeros((1, 1, 28, 28)))
    history = [{"epoch": e, "loss": 2.0, "train_acc": 0.1, "test_acc": 0.1, "time": 1.0,
                "train_time": 1.0, "lr": config.lr} for e in range(1, epochs_done + 1)]
    os.makedirs(folder, exist_ok=True)
    save_checkpoint(os.path.join(folder, "checkpoint.ckpt"), net, None,
                    {"epoch": epochs_done, "batch": 0, "history": history, "partial": None,
                     "config": config.to_dict(), "data": FASHION})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(dict(config.to_dict(), data=FASHION), f)
    with open(os.path.join(folder, "history.json"), "w") as f:
        json.dump(history, f)
    return config


def write_safetensors(path, arrays):
    """A minimal safetensors writer: header length, JSON header, C-order little-endian data."""
    codes = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64"}
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": codes[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def load_benchmark_script(name):
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "benchmarks", name + ".py")
    spec = importlib.util.spec_from_file_location("gluon_resnet_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
