"""MXNet's numpy mode (``npx.set_np()``, the current edition of d2l) beside legacy mode.

Every block and registered network computes the same numbers in both modes,
imperative and hybridized; ``Residual`` computes what the current edition's
``d2l.Residual`` computes; the shape table, ``evaluate_accuracy`` and the fused
inference path work on ``mxnet.np`` arrays; bf16 falls back to fp32 in numpy
mode with one notice; no call leaves the mode switched; an array of the other
mode gets one sentence that says how to convert it.

Numpy mode is switched on only through ``helpers.numpy_mode_on`` (or conftest.py's
``numpy_mode`` fixture built on it), which always switches it off again; conftest.py
fails any test that leaves it on.
"""

import contextlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mxnet as mx
from mxnet import autograd, gluon
from mxnet.gluon import nn
from d2l import mxnet as d2l

from gluon_resnet import (Residual, chapter_resnet18, evaluate_accuracy, format_summary,
                          get_model, list_models, resnet_block, summarize)
from gluon_resnet.blocks import BasicBlockV1, BasicBlockV2, BottleneckV1, BottleneckV2
from gluon_resnet.data import load_fashion_mnist_arrays
from gluon_resnet.evaluation import predict
from gluon_resnet.models import count_model_parameters, model_input_channels
from gluon_resnet.precision import bf16_available, resolve_precision
from gluon_resnet.summary import count_flops, top_level_layers

from helpers import DATA_DIR, array_of_mode, numpy_mode_on, randomize_params, uniform_values


def _mode():
    return mx.util.is_np_array(), mx.util.is_np_shape()


def _close(actual, expected, rtol=1e-5):
    """Equal up to ``rtol`` relative to the largest value of ``expected``."""
    scale = float(np.abs(expected).max()) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def _settle(net, x):
    """Finish deferred initialisation with one training-mode call.

    Training mode, and a wait before the parameters are touched: after an
    inference call MXNet 1.9.1 reorders convolution weights in place, and a
    read racing with that reorder can return other values.
    """
    with autograd.record():
        net(x)
    mx.nd.waitall()


def _initialize_like(net, values, params=None):
    """Initialise ``net`` (of the mode that is on) with the parameter ``values`` of another."""
    params = params or list(net.collect_params().values())
    assert len(params) == len(values)
    for p, v in zip(params, values):
        p.initialize(init=mx.init.Constant(v))


def _step(net, x, y, params=None):
    """Training-mode output and every gradient (one vector) of one recorded pass."""
    with autograd.record():
        out = net(x)
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(out, y)
    loss.backward()
    grads = [p.grad().asnumpy().ravel() for p in params or net.collect_params().values()
             if p.grad_req != "null"]
    return out.asnumpy(), np.concatenate(grads)


# --- every registered network ----------------------------------------------------------------


def _downsampling(net):
    """How many times smaller the last feature map is than the input (product of strides)."""
    factor = 1
    for _, layer in top_level_layers(net):
        if isinstance(layer, (nn.Conv2D, nn.MaxPool2D, nn.AvgPool2D)):
            factor *= layer._kwargs["stride"][0]
        elif isinstance(layer, nn.HybridSequential) and len(layer):  # a stage
            factor *= getattr(layer[0], "stride", getattr(layer[0], "strides", 1))
    return factor


def test_downsampling_reads_the_strides_of_the_stem_and_stages():
    # Guard for the smallest inputs below: the ImageNet networks shrink 32 times, the CIFAR
    # ones 4 times (He et al. 2016, sections 3.4 and 4.2).
    assert _downsampling(get_model("resnet50_v1")) == 32
    assert _downsampling(get_model("resnet18_v1d")) == 32
    assert _downsampling(chapter_resnet18()) == 32
    assert _downsampling(get_model("cifar_resnet20_v1")) == 4
    assert _downsampling(get_model("wrn16_4")) == 4
    assert _downsampling(get_model("compact_resnet9")) == 8


def _pattern_values(params, seed=0):
    """Values for the parameters ``params`` (name: parameter, shapes known): uniform noise
    scaled by each layer's fan-in.

    Cut from one pool of random numbers at a different place for each
    parameter: the hundred million parameters of the widest networks cost no
    random draws.
    """
    pool = np.random.RandomState(seed).uniform(-1, 1, 2 ** 21).astype(np.float32)
    values = []
    for i, (name, p) in enumerate(params.items()):
        size, start = int(np.prod(p.shape)), 7919 * i % 2 ** 20
        noise = np.resize(pool[start:start + min(size, 2 ** 20)], p.shape)
        if name.endswith(("gamma", "running_var")):
            values.append(1 + 0.2 * noise)
        elif name.endswith(("beta", "bias", "running_mean")):
            values.append(0.1 * noise)
        else:
            values.append(noise * np.float32(np.sqrt(3 / np.prod(p.shape[1:]))))
    return values


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_hybridized_in_numpy_mode_with_the_legacy_numbers(name):
    """One hybridized training pass, batch 2, at the smallest input (last maps 1x1).

    Both networks start from the same parameters.  The output, and the
    gradients of the first convolution (the end of the whole backward pass)
    and of the classifier, agree to float32 rounding: both modes run the same
    oneDNN kernels.  Only those three parameters get gradients, which keeps
    the 127 M parameters of ``wide_resnet101_2`` cheap.
    """
    def train_step(net, x, y, params):
        params = list(params.values())
        for p in params[1:-2]:
            p.grad_req = "null"
        _initialize_like(net, values, params)
        # The stem's convolution weight, the classifier's weight and bias.
        assert [len(p.shape) for p in (params[0], params[-2], params[-1])] == [4, 2, 1]
        return _step(net, x, y, params)

    legacy = get_model(name, num_classes=10)
    legacy.hybridize()
    size = _downsampling(legacy)
    x = uniform_values((2, model_input_channels(name), size, size))
    y = np.array([0, 1], dtype=np.float32)
    legacy.infer_shape(mx.nd.array(x))  # builds the graph the training step then runs
    params = legacy.collect_params()
    values = _pattern_values(params)
    expected = train_step(legacy, mx.nd.array(x), mx.nd.array(y), params)
    with numpy_mode_on():
        net = get_model(name, num_classes=10)
        net.hybridize()
        out, grads = train_step(net, mx.np.array(x), mx.np.array(y), net.collect_params())
    _close(out, expected[0])
    _close(grads, expected[1])
    assert grads.any()


# --- blocks, imperative and hybridized ----------------------------------------------------


BLOCK_CASES = [  # (block class, in channels, channels, stride, options)
    (BasicBlockV1, 4, 8, 2, {"shortcut": "A"}),  # zero-padding shortcut: subsample, pad
    (BasicBlockV1, 4, 4, 1, {"shortcut": None}),  # plain block
    (BottleneckV1, 8, 4, 2, {"se_reduction": 4, "avg_down": True}),  # SE, pooled projection
    (BasicBlockV2, 4, 8, 2, {"shortcut": "B"}),
    (BottleneckV2, 16, 4, 1, {"shortcut": "C", "groups": 2, "base_width": 32}),
]


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("case", BLOCK_CASES, ids=lambda c: "%s-%s" % (c[0].__name__, c[4]))
def test_family_blocks_give_the_legacy_numbers_in_numpy_mode(case, hybridize):
    block, in_channels, channels, stride, options = case
    x = uniform_values((2, in_channels, 6, 6), seed=1)

    def run():
        blk = block(in_channels, channels, stride, **options)
        blk.initialize()
        _settle(blk, array_of_mode(x))
        randomize_params(blk)  # BN running statistics too, so prediction mode is checked
        if hybridize:
            blk.hybridize()
        predicted = blk(array_of_mode(x)).asnumpy()
        with autograd.record():
            out = blk(array_of_mode(x))
        out.backward()
        grads = [p.grad().asnumpy() for p in blk.collect_params().values()
                 if p.grad_req != "null"]
        return [predicted, out.asnumpy()] + grads

    expected = run()
    with numpy_mode_on():
        actual = run()
    for a, e in zip(actual, expected):
        _close(a, e)


# --- the chapter's block against the current edition's -------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"use_1x1conv": True}, {"use_1x1conv": True, "strides": 2}])
@pytest.mark.parametrize("hybridize", [False, True])
def test_residual_matches_d2l_residual_in_numpy_mode(numpy_mode, kwargs, hybridize):
    channels = 3 if not kwargs else 6
    x = mx.np.random.uniform(size=(4, 3, 6, 6))
    ours, theirs = Residual(channels, **kwargs), d2l.Residual(channels, **kwargs)
    for net in (ours, theirs):
        net.initialize()
        _settle(net, x)
    randomize_params(theirs)
    for a, b in zip(ours.collect_params().values(), theirs.collect_params().values()):
        assert a.shape == b.shape, (a.name, b.name)
        a.set_data(b.data())
    if hybridize:
        ours.hybridize()  # d2l's Residual is a plain Block
    for train in (False, True):
        with autograd.record(train_mode=train):
            a, b = ours(x), theirs(x)
        assert isinstance(a, mx.np.ndarray)
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-5)


def test_resnet_block_in_numpy_mode(numpy_mode):
    blk = resnet_block(8, 2)
    blk.initialize()
    out = blk(mx.np.random.uniform(size=(2, 4, 8, 8)))
    assert isinstance(out, mx.np.ndarray) and out.shape == (2, 8, 4, 4)


# --- shapes, accuracy, the fused path ---------------------------------------------------------


def test_summary_and_counts_in_numpy_mode_equal_legacy_mode():
    def tables():
        return (format_summary(summarize(chapter_resnet18())),  # the chapter's 224x224
                count_flops(get_model("cifar_resnet20_v1"), (1, 3, 32, 32)),
                count_model_parameters("resnet18_v1"))

    expected = tables()
    with numpy_mode_on():
        assert tables() == expected
    assert "stage4 (HybridSequential)  (1, 512, 7, 7)" in expected[0]  # the book's table


@pytest.fixture(scope="module")
def test_images():
    """Two batches of Fashion-MNIST's test images, as numpy arrays ``(X, y)``."""
    if not os.path.isdir(DATA_DIR):
        pytest.skip("Fashion-MNIST is not installed")
    _, _, images, labels = load_fashion_mnist_arrays(DATA_DIR)
    X = images[:64, None].astype(np.float32) / 255
    return [(X[:32], labels[:32]), (X[32:], labels[32:64])]


def _batches(test_images):
    return [(array_of_mode(X), array_of_mode(y)) for X, y in test_images]


def _compact_net(values=None):
    """``compact_resnet8`` Xavier-initialised, or from ``values``; and its parameters."""
    net = get_model("compact_resnet8")
    if values is not None:
        _initialize_like(net, values)
        return net, values
    mx.random.seed(0)
    net.initialize(mx.init.Xavier())
    _settle(net, array_of_mode(np.zeros((1, 1, 28, 28), np.float32)))
    return net, [p.data().asnumpy() for p in net.collect_params().values()]


@pytest.mark.parametrize("flip", [False, True])
def test_evaluate_accuracy_in_numpy_mode_counts_like_legacy_mode(test_images, flip):
    legacy, values = _compact_net()
    expected = evaluate_accuracy(_batches(test_images), legacy, flip=flip)
    scores = np.concatenate([legacy(mx.nd.array(X)).asnumpy() for X, _ in test_images])
    labels = np.concatenate([y for _, y in test_images])
    if not flip:  # what the accuracy is, counted here
        assert expected == (scores.argmax(1) == labels).mean()
    with numpy_mode_on():
        net, _ = _compact_net(values)
        assert evaluate_accuracy(_batches(test_images), net, flip=flip) == expected
        # Two devices: the batches are split (numpy mode's own split).
        net.collect_params().reset_ctx([mx.cpu(0), mx.cpu(1)])
        assert evaluate_accuracy(_batches(test_images), net, [mx.cpu(0), mx.cpu(1)],
                                 flip=flip) == expected


def test_fused_inference_in_numpy_mode_gives_the_legacy_outputs(test_images):
    """evaluate_run's path: oneDNN operator fusion (conv + BN + ReLU + add), then predict."""
    def fused(net):
        net.hybridize(backend="MKLDNN", static_alloc=True)
        outputs = [net(X).asnumpy() for X, _ in _batches(test_images)]
        return outputs, predict(net, _batches(test_images))

    legacy, values = _compact_net()
    expected_outputs, (expected_labels, expected_preds) = fused(legacy)
    with numpy_mode_on():
        net, _ = _compact_net(values)
        outputs, (labels, preds) = fused(net)
    for a, e in zip(outputs, expected_outputs):
        _close(a, e)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(preds, expected_preds)
    assert labels.tolist() == [int(v) for _, y in test_images for v in y]


def test_predict_views_legacy_batches_in_numpy_mode(numpy_mode, test_images):
    # gluon-resnet's own loaders give legacy batches; predict hands them over as numpy ones.
    net, _ = _compact_net()
    legacy_batches = [(mx.nd.array(X), mx.nd.array(y)) for X, y in test_images]
    np.testing.assert_array_equal(predict(net, legacy_batches)[1],
                                  predict(net, _batches(test_images))[1])


# --- bf16 ------------------------------------------------------------------------------------


def test_bf16_in_numpy_mode_falls_back_to_fp32_with_one_notice(numpy_mode):
    notes = []
    assert resolve_precision("bf16", [mx.cpu()], notice=notes.append) == "fp32"
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "numpy-mode" in notes[0] and "training in fp32" in notes[0]
    assert resolve_precision("auto", [mx.cpu()], notice=notes.append) == "fp32"
    assert len(notes) == 1  # auto falls back without a word, as elsewhere


# Why: after amp.init a legacy convolution computes in bf16, the same layer in numpy mode
# in fp32.  The numpy-mode network still trains, in fp32.
AMP_IN_NUMPY_MODE = textwrap.dedent("""
    import numpy as onp
    import gluon_resnet
    import mxnet as mx
    from mxnet import autograd, npx
    from mxnet.gluon import nn
    from gluon_resnet.models import get_model
    from gluon_resnet.precision import enable_bf16
    enable_bf16()
    conv = nn.Conv2D(8, 3)
    conv.initialize()
    print("legacy", conv(mx.nd.ones((1, 3, 8, 8))).dtype)
    npx.set_np()
    conv = nn.Conv2D(8, 3)
    conv.initialize()
    print("numpy", conv(mx.np.ones((1, 3, 8, 8))).dtype)
    net = get_model("cifar_resnet20_v1")
    net.initialize()
    net.hybridize()
    with autograd.record():
        out = net(mx.np.ones((2, 3, 4, 4)))
    out.backward()
    grads = [p.grad().asnumpy() for p in net.collect_params().values() if p.grad_req != "null"]
    print("network", out.dtype, all(onp.isfinite(g).all() for g in grads))
""")


@pytest.mark.slow
@pytest.mark.skipif(not bf16_available(), reason="this CPU has no AVX512-BF16")
def test_amp_leaves_numpy_mode_networks_in_fp32():
    done = subprocess.run([sys.executable, "-c", AMP_IN_NUMPY_MODE], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "legacy [('bfloat16', '<u2')]" in done.stdout  # AMP works in legacy mode
    assert "numpy float32" in done.stdout
    assert "network float32 True" in done.stdout


# --- the mode is the caller's ------------------------------------------------------------------


def _public_calls(test_images):
    """Each public call of gluon_resnet that numpy mode concerns, on tiny inputs."""
    def block_call(blk, shape):
        blk.initialize()
        blk.hybridize()
        return blk(array_of_mode(np.ones(shape, np.float32)))

    net = get_model("compact_resnet8")
    return [
        ("Residual", lambda: block_call(Residual(4), (2, 4, 6, 6))),
        ("resnet_block", lambda: block_call(resnet_block(4, 1), (2, 4, 6, 6))),
        ("get_model", lambda: block_call(get_model("cifar_resnet20_v1"), (2, 3, 4, 4))),
        ("count_model_parameters", lambda: count_model_parameters("compact_resnet8")),
        ("summarize", lambda: format_summary(summarize(net, (1, 1, 28, 28)))),
        ("count_flops", lambda: count_flops(get_model("compact_resnet8"), (1, 1, 28, 28))),
        ("evaluate_accuracy", lambda: evaluate_accuracy(_batches(test_images), net)),
        ("predict", lambda: predict(net, _batches(test_images))),
        ("resolve_precision", lambda: resolve_precision("bf16", [mx.cpu()], notice=len)),
    ]


@pytest.mark.parametrize("numpy_on", [False, True])
def test_no_call_switches_the_mode(test_images, numpy_on):
    with numpy_mode_on() if numpy_on else contextlib.nullcontext():
        for name, call in _public_calls(test_images):
            call()
            assert _mode() == (numpy_on, numpy_on), name


# --- bad input -------------------------------------------------------------------------------


NETWORKS = {
    "Residual": (lambda: Residual(3), 3),
    "resnet_block": (lambda: resnet_block(4, 1), 3),
    "chapter_resnet18": (chapter_resnet18, 1),
    "cifar_resnet20_v1": (lambda: get_model("cifar_resnet20_v1"), 3),
    "BasicBlockV2": (lambda: BasicBlockV2(3, 3), 3),
}


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("numpy_on", [False, True])
@pytest.mark.parametrize("which", sorted(NETWORKS))
def test_an_array_of_the_other_mode_gets_one_sentence(which, numpy_on, hybridize):
    build, channels = NETWORKS[which]
    x = np.ones((2, channels, 4, 4), np.float32)
    with numpy_mode_on() if numpy_on else contextlib.nullcontext():
        net = build()
        net.initialize()
        if hybridize:
            net.hybridize()
        other = mx.nd.array(x) if numpy_on else mx.np.array(x)
        with pytest.raises(TypeError) as raised:
            net(other)
    message = str(raised.value)
    assert "\n" not in message
    if numpy_on:
        assert "numpy mode is on" in message and "x.as_np_ndarray()" in message, message
    else:
        assert "numpy mode is off" in message and "x.as_nd_ndarray()" in message, message


@pytest.mark.parametrize("initialise", [False, True])
@pytest.mark.parametrize("numpy_first", [False, True])
def test_a_network_built_in_the_other_mode_gets_one_sentence(numpy_first, initialise):
    x = np.ones((2, 3, 4, 4), np.float32)
    with numpy_mode_on() if numpy_first else contextlib.nullcontext():
        net = get_model("cifar_resnet20_v1")
        if initialise:
            net.initialize()
            net(array_of_mode(x))
    with contextlib.nullcontext() if numpy_first else numpy_mode_on():
        if not initialise:
            net.initialize()
        with pytest.raises(TypeError) as raised:
            net(array_of_mode(x))  # the input is right for the mode that is on now
    message = str(raised.value)
    assert "\n" not in message
    if numpy_first:
        assert "built in MXNet's numpy mode" in message and "npx.set_np()" in message, message
    else:
        assert "built in legacy mode" in message and "npx.reset_np()" in message, message


def test_evaluate_accuracy_passes_the_sentence_on(numpy_mode):
    net = get_model("compact_resnet8")
    net.initialize()
    with pytest.raises(TypeError, match=r"as_np_ndarray\(\)"):
        evaluate_accuracy([(mx.nd.ones((2, 1, 28, 28)), mx.nd.array([0, 1]))], net)
