"""blocks.py: the chapter's Residual and resnet_block (shapes, d2lzh parity, errors, the units'
saved files) and the family's blocks and stages."""

import collections
import os
import subprocess
import sys
import textwrap

import d2lzh
import numpy as np
import pytest

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from gluon_resnet import Residual, resnet_block
from gluon_resnet._cpu import cpu_flags
from gluon_resnet.blocks import BasicBlockV1, BasicBlockV2, BottleneckV1, BottleneckV2, make_stage
from gluon_resnet.summary import count_parameters
from helpers import book_net, copy_params, randomize_params


def _x(shape=(4, 3, 6, 6)):
    return mx.nd.random.uniform(shape=shape)


def test_book_shape_examples():
    X = _x()
    blk = Residual(3)
    blk.initialize()
    assert blk(X).shape == (4, 3, 6, 6)
    blk = Residual(6, use_1x1conv=True, strides=2)
    blk.initialize()
    assert blk(X).shape == (4, 6, 3, 3)


def _pair(ours, theirs, x):
    ours.initialize()
    theirs.initialize()
    ours(x)
    theirs(x)  # finish deferred initialisation
    randomize_params(theirs)
    copy_params(theirs, ours)


def _outputs(net, x):
    """Outputs in prediction mode and in training mode (batch statistics)."""
    pred = net(x).asnumpy()
    with autograd.record():
        train = net(x).asnumpy()
    return pred, train


@pytest.mark.parametrize("kwargs", [{}, {"use_1x1conv": True}, {"use_1x1conv": True, "strides": 2}])
@pytest.mark.parametrize("hybridize", [False, True])
def test_residual_matches_d2lzh(kwargs, hybridize):
    channels = 3 if not kwargs else 6
    x = _x()
    ours, theirs = Residual(channels, **kwargs), d2lzh.Residual(channels, **kwargs)
    _pair(ours, theirs, x)
    if hybridize:
        ours.hybridize()
    for a, b in zip(_outputs(ours, x), _outputs(theirs, x)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_residual_output_depends_on_parameters():
    """Guard for the parity test: different parameters give different outputs."""
    x = _x()
    a, b = Residual(3), Residual(3)
    a.initialize(mx.init.Xavier())
    b.initialize(mx.init.Xavier())
    assert not np.allclose(a(x).asnumpy(), b(x).asnumpy())


@pytest.mark.parametrize("hybridize", [False, True])
def test_chapter_net_matches_book_net_of_d2lzh_blocks(hybridize):
    from gluon_resnet import chapter_resnet18

    x = mx.nd.random.uniform(shape=(2, 1, 64, 64))
    ours, theirs = chapter_resnet18(), book_net(d2lzh.Residual)
    _pair(ours, theirs, x)
    if hybridize:
        ours.hybridize()
    for a, b in zip(_outputs(ours, x), _outputs(theirs, x)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("hybridize", [False, True])
def test_d2lzh_resnet18_parity(hybridize):
    from gluon_resnet import resnet18

    x = mx.nd.random.uniform(shape=(2, 1, 28, 28))
    ours, theirs = resnet18(10), d2lzh.resnet18(10)
    _pair(ours, theirs, x)
    if hybridize:
        ours.hybridize()
    for a, b in zip(_outputs(ours, x), _outputs(theirs, x)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_resnet_block_is_hybrid_and_shapes():
    blk = resnet_block(8, 2)
    assert isinstance(blk, nn.HybridSequential)
    assert len(blk) == 2 and blk[0].use_1x1conv and blk[0].strides == 2
    blk.initialize()
    assert blk(_x((2, 4, 8, 8))).shape == (2, 8, 4, 4)
    first = resnet_block(4, 3, first_block=True)
    first.initialize()
    assert len(first) == 3 and not any(b.use_1x1conv for b in first)
    assert first(_x((2, 4, 8, 8))).shape == (2, 4, 8, 8)


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("channels, strides, in_shape",
                         [(6, 1, (4, 3, 6, 6)), (3, 2, (4, 3, 6, 6))])
def test_shortcut_mismatch_is_a_clear_error(channels, strides, in_shape, hybridize):
    blk = Residual(channels, strides=strides)
    blk.initialize()
    if hybridize:
        blk.hybridize()
    with pytest.raises(ValueError) as info:
        blk(_x(in_shape))
    msg = str(info.value)
    assert blk.name in msg and str(in_shape) in msg and "use_1x1conv=True" in msg


def test_shortcut_mismatch_inside_a_sequential():
    net = nn.Sequential()
    net.add(Residual(4), Residual(8))
    net.initialize()
    with pytest.raises(ValueError, match="use_1x1conv=True"):
        net(_x((1, 4, 6, 6)))


@pytest.mark.parametrize("kwargs, bad", [
    ({"num_channels": 0}, "num_channels"), ({"num_channels": -3}, "num_channels"),
    ({"num_channels": 2.5}, "num_channels"), ({"num_channels": 3, "strides": 0}, "strides"),
    ({"num_channels": 3, "strides": -1}, "strides"),
])
def test_bad_residual_arguments(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        Residual(**kwargs)


@pytest.mark.parametrize("args, bad", [((0, 2), "num_channels"), ((8, 0), "num_residuals")])
def test_bad_resnet_block_arguments(args, bad):
    with pytest.raises(ValueError, match=bad):
        resnet_block(*args)


# Two training steps of a registered network, in a child process so that oneDNN
# reads DNNL_VERBOSE when it loads.  argv: model name, then "plus" to add the
# shortcut with + (the check that the test can fail), or "numpy" to train in
# MXNet's numpy mode (npx.set_np()).
TWO_TRAINING_STEPS = textwrap.dedent("""
    import sys
    import gluon_resnet
    from gluon_resnet import blocks, get_model
    from mxnet import autograd, gluon, init, nd, npx
    if "plus" in sys.argv[2:]:
        blocks._ResidualUnit._add_shortcut = (
            lambda self, F, out, x: out + (x if self.shortcut is None else self.shortcut(x)))
    X, y = nd.random.uniform(shape=(16, 1, 28, 28)), nd.arange(16) % 10
    if "numpy" in sys.argv[2:]:
        npx.set_np()
        X, y = X.as_np_ndarray(), y.as_np_ndarray()
    net = get_model(sys.argv[1])
    net.initialize(init.Xavier())
    net.hybridize(static_alloc=True)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(2):
        with autograd.record():
            value = loss(net(X), y)
        value.backward()
    nd.waitall()
    print("trained")
""")


def _primitives(*args):
    """The oneDNN primitives two training steps run: one line each, without its time."""
    done = subprocess.run([sys.executable, "-c", TWO_TRAINING_STEPS, *args], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, DNNL_VERBOSE="1"))
    assert done.returncode == 0 and "trained" in done.stdout, done.stderr[-2000:]
    return [line.rsplit(",", 1)[0] for line in done.stdout.splitlines()
            if line.startswith("dnnl_verbose,exec,")]


@pytest.fixture(scope="module")
def cifar_legacy_primitives():
    return _primitives("cifar_resnet20_v1")


def _bn_backward_kernels(primitives):
    calls = [line for line in primitives if "batch_normalization" in line and "backward" in line]
    assert calls, "DNNL_VERBOSE showed no BN backward pass"
    return calls


@pytest.mark.slow
def test_residual_units_keep_bn_backward_on_fast_onednn_kernels(cifar_legacy_primitives):
    assert not [c for c in _bn_backward_kernels(cifar_legacy_primitives) if "bnorm_ref" in c]


@pytest.mark.slow
@pytest.mark.skipif("avx512f" not in cpu_flags() or "DNNL_MAX_CPU_ISA" in os.environ,
                    reason="oneDNN runs AVX2 (or capped) kernels here, whose BN backward pass "
                    "takes a gradient in either layout: + and add_n run the same kernels")
def test_plus_would_put_bn_backward_on_reference_kernels():
    # With + instead of F.add_n, MXNet 1.9.1 gives BN's backward pass a gradient in
    # another layout than its data in the CIFAR networks, and oneDNN's AVX-512 kernels
    # give way to its reference code (bnorm_ref), twice as slow a training step (see
    # arrays.py): the check that the test above can fail.
    plus = _primitives("cifar_resnet20_v1", "plus")
    assert [c for c in _bn_backward_kernels(plus) if "bnorm_ref" in c]


@pytest.mark.slow
def test_numpy_mode_trains_on_the_same_onednn_kernels_as_legacy_mode(cifar_legacy_primitives):
    # Same primitives, implementations, memory layouts and shapes, as often.  Numpy mode's
    # own np.add (for +) and np.concatenate are not oneDNN's: with them the shortcut's sums
    # and the zero-padding's concats leave oneDNN and 32 more reorders appear.
    numpy = _primitives("cifar_resnet20_v1", "numpy")
    assert collections.Counter(numpy) == collections.Counter(cifar_legacy_primitives)


# Parameters and output of every kind of family unit, saved by the units of commit 186705e
# (before each unit wrote its forward pass out), with this module's _units_of_every_kind and
# _write_saved_units: checkpoints (structural names), exported models (Gluon names) and
# optimizer states (parameter order) made before must still fit.
SAVED_UNITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "saved", "units-186705e")


def _units_of_every_kind():
    from gluon_resnet.blocks import (BasicBlockV1, BasicBlockV2, BottleneckV1, BottleneckV2,
                                     HybridSequential)

    net = HybridSequential(prefix="units_")
    with net.name_scope():
        net.add(BasicBlockV1(4, 8, stride=2),
                BasicBlockV1(8, 8, shortcut=None, zero_init_last_bn=True),
                BottleneckV1(8, 4, stride=2, shortcut="C", groups=2, base_width=32,
                             se_reduction=4, avg_down=True),
                BasicBlockV2(16, 24, stride=2, shortcut="A", dropout=0.2),
                BottleneckV2(24, 8, stride_in_1x1=True, stride=2))
    return net


def _saved_units_input():
    return mx.nd.array(np.random.RandomState(5).normal(size=(2, 4, 9, 9)))


def _write_saved_units(path=SAVED_UNITS):
    """Write the files (run once, with the code the files are to record)."""
    net = _units_of_every_kind()
    net.initialize()
    net(_saved_units_input())
    randomize_params(net, seed=6)
    net.save_parameters(path + ".params")
    np.savez(path + ".npz", output=net(_saved_units_input()).asnumpy(),
             gluon_names=list(net.collect_params().keys()),
             structural_names=list(net._collect_params_with_prefix().keys()))


def test_parameters_saved_by_the_earlier_units_load_and_compute_the_same():
    saved = np.load(SAVED_UNITS + ".npz")
    net = _units_of_every_kind()
    assert list(net._collect_params_with_prefix().keys()) == list(saved["structural_names"])
    assert list(net.collect_params().keys()) == list(saved["gluon_names"])
    net.load_parameters(SAVED_UNITS + ".params")  # raises on a missing or an extra name
    np.testing.assert_allclose(net(_saved_units_input()).asnumpy(), saved["output"],
                               rtol=1e-5, atol=1e-6)


# --- the family's blocks -----------------------------------------------------------------

BLOCK_CLASSES = [BasicBlockV1, BottleneckV1, BasicBlockV2, BottleneckV2]


def _block_input(in_channels, size=6, seed=3):
    return mx.nd.array(np.random.RandomState(seed).normal(size=(2, in_channels, size, size)))


@pytest.mark.parametrize("block", BLOCK_CLASSES)
def test_v1_blocks_end_with_relu_v2_blocks_do_not(block):
    blk = block(16, 16 // block.expansion)
    blk.initialize(mx.init.Xavier())
    out = blk(_block_input(16)).asnumpy()
    assert out.shape == (2, 16, 6, 6)
    if block.version == 1:
        assert out.min() >= 0
    else:
        assert out.min() < 0


@pytest.mark.parametrize("block", BLOCK_CLASSES)
@pytest.mark.parametrize("hybridize", [False, True])
def test_zero_pad_shortcut_with_zero_init_block(block, hybridize):
    """With a zero last gamma the residual branch is 0: the block is its shortcut (option A)."""
    blk = block(4, 8 // block.expansion, stride=2, shortcut="A", zero_init_last_bn=True)
    blk.initialize(mx.init.Xavier())
    if hybridize:
        blk.hybridize()
    x = _block_input(4, size=5)
    expected = np.concatenate([x.asnumpy()[:, :, ::2, ::2], np.zeros((2, 4, 3, 3))], axis=1)
    if block.version == 1:
        expected = np.maximum(expected, 0)
    with autograd.record():  # training mode: batch statistics
        train = blk(x)
    for out in (blk(x), train):
        np.testing.assert_allclose(out.asnumpy(), expected, atol=1e-6)


@pytest.mark.parametrize("block", BLOCK_CLASSES)
def test_zero_init_makes_identity_blocks_and_plain_blocks_zero(block):
    x = _block_input(8)
    relu = block.version == 1
    for shortcut, expected in [("B", np.maximum(x.asnumpy(), 0) if relu else x.asnumpy()),
                               (None, np.zeros(x.shape))]:
        blk = block(8, 8 // block.expansion, shortcut=shortcut, zero_init_last_bn=True)
        blk.initialize(mx.init.Xavier())
        np.testing.assert_allclose(blk(x).asnumpy(), expected, atol=1e-6)


def test_stride_in_1x1_moves_the_stride():
    x = _block_input(16, size=8)
    shapes = {}
    for flag in (False, True):
        blk = BottleneckV1(16, 8, stride=2, stride_in_1x1=flag)
        blk.initialize()
        strides = [conv._kwargs["stride"] for conv in blk.convs]
        assert strides == ([(2, 2), (1, 1), (1, 1)] if flag else [(1, 1), (2, 2), (1, 1)])
        shapes[flag] = (blk(x).shape, count_parameters(blk))
    assert shapes[False] == shapes[True]
    assert shapes[True][0] == (2, 32, 4, 4)


def test_make_stage_projects_only_the_first_block():
    stage = make_stage(BottleneckV1, 64, 64, 3, stride=1, shortcut="B")
    assert [b.shortcut is not None for b in stage] == [True, False, False]
    stage = make_stage(BasicBlockV1, 64, 64, 2, stride=1, shortcut="B")
    assert [b.shortcut is not None for b in stage] == [False, False]
    stage = make_stage(BasicBlockV1, 64, 64, 2, stride=1, shortcut="C")
    assert [b.shortcut is not None for b in stage] == [True, True]


def test_grouped_convolution_keeps_the_groups_apart():
    """An input change in the first group's channels moves only that group's outputs."""
    blk = BottleneckV1(8, 8, groups=4, base_width=16, shortcut=None)  # width 8: groups of 2
    blk.initialize(mx.init.Xavier())
    x = _block_input(8, size=5).asnumpy()
    inner = lambda v: blk.conv2(mx.nd.array(v)).asnumpy()  # noqa: E731
    y = x[:, :8].copy()
    y2 = y.copy()
    y2[:, :2] += 1.0  # the first group's two channels
    moved = np.abs(inner(y2) - inner(y)).max(axis=(0, 2, 3))
    assert (moved[:2] > 0).all() and not moved[2:].any()
