"""gluon-resnet export: ONNX (run in ONNX Runtime) and MXNet's symbol format, against MXNet.

One small run is trained once (compact_resnet8, 500 Fashion-MNIST images, one
epoch, fp32); its checkpoint is exported as it is, with a data description
that normalises, and with a configuration that says bf16.  The reference is the
checkpoint loaded into a fresh network, fed ``(pixels - mean) / std`` computed
in numpy.
"""

import json
import zipfile

import numpy as np
import pytest

import mxnet as mx

from gluon_resnet.cli import main
from gluon_resnet.config import TrainConfig
from gluon_resnet.checkpoint import read_checkpoint
from gluon_resnet.data import TEXT_LABELS, load_fashion_mnist_arrays
from gluon_resnet.experiment import run_training
from gluon_resnet.export import ONNX_OPSET
from gluon_resnet.models import get_model

from helpers import DATA_DIR, require_data

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# benchmarks/RESULTS.md records at most 2.1e-7 between ONNX Runtime's and MXNet's logits: a
# 5x margin on it.
ATOL = 1e-6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    require_data()
    out = tmp_path_factory.mktemp("export") / "run"
    run_training(TrainConfig(model="compact_resnet8", resize=None, limit=500, epochs=1,
                             batch_size=100, precision="fp32", data_root=DATA_DIR),
                 out=str(out), quiet=True, progress=False)
    return str(out / "checkpoint.ckpt")


@pytest.fixture(scope="module")
def pixels():
    """The first 16 test images as float32 (16, 1, 28, 28) in [0, 1]."""
    require_data()
    test_images = load_fashion_mnist_arrays(DATA_DIR)[2]
    return (test_images[:16, None] / np.float32(255)).astype(np.float32)


def with_meta(checkpoint, path, **changes):
    """A copy of ``checkpoint`` whose meta has ``changes`` (``config`` entries merged)."""
    with zipfile.ZipFile(checkpoint) as source:
        members = {name: source.read(name) for name in source.namelist()}
    meta = json.loads(members["meta.json"])
    meta["config"].update(changes.pop("config", {}))
    meta.update(changes)
    members["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as target:
        for name, content in members.items():
            target.writestr(name, content)
    return str(path)


def mxnet_logits(checkpoint, x, mean=None, std=None):
    """The checkpoint's network on ``x``, normalised here: the reference for every export."""
    saved = read_checkpoint(checkpoint)
    net = get_model(saved.meta["config"]["model"])
    net.initialize()
    net(mx.nd.zeros((1,) + x.shape[1:]))
    saved.load_into(net, restore_random_state=False)
    if mean is not None:
        shape = (1, -1, 1, 1)
        x = (x - np.float32(mean).reshape(shape)) / np.float32(std).reshape(shape)
    return net(mx.nd.array(x)).asnumpy()


def onnx_logits(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (given,), (taken,) = session.get_inputs(), session.get_outputs()
    assert (given.name, given.type, given.shape[1:]) == ("data", "tensor(float)", [1, 28, 28])
    assert taken.name == "logits"
    return session.run(None, {"data": x})[0]


def metadata(path):
    model = onnx.load(str(path))
    assert [(o.domain, o.version) for o in model.opset_import] == [("", ONNX_OPSET)]
    return {p.key: json.loads(p.value) for p in model.metadata_props}


@pytest.mark.slow
def test_onnx_export_runs_in_onnx_runtime_like_mxnet(checkpoint, pixels, tmp_path, capsys):
    path = tmp_path / "model.onnx"
    assert main(["export", "--params", checkpoint, "--onnx", str(path)]) == 0
    assert "wrote %s (ONNX opset 13): compact_resnet8, input (N, 1, 28x28)" % path \
        in capsys.readouterr().out
    theirs, ours = onnx_logits(path, pixels), mxnet_logits(checkpoint, pixels)
    assert theirs.shape == (16, 10)
    assert np.abs(theirs - ours).max() < ATOL
    assert (theirs.argmax(1) == ours.argmax(1)).all()
    np.testing.assert_allclose(onnx_logits(path, pixels[:3]), theirs[:3], atol=ATOL)  # any N
    assert metadata(path) == {"classes": list(TEXT_LABELS), "input_size": [28, 28],
                              "input_channels": 1, "input_layout": "NCHW", "input_range": [0, 1],
                              "normalization": None, "model": "compact_resnet8"}


@pytest.mark.slow
def test_the_runs_normalisation_is_inside_the_exported_graph(checkpoint, pixels, tmp_path):
    data = {"classes": ["c%d" % i for i in range(10)], "channels": 1, "size": [28, 28],
            "mean": [0.29], "std": [0.35]}
    normalised = with_meta(checkpoint, tmp_path / "normalised.ckpt", data=data)
    path = tmp_path / "normalised.onnx"
    assert main(["export", "--params", normalised, "--onnx", str(path)]) == 0
    theirs = onnx_logits(path, pixels)
    ours = mxnet_logits(checkpoint, pixels, mean=[0.29], std=[0.35])
    assert np.abs(theirs - ours).max() < ATOL
    assert np.abs(theirs - mxnet_logits(checkpoint, pixels)).max() > 100 * ATOL  # it matters
    meta = metadata(path)
    assert meta["classes"] == data["classes"]
    assert meta["normalization"] == {"mean": [0.29], "std": [0.35]}


@pytest.mark.slow
def test_symbol_export_of_a_bf16_run_is_fp32(checkpoint, pixels, tmp_path, capsys):
    # A bf16 run's checkpoint holds fp32 weights (AMP keeps them); the export builds the
    # network in fp32 and never turns AMP on (conftest checks that after every test).
    bf16 = with_meta(checkpoint, tmp_path / "bf16.ckpt", config={"precision": "bf16"})
    prefix = str(tmp_path / "sym" / "net")
    assert main(["export", "--params", bf16, "--symbol", prefix]) == 0
    assert "wrote %s-symbol.json and %s-0000.params" % (prefix, prefix) in capsys.readouterr().out
    with open(prefix + "-symbol.json") as f:
        assert "amp_cast" not in f.read()
    net = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
    theirs = net(mx.nd.array(pixels)).asnumpy()
    assert theirs.dtype == np.float32
    np.testing.assert_allclose(theirs, mxnet_logits(checkpoint, pixels), rtol=0, atol=ATOL)


def test_export_errors_are_one_sentence(tmp_path, capsys):
    assert main(["export", "--params", str(tmp_path / "none.ckpt"), "--onnx", "x.onnx"]) == 2
    assert "gluon-resnet export: error: checkpoint %s does not exist" % (tmp_path / "none.ckpt") \
        in capsys.readouterr().err
    assert main(["export", "--params", str(tmp_path / "none.ckpt")]) == 2
    assert "--onnx OUT.onnx and/or --symbol PREFIX" in capsys.readouterr().err
