"""bf16 training: agreement with fp32, and the fallback where bf16 is missing.

``amp.init`` changes MXNet for the whole process, so every bf16 network runs
in a subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gluon_resnet.precision import bf16_available, resolve_precision

from helpers import DATA_DIR

# Softmax outputs of the same network and input in bf16 and fp32 differ by at
# most this much (bf16 keeps 8 bits of mantissa: about 2-3 decimal digits).
BF16_PROB_TOLERANCE = 0.05

FORWARD = textwrap.dedent("""
    import sys, numpy as np, mxnet as mx
    from gluon_resnet.precision import enable_bf16
    if sys.argv[1] == "bf16":
        enable_bf16()
    from gluon_resnet import chapter_resnet18, load_data_fashion_mnist
    net = chapter_resnet18()
    net.initialize()
    X, _ = next(iter(load_data_fashion_mnist(64, limit=640)[1]))
    net(X)
    net.load_parameters(sys.argv[2])
    net.hybridize(static_alloc=True, static_shape=True)
    out = net(X)
    print("dtype", out.dtype.__name__ if hasattr(out.dtype, "__name__") else out.dtype)
    np.save(sys.argv[3], mx.nd.softmax(out.astype("float32")).asnumpy())
""")


def _run(args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=300)


@pytest.mark.skipif(not bf16_available(), reason="this CPU has no AVX512-BF16")
@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason="Fashion-MNIST is not installed")
def test_bf16_and_fp32_outputs_agree(tmp_path):
    import mxnet as mx
    from gluon_resnet import chapter_resnet18

    mx.random.seed(1)
    net = chapter_resnet18()
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 1, 28, 28)))
    params = str(tmp_path / "net.params")
    net.save_parameters(params)
    probs = {}
    for precision in ("fp32", "bf16"):
        out = str(tmp_path / (precision + ".npy"))
        done = _run(["-c", FORWARD, precision, params, out])
        assert done.returncode == 0, done.stderr
        assert ("bfloat16" in done.stdout) == (precision == "bf16"), done.stdout
        probs[precision] = np.load(out)
    diff = np.abs(probs["bf16"] - probs["fp32"]).max()
    assert 0 < diff < BF16_PROB_TOLERANCE, diff
    assert (probs["bf16"].argmax(1) == probs["fp32"].argmax(1)).mean() >= 0.9


def _train(tmp_path, env):
    out = str(tmp_path / "run")
    done = _run(["-m", "gluon_resnet", "train", "--precision", "bf16", "--no-resize", "--limit",
                 "300", "--batch-size", "100", "--epochs", "1", "--out", out, "--no-progress"], env)
    assert done.returncode == 0, done.stderr
    return done, json.load(open(os.path.join(out, "config.json")))


@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason="Fashion-MNIST is not installed")
def test_bf16_falls_back_to_fp32_with_one_notice(tmp_path):
    done, config = _train(tmp_path, {"GLUON_RESNET_DISABLE_BF16": "1"})
    assert config["precision_used"] == "fp32"
    notices = [l for l in done.stderr.splitlines() if "bf16 is not available" in l]
    assert len(notices) == 1 and "fp32" in notices[0]


@pytest.mark.skipif(not bf16_available(), reason="this CPU has no AVX512-BF16")
@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason="Fashion-MNIST is not installed")
def test_bf16_training_runs(tmp_path):
    done, config = _train(tmp_path, {})
    assert config["precision_used"] == "bf16"
    assert "bf16 is not available" not in done.stderr
    assert "epoch 1" in done.stdout


def test_resolve_precision(monkeypatch):
    import mxnet as mx

    assert resolve_precision("fp32", [mx.cpu()]) == "fp32"
    monkeypatch.setenv("GLUON_RESNET_DISABLE_BF16", "1")
    notes = []
    assert resolve_precision("bf16", [mx.cpu()], notice=notes.append) == "fp32"
    assert resolve_precision("auto", [mx.cpu()], notice=notes.append) == "fp32"
    assert len(notes) == 1  # only an explicit request gets a notice
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", [mx.cpu()])
