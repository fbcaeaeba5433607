"""bf16 training: agreement with fp32, and the fallback where bf16 is missing.

``amp.init`` changes MXNet for the whole process, so every bf16 network runs
in a subprocess.  bf16 runs on AMX (Intel since Sapphire Rapids) or on AVX512-BF16
(AMD Zen 4, Intel Cooper Lake): every bf16 test runs on either and carries the kind of
kernels it met in its name (``[AMX]``, ``[AVX512-BF16]``); on a CPU with neither they skip
with one reason.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gluon_resnet._cpu import cpu_flags

from gluon_resnet.models import get_model, list_models
from gluon_resnet.precision import bf16_kernels, resolve_precision

from helpers import needs_data

#: The kernels bf16 runs on here, and in the subprocesses this file starts.
KERNELS = bf16_kernels()
NO_BF16 = "this CPU has neither AMX-BF16 nor AVX512-BF16: bf16 falls back to fp32"


@pytest.fixture(params=[KERNELS])
def kernels(request):
    """The kernel kind bf16 meets on this CPU (the test's label), or a skip without bf16."""
    if request.param == "fp32 fallback":
        pytest.skip(NO_BF16)
    return request.param


# The hybridized chapter network (static memory, as training and evaluation run it) on 64
# Fashion-MNIST images: its bf16 logits may differ from fp32's by this relative distance
# (bf16 typically moves them by under 1%, on either kind of bf16 kernel).
FORWARD_TOLERANCE = 0.05

FORWARD = textwrap.dedent("""
    import sys, numpy as np, mxnet as mx
    from gluon_resnet.precision import bf16_kernels, enable_bf16
    if sys.argv[1] == "bf16":
        enable_bf16()
    print("KERNELS", bf16_kernels())
    from gluon_resnet import chapter_resnet18, load_data_fashion_mnist
    net = chapter_resnet18()
    net.initialize()
    X, _ = next(iter(load_data_fashion_mnist(64, limit=640)[1]))
    net(X)
    net.load_parameters(sys.argv[2])
    net.hybridize(static_alloc=True, static_shape=True)
    out = net(X)
    print("dtype", out.dtype.__name__ if hasattr(out.dtype, "__name__") else out.dtype)
    np.save(sys.argv[3], out.astype("float32").asnumpy())
""")


def _run(args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=300)


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def _centred(out):
    """Each image's logits minus the batch's mean logits: what tells the images apart."""
    return out - out.mean(axis=0)


# Centred logits may move this far in bf16 (typically under 0.2); another image's row is
# about 1.4 away, so a shuffled output fails.
CENTRED_TOLERANCE = 0.5
# An image's class is its largest centred logit.  At least this share of the images must keep
# it in bf16.  Of 32 images, typically 70-100% keep it in bf16 and 94-100% after rounding
# the weights and input; a shuffled output keeps at most 31% of the classes, an all-zero one
# at most 47%.
SAME_CLASS = 0.6


def _output_disagreements(fp32, bf16, tolerance):
    """What is wrong with the logits ``bf16`` against ``fp32`` (``(N, classes)``), in words.

    Empty when they agree: the relative distance is at most ``tolerance``, that of the
    centred logits at most ``CENTRED_TOLERANCE``, and at least ``SAME_CLASS`` of the images
    keep their class.
    """
    problems = []
    if not np.isfinite(bf16).all():
        problems.append("bf16 logits are not all finite")
    moved = _relative(fp32, bf16)
    if not moved <= tolerance:
        problems.append("logits moved %.3g, more than %.3g" % (moved, tolerance))
    c32, c16 = _centred(fp32), _centred(bf16)
    moved = _relative(c32, c16)
    if not moved <= CENTRED_TOLERANCE:
        problems.append("centred logits moved %.3g, more than %.3g" % (moved, CENTRED_TOLERANCE))
    same = float(np.mean(c32.argmax(1) == c16.argmax(1)))
    if not same >= SAME_CLASS:
        problems.append("only %.0f%% of the images kept their class" % (100 * same))
    return problems


#: Outputs that a comparison must reject: the test of the tests.
BROKEN = {"all zero": np.zeros_like, "half as large": lambda out: out / 2,
          "images shuffled": lambda out: np.roll(out, 1, axis=0)}


def _classes_are_telling(fp32):
    """Guard: the images fall into at least 5 classes, so keeping them means something."""
    return len(set(_centred(fp32).argmax(1))) >= 5


@needs_data
@pytest.mark.slow
def test_bf16_and_fp32_outputs_agree(kernels, tmp_path):
    import mxnet as mx
    from gluon_resnet import chapter_resnet18

    mx.random.seed(1)
    net = chapter_resnet18()
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 1, 28, 28)))
    params = str(tmp_path / "net.params")
    net.save_parameters(params)
    logits = {}
    for precision in ("fp32", "bf16"):
        out = str(tmp_path / (precision + ".npy"))
        done = _run(["-c", FORWARD, precision, params, out])
        assert done.returncode == 0, done.stderr
        assert ("bfloat16" in done.stdout) == (precision == "bf16"), done.stdout
        assert "KERNELS %s" % kernels in done.stdout
        logits[precision] = np.load(out)
    fp32, bf16 = logits["fp32"], logits["bf16"]
    assert 0 < _relative(fp32, bf16) and _classes_are_telling(fp32)
    assert _output_disagreements(fp32, bf16, FORWARD_TOLERANCE) == []
    for broken, change in BROKEN.items():
        assert _output_disagreements(fp32, change(bf16), FORWARD_TOLERANCE), broken


def _train(tmp_path, env):
    out = str(tmp_path / "run")
    done = _run(["-m", "gluon_resnet", "train", "--precision", "bf16", "--no-resize", "--limit",
                 "300", "--batch-size", "100", "--epochs", "1", "--out", out, "--no-progress"], env)
    assert done.returncode == 0, done.stderr
    return done, json.load(open(os.path.join(out, "config.json")))


@needs_data
@pytest.mark.slow
def test_bf16_falls_back_to_fp32_with_one_notice(tmp_path):
    done, config = _train(tmp_path, {"GLUON_RESNET_DISABLE_BF16": "1"})
    assert config["precision_used"] == "fp32"
    notices = [line for line in done.stderr.splitlines() if "bf16 is not available" in line]
    assert len(notices) == 1 and "fp32" in notices[0]


@needs_data
@pytest.mark.slow
def test_bf16_training_runs(kernels, tmp_path):
    done, config = _train(tmp_path, {})
    assert config["precision_used"] == "bf16"
    assert "bf16 is not available" not in done.stderr
    assert done.stdout.startswith("precision: bf16 on %s kernels\n" % kernels), done.stdout
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


# --- every registered model: bf16 against fp32, outputs and gradients ------------------------

# Runs in a subprocess per precision.  fp32: initialise each model and save its parameters;
# record the prediction-mode logits of 32 images, then the training-mode logits and
# gradients of 16; and the same for the network with its weights and input rounded to bf16
# (computed in fp32): how much these networks move when their numbers lose fp32's last 16
# bits.  bf16: load the same parameters (and delete the file), record the same.  Gradients
# are kept at a stride that leaves at most 2**20 entries per model, which gives their
# relative distances to 3 digits and keeps the files small.
AGREEMENT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import gluon_resnet
    from gluon_resnet import _mxnet
    from gluon_resnet.models import get_model, list_models, model_input_channels
    from gluon_resnet.precision import bf16_kernels, enable_bf16
    mx = _mxnet.mx
    from mxnet import autograd

    precision, folder = sys.argv[1], sys.argv[2]
    if precision == "bf16":
        enable_bf16()
    print("AMX", _mxnet.AMX)
    print("KERNELS", bf16_kernels())

    def round_bf16(a):
        u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
        u = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
        return u.view(np.float32)

    def record(net, x):
        y = mx.nd.arange(x.shape[0]) % 10
        with autograd.record():
            out = net(x)
            loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(out.astype("float32"), y)
        loss.backward()
        grads = np.concatenate([p.grad().astype("float32").asnumpy().ravel()
                                for p in net.collect_params().values() if p.grad_req != "null"])
        return out.astype("float32").asnumpy(), grads[::-(-grads.size // 2 ** 20)]

    def predict(net, x):
        return net(x).astype("float32").asnumpy()

    for name in sys.argv[3].split(","):
        mx.random.seed(0)
        net = get_model(name, num_classes=10)
        channels = model_input_channels(name)
        x = mx.nd.array(np.random.RandomState(0).uniform(0, 1, size=(16, channels, 32, 32)))
        pred_x = mx.nd.array(np.random.RandomState(1).uniform(0, 1, size=(32, channels, 32, 32)))
        net.initialize(mx.init.Xavier())
        net(x)
        path = "%s/%s.params" % (folder, name)
        result = {}
        if precision == "fp32":
            net.save_parameters(path)
        else:
            net.load_parameters(path)
            os.remove(path)
        # Prediction mode first: a training-mode backward pass moves BN's running statistics.
        result["pred"] = predict(net, pred_x)
        statistics = {p: p.data().copy() for p in net.collect_params().values()
                      if p.grad_req == "null"}
        result["out"], result["grad"] = record(net, x)
        if precision == "fp32":
            for p, value in statistics.items():
                p.set_data(value)
            for p in net.collect_params().values():
                if p.grad_req != "null":
                    p.set_data(mx.nd.array(round_bf16(p.data().asnumpy())))
            result["pred_rounded"] = predict(net, mx.nd.array(round_bf16(pred_x.asnumpy())))
            x = mx.nd.array(round_bf16(x.asnumpy()))
            result["out_rounded"], result["grad_rounded"] = record(net, x)
        np.savez("%s/%s-%s.npz" % (folder, name, precision), **result)
""")

# Two regimes, two kinds of bound.
# Prediction mode (BN with its initial statistics): the networks are tame; bf16 typically
# moves the logits by 0.3-1.9% and rounding the weights and input by 0.2-1.4%, bf16 1.0-6.1
# times as far.  bf16 may move them PRED_VS_ROUNDING times as
# far as rounding, plus PRED_FLOOR, and never more than PRED_CAP: below the 0.5 of a
# half-scaled output and the 1.0 of an all-zero one.  Centred logits and classes as in
# ``_output_disagreements``.
PRED_VS_ROUNDING = 5.0
PRED_FLOOR = 0.02
PRED_CAP = 0.25
# Training mode (BN normalising each batch): deep networks at initialisation are chaotic,
# rounding alone moves ResNet-152's outputs by 100% and leaves its gradients uncorrelated, so
# this bound is sharp only on shallow networks.  bf16 may move outputs and gradients at most
# BF16_VS_ROUNDING times as far as rounding, plus BF16_FLOOR.  On either kind of bf16
# kernel, outputs typically move 0.9-2.5 times and gradients 0.95-1.5 times as far.
BF16_VS_ROUNDING = 3.0
BF16_FLOOR = 0.02


def _agreement_disagreements(fp32, bf16):
    """What is wrong with a model's bf16 results against fp32's, in words; empty if nothing."""
    limit = min(PRED_VS_ROUNDING * _relative(fp32["pred"], fp32["pred_rounded"]) + PRED_FLOOR,
                PRED_CAP)
    problems = ["prediction mode: " + p
                for p in _output_disagreements(fp32["pred"], bf16["pred"], limit)]
    for key in ("out", "grad"):
        if not np.isfinite(bf16[key]).all():
            problems.append("training mode: %s not finite" % key)
        moved = _relative(fp32[key], bf16[key])
        by_rounding = _relative(fp32[key], fp32[key + "_rounded"])
        if not moved <= BF16_VS_ROUNDING * by_rounding + BF16_FLOOR:
            problems.append("training mode: %s moved %.3g, rounding %.3g" % (key, moved,
                                                                           by_rounding))
    return problems


# Registered models left out of the bf16 agreement: each has the blocks and operators of a
# smaller registered model that is checked (its value here), and is expensive in this test's
# two subprocesses, whose cost grows with the parameters (initialise, save, load, round and
# store every weight and gradient) and with the work per 32x32 image: 69-127 M parameters
# for the wide and ResNeXt-101 nets, 5.2 GMACs per image for WRN-28-10 (tens of seconds each
# on two cores, against 60 s allowed for the whole family extension).
# ResNet-50-C is ResNet-50-D without the average pool, which is the cheap part.
AGREEMENT_COVERED_BY = {"wide_resnet50_2": "resnet50_v1", "wide_resnet101_2": "resnet101_v1",
                        "resnext101_32x8d": "resnext50_32x4d", "wrn28_10": "wrn40_4",
                        "resnet50_v1c": "resnet50_v1d"}
AGREEMENT_MODELS = [name for name in list_models() if name not in AGREEMENT_COVERED_BY]


@pytest.fixture(scope="module")
def agreement(tmp_path_factory):
    if KERNELS == "fp32 fallback":
        pytest.skip(NO_BF16)
    folder = str(tmp_path_factory.mktemp("bf16_agreement"))
    for precision in ("fp32", "bf16"):
        done = _run(["-c", AGREEMENT, precision, folder, ",".join(AGREEMENT_MODELS)])
        assert done.returncode == 0, done.stderr[-2000:]
        if precision == "bf16":
            assert "KERNELS %s" % KERNELS in done.stdout  # the kernels the label names
            if "amx_bf16" in cpu_flags():
                assert "AMX (True, 'on')" in done.stdout  # compared on AMX kernels
    return folder


def _layer_kinds(block):
    """Every kind of layer in ``block``: class names, grouped convolutions marked."""
    kinds = {type(block).__name__ + (" grouped" if getattr(block, "_kwargs", {}).get(
        "num_group", 1) > 1 else "")}
    for child in block._children.values():
        kinds |= _layer_kinds(child)
    return kinds


def test_models_left_out_of_the_agreement_have_a_checked_sibling():
    for name, sibling in AGREEMENT_COVERED_BY.items():
        assert name in list_models() and sibling in AGREEMENT_MODELS, (name, sibling)
        # Every kind of layer (and so every operator) of the model is in the sibling.
        missing = _layer_kinds(get_model(name)) - _layer_kinds(get_model(sibling))
        assert not missing, (name, sibling, missing)
    assert "Conv2D grouped" in _layer_kinds(get_model("resnext50_32x4d"))  # guard
    assert _layer_kinds(get_model("resnet50_v1d")) - _layer_kinds(get_model("resnet50_v1c"))


@pytest.mark.slow
@pytest.mark.parametrize("name", AGREEMENT_MODELS)
def test_bf16_agrees_with_fp32(agreement, kernels, name):
    fp32 = dict(np.load(os.path.join(agreement, name + "-fp32.npz")))
    bf16 = dict(np.load(os.path.join(agreement, name + "-bf16.npz")))
    assert _classes_are_telling(fp32["pred"])
    assert _agreement_disagreements(fp32, bf16) == []
    # The same comparison rejects broken outputs (in both modes; the gradients left as they are).
    for broken, change in BROKEN.items():
        wrong = dict(bf16, pred=change(bf16["pred"]), out=change(bf16["out"]))
        assert _agreement_disagreements(fp32, wrong), broken


@needs_data
@pytest.mark.slow
def test_bf16_evaluation_has_the_accuracy_of_fp32(kernels, tmp_path):
    import re

    from gluon_resnet.experiment import TrainConfig, run_training

    out = str(tmp_path / "run")
    run_training(TrainConfig(resize=None, limit=2000, batch_size=100, epochs=2, seed=1,
                             precision="fp32"), out=out, quiet=True, progress=False)
    ckpt = os.path.join(out, "checkpoint.ckpt")
    acc = {}
    for args, line in ((["--precision", "fp32"], "precision: fp32, oneDNN operator fusion"),
                       (["--precision", "bf16"], "precision: bf16 on %s kernels, oneDNN"
                        % kernels)):
        done = _run(["-m", "gluon_resnet", "eval", "--params", ckpt, "--limit", "2000", *args])
        assert done.returncode == 0, done.stderr
        assert line in done.stdout, done.stdout
        acc[line] = float(re.search(r"test acc (\d\.\d+)", done.stdout).group(1))
    fp32, bf16 = acc.values()
    assert 0.5 < fp32 and abs(bf16 - fp32) <= 0.01, acc



# bf16 AMP in a subprocess: the convolution that reads the image (StemConv2D) gives fp32,
# imperatively and in the symbolic graph that hybridized training runs; the convolution
# after it gives bf16.
STEM = textwrap.dedent("""
    import sys, mxnet as mx, numpy as np
    from mxnet.gluon import nn
    from gluon_resnet.precision import enable_bf16
    enable_bf16()
    from gluon_resnet import get_model
    def convs(block):
        if isinstance(block, nn.Conv2D):
            return [block]
        return [c for child in block._children.values() for c in convs(child)]
    net = get_model(sys.argv[1])
    net.initialize(mx.init.Xavier())
    X = mx.nd.random.uniform(shape=(2, 1, 32, 32))
    net(X)
    def name(dtype):  # MXNet's bfloat16 is a numpy record type with one field, 'bfloat16'
        return np.dtype(dtype).names[0] if np.dtype(dtype).names else np.dtype(dtype).name
    first, second = convs(net)[:2]
    print("imperative", name(first(X).dtype))
    internals = net(mx.sym.var("data")).get_internals()
    types = dict(zip(internals.list_outputs(), internals.infer_type(data="float32")[1]))
    for conv in (first, second):
        print("symbolic", name(types[conv.name + "_fwd_output"]))
""")


@pytest.mark.parametrize("name", ["chapter_resnet18", "compact_resnet8_w32", "resnet50_v1d"])
def test_the_image_convolution_stays_fp32_under_bf16(kernels, name, tmp_path):
    script = tmp_path / "stem.py"
    script.write_text(STEM)
    done = _run([str(script), name])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == [
        "imperative float32", "symbolic float32", "symbolic bfloat16"], done.stdout


@pytest.mark.parametrize("name", list_models())
def test_every_model_reads_the_image_with_a_stem_convolution(name):
    from mxnet.gluon import nn
    from gluon_resnet.layers import StemConv2D

    def convs(block):
        if isinstance(block, nn.Conv2D):
            return [block]
        return [c for child in block._children.values() for c in convs(child)]

    found = convs(get_model(name))
    assert type(found[0]) is StemConv2D
    assert all(type(c) is not StemConv2D for c in found[1:])
