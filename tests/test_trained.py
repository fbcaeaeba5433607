"""load_trained: the one way eval, predict and export get a trained network back.

The checkpoints here are written from networks made in the test (no
training): what comes back must compute what went in.
"""

import ast
import os

import numpy as np
import pytest
from PIL import Image

import mxnet as mx

import gluon_resnet
from gluon_resnet.checkpoint import CheckpointError, save_checkpoint
from gluon_resnet.config import TrainConfig
from gluon_resnet.data import TEXT_LABELS, DataDescription
from gluon_resnet.models import get_model
from gluon_resnet.predict import predict_files
from gluon_resnet import trained as trained_module
from gluon_resnet.trained import data_description, load_trained


def _network(model, shape, classes=10, seed=0, statistics=True):
    """``model`` after one pass over ``shape``, with random BN statistics unless told not to."""
    net = get_model(model, num_classes=classes)
    net.initialize(mx.init.Uniform(0.1))
    net(mx.nd.zeros(shape))
    if not statistics:
        return net
    rng = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith(("running_mean", "running_var")):
            low = 0.5 if name.endswith("running_var") else -0.1
            p.set_data(mx.nd.array(rng.uniform(low, low + 1, p.shape)))
    return net


def _checkpoint(path, net, config, data=None):
    meta = {"epoch": 1, "batch": 0, "history": [], "config": config.to_dict()}
    if data is not None:
        meta["data"] = data
    save_checkpoint(str(path), net, None, meta)
    return str(path)


@pytest.mark.slow
def test_a_fine_tuned_colour_run_comes_back_with_three_input_channels(tmp_path):
    # Fine-tuned from torchvision weights on RGB images of three classes; the weight file
    # is gone, and the checkpoint holds every weight, the RGB stem included.
    net = _network("resnet18_v1", (1, 3, 32, 32), classes=3, statistics=False)
    config = TrainConfig(model="resnet18_v1", pretrained=str(tmp_path / "gone.pth"),
                         data=str(tmp_path / "images"), num_classes=3, resize=32)
    classes = ["cat", "dog", "owl"]
    ckpt = _checkpoint(tmp_path / "run.ckpt", net, config, {
        "classes": classes, "channels": 3, "size": [32, 32], "mean": None, "std": None})
    rng = np.random.RandomState(1)
    pixels = rng.randint(0, 256, size=(2, 32, 32, 3)).astype(np.uint8)
    files = []
    for i, image in enumerate(pixels):
        files.append(str(tmp_path / ("%d.png" % i)))
        Image.fromarray(image).save(files[-1])
    x = mx.nd.array(pixels.transpose(0, 3, 1, 2) / np.float32(255))
    expected = mx.nd.softmax(net(x)).asnumpy()

    results = predict_files(ckpt, files, top_k=3)  # through load_trained
    for result, p in zip(results, expected):
        assert [t["class"] for t in result["top"]] == [classes[j] for j in np.argsort(-p)]
        np.testing.assert_allclose([t["probability"] for t in result["top"]], np.sort(p)[::-1],
                                   rtol=1e-4, atol=1e-6)


def test_a_params_file_comes_back_as_the_network_it_names(tmp_path):
    net = _network("compact_resnet8", (1, 1, 28, 28))
    path = str(tmp_path / "net.params")
    net.save_parameters(path)
    x = mx.nd.array(np.random.RandomState(2).uniform(size=(3, 1, 28, 28)))
    trained = load_trained(path, model="compact_resnet8")
    assert trained.checkpoint is None and trained.config == TrainConfig(model="compact_resnet8")
    assert trained.data == DataDescription(tuple(TEXT_LABELS), 1, (96, 96))  # resize 96
    np.testing.assert_allclose(trained.net(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(CheckpointError, match="net.params does not hold the parameters of "
                                              "compact_resnet8_w32"):
        load_trained(path, model="compact_resnet8_w32")


def test_load_trained_builds_the_network_once(tmp_path, monkeypatch):
    net = _network("compact_resnet8", (1, 1, 28, 28))
    ckpt = _checkpoint(tmp_path / "run.ckpt", net, TrainConfig(model="compact_resnet8",
                                                               resize=None))
    built = []

    def counting_get_model(name, **kwargs):
        built.append(name)
        return get_model(name, **kwargs)

    monkeypatch.setattr(trained_module, "get_model", counting_get_model)
    x = mx.nd.array(np.random.RandomState(3).uniform(size=(2, 1, 28, 28)))
    for precision in ("fp32", "auto"):  # auto: an inference decision builds no copy
        loaded = load_trained(ckpt, precision=precision)
        np.testing.assert_allclose(loaded.net(x).asnumpy(), net(x).asnumpy(), rtol=1e-5,
                                   atol=1e-6)
    assert built == ["compact_resnet8"] * 2


def test_a_checkpoint_of_another_network_or_without_a_config_is_refused(tmp_path):
    net = _network("compact_resnet8", (1, 1, 28, 28))
    ckpt = _checkpoint(tmp_path / "run.ckpt", net, TrainConfig(model="compact_resnet8"))
    with pytest.raises(ValueError, match=r"run\.ckpt is a checkpoint of compact_resnet8, not of "
                                         r"chapter_resnet18"):
        load_trained(ckpt, model="chapter_resnet18")
    bare = str(tmp_path / "bare.ckpt")
    save_checkpoint(bare, net, None, {"epoch": 1})
    with pytest.raises(CheckpointError, match=r"bare\.ckpt holds no training configuration"):
        load_trained(bare)


def test_eval_predict_and_export_get_their_network_from_load_trained():
    # What load_trained does, done again in one of them, would be a second way to load.
    builders = {"get_model", "build_network", "read_checkpoint", "load_checkpoint",
                "enable_bf16", "resolve_precision", "data_description"}
    for module in ("evaluation", "predict", "export"):
        path = os.path.join(os.path.dirname(gluon_resnet.__file__), module + ".py")
        with open(path) as f:
            tree = ast.parse(f.read())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and node.level for alias in node.names}
        reexported = {"data_description"} if module == "predict" else set()  # its __all__
        assert "load_trained" in imported and not imported & builders - reexported, module


def test_a_checkpoint_without_a_data_description_is_fashion_mnist():
    assert data_description({"config": {"resize": 96}}).to_dict() == {
        "classes": list(TEXT_LABELS), "channels": 1, "size": [96, 96], "mean": None, "std": None}
    assert data_description({"config": {"resize": None}}).size == (28, 28)
    given = {"classes": ["a", "b"], "channels": 3, "size": [8, 8], "mean": [0.5] * 3,
             "std": [0.2] * 3}
    assert data_description({"config": {}, "data": given}).to_dict() == given


@pytest.mark.parametrize("data, message", [
    ({"classes": ["a"], "channels": 1, "size": [28, 28], "mean": [0.5]}, "mean without std"),
    ({"classes": ["a"], "channels": 3, "size": [28, 28], "mean": [0.5], "std": [0.2]},
     "data mean must be 3 numbers"),
    ({"classes": ["a"], "channels": 1, "size": [28], "mean": None, "std": None},
     r"size must be \[height, width\]"),
    ({"classes": [], "channels": 1, "size": [28, 28]}, "classes must be a non-empty list"),
    ({"channels": 1, "size": [28, 28]}, "lacks classes, channels or size"),
    ({"classes": ["a"], "channels": 1, "size": [28, 28], "mean": [0.5], "std": [0]},
     "std must be positive"),
])
def test_a_bad_data_description_is_named(data, message):
    with pytest.raises(CheckpointError, match=message):
        data_description({"config": {}, "data": data})
