"""The model registry and the ResNet family: every registered model, parameter counts,
golden outputs, options; get_model's errors, and no model a test registers stays in it.

Golden outputs
--------------
``tests/golden/<model>.json`` holds a model's output for a fixed input (see
``goldens.py``).  The tests only compare with them.  After an intended change to a
network, write them again with::

    python tests/regen_golden.py

and commit the new files with the change, saying why the outputs moved.
"""

import os
import types

import numpy as np
import pytest

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from gluon_resnet.blocks import (BasicBlockV1, BasicBlockV2, BottleneckV1, BottleneckV2,
                                 SqueezeExcite, ZeroPadShortcut, make_shortcut, make_stage)
from gluon_resnet import models
from gluon_resnet.cli import main
from gluon_resnet.config import RECIPES, TrainConfig
from gluon_resnet.models import (CIFAR_DEPTHS, CIFAR_PLAIN_DEPTHS, RESNET_SPEC, RESNET_VARIANTS,
                                 WRN_CONFIGS, ResNet, cifar_resnet, get_model, get_resnet,
                                 list_models, model_description, model_input_channels,
                                 plain_resnet, register_model, resnet_variant, wrn)
from gluon_resnet.plotting import layer_sequence
from gluon_resnet.summary import count_parameters, top_level_layers

from goldens import GOLDEN_MODELS, REGEN_COMMAND, REGEN_ENV, golden_output, read_golden

# torchvision's counts (3-channel input, 1000 classes) and the CIFAR paper's
# (option A, 10 classes): trainable parameters only, BN running stats excluded.
IMAGENET_COUNTS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160,
                   152: 60_192_808}
CIFAR_COUNTS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
# The later family, same convention (3-channel input, 1000 classes, trainable only).
# ResNeXt and wide ResNets: torchvision's model documentation (also in REFERENCE.md).
# ResNet-C/D: timm's resnet50c and resnet50d (25,576,264), resnet18d (11,708,744),
# resnet34d (21,816,904), resnet101c/resnet101d (44,568,392); GluonCV's resnet50_v1c/_v1d
# are the same networks.  SE-ResNet-50: timm's seresnet50 (28,088,024).  Cross-checked:
# osmr/imgclsmob's model tests (resneta18 11,708,744, resneta50b 25,576,264, resneta101b
# 44,568,392, seresnet50 28,088,024) and jax_resnet's tests (ResNet-D counts, citing
# fast.ai's xresnet docs).
VARIANT_COUNTS = {"resnext50_32x4d": 25_028_904, "resnext101_32x8d": 88_791_336,
                  "wide_resnet50_2": 68_883_240, "wide_resnet101_2": 126_886_696,
                  "resnet50_v1c": 25_576_264, "resnet18_v1d": 11_708_744,
                  "resnet50_v1d": 25_576_264, "seresnet50": 28_088_024}
# Wide ResNets on CIFAR (REFERENCE.md; 10 classes): WRN-16-8 is not registered.
WRN_COUNTS = {(16, 4): 2_748_890, (28, 10): 36_479_194, (40, 4): 8_949_210,
              (16, 8): 10_961_370}


def _input(channels, size=32, batch=2, seed=0):
    rng = np.random.RandomState(seed)
    return mx.nd.array(rng.uniform(-1, 1, size=(batch, channels, size, size)))


def _built(name, seed=0, **kwargs):
    """``name`` with 10 classes, Xavier-initialised from ``seed``, and its fixed input."""
    mx.random.seed(seed)
    net = get_model(name, num_classes=10, **kwargs)
    net.initialize(mx.init.Xavier())
    x = _input(model_input_channels(name))
    return net, x, net(x).asnumpy()


def _close(actual, expected, rtol=1e-4):
    """Equal up to ``rtol`` relative to the largest output (float32 kernels differ by CPU)."""
    scale = float(np.abs(expected).max()) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def _initialised_count(net, **kwargs):
    net.initialize(mx.init.Zero())
    return count_parameters(net, **kwargs)


# --- every registered model ----------------------------------------------------


@pytest.fixture(scope="module", params=list_models())
def model(request):
    """One initialised network per registered name, shared by the four tests below."""
    net, x, out = _built(request.param)
    return types.SimpleNamespace(name=request.param, net=net, x=x, out=out)


def test_output_shape(model):
    assert model.out.shape == (2, 10)
    assert np.isfinite(model.out).all()


def test_hybridized_equals_imperative(model):
    model.net.hybridize()
    _close(model.net(model.x).asnumpy(), model.out)


@pytest.mark.filterwarnings("ignore:Cannot decide type")  # SymbolBlock's input has no dtype
def test_export_round_trip(model, tmp_path):
    model.net.hybridize()
    model.net(model.x)
    path = str(tmp_path / model.name)
    model.net.export(path)
    loaded = nn.SymbolBlock.imports(path + "-symbol.json", ["data"], path + "-0000.params")
    _close(loaded(model.x).asnumpy(), model.out)


def _gradients(net, x):
    labels = mx.nd.arange(x.shape[0], dtype=x.dtype)
    with autograd.record():
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(net(x), labels)
    loss.backward()
    return {n: p.grad().asnumpy() for n, p in net.collect_params().items()
            if p.grad_req != "null"}


def test_backward_gives_finite_gradients(model):
    # A batch of 4: BN in training mode over a 1x1 map of 2 samples is degenerate.
    model.net.hybridize(active=False)
    grads = _gradients(model.net, _input(model_input_channels(model.name), batch=4, seed=1))
    assert grads
    assert all(np.isfinite(g).all() for g in grads.values())
    dead = [n for n, g in grads.items() if not g.any()]
    assert not dead, "parameters without gradient: %s" % dead


@pytest.mark.parametrize("name", ["chapter_resnet18", "resnet18_v2", "resnet50_v1", "plain18",
                                  "cifar_resnet20_v1", "cifar_resnet20_v2"])
def test_hybridized_gradients_equal_imperative(name):
    """In float64, where both modes run the same kernels, the gradients agree.

    (In float32, oneDNN's kernels differ between the modes and deep
    pre-activation nets in training mode amplify the rounding to ~1%.)
    """
    mx.random.seed(0)
    net = get_model(name, num_classes=10)
    net.initialize(mx.init.Xavier())
    x = _input(model_input_channels(name), batch=4, seed=1)
    net(x)
    net.cast("float64")
    x = x.astype("float64")
    imperative = _gradients(net, x)
    net.hybridize()
    hybrid = _gradients(net, x)
    for n, g in imperative.items():
        np.testing.assert_allclose(hybrid[n], g, rtol=1e-9, atol=1e-12, err_msg=n)


# --- parameter counts --------------------------------------------------------------


@pytest.mark.parametrize("depth", sorted(IMAGENET_COUNTS))
def test_imagenet_parameter_counts_match_torchvision(depth):
    net = get_model("resnet%d_v1" % depth, in_channels=3)
    assert _initialised_count(net, trainable_only=True) == IMAGENET_COUNTS[depth]
    # The default count also has each BN's running mean and variance.
    bn_channels = sum(p.shape[0] for n, p in net.collect_params().items()
                      if n.endswith("running_mean"))
    assert count_parameters(net) == IMAGENET_COUNTS[depth] + 2 * bn_channels


@pytest.mark.parametrize("depth", CIFAR_DEPTHS)
def test_cifar_parameter_counts_match_the_paper(depth):
    net = get_model("cifar_resnet%d_v1" % depth, in_channels=3)
    assert _initialised_count(net, trainable_only=True) == CIFAR_COUNTS[depth]


def test_every_variant_has_a_published_count():
    assert sorted(VARIANT_COUNTS) == sorted(RESNET_VARIANTS)


def _declared_count(net):
    """Trainable parameters of a network built with ``in_channels``, without allocating them.

    Every shape is known at construction then, so the 88 M and 127 M parameter
    networks are counted without initialising (half a gigabyte each).
    """
    shapes = [p.shape for p in net.collect_params().values()]
    assert all(shape and all(shape) for shape in shapes), "a shape is still unknown"
    return count_parameters(net, trainable_only=True)


@pytest.mark.parametrize("name", sorted(VARIANT_COUNTS))
def test_variant_parameter_counts_match_torchvision_and_timm(name):
    assert _declared_count(get_model(name, in_channels=3)) == VARIANT_COUNTS[name]


def test_declared_count_equals_the_initialised_count():
    assert _declared_count(get_model("resnet18_v1d", in_channels=3)) == \
        _trainable("resnet18_v1d") == VARIANT_COUNTS["resnet18_v1d"]


@pytest.mark.parametrize("depth, options, count", [
    (34, {"stem": "imagenet_deep", "avg_down": True}, 21_816_904),  # timm resnet34d
    (101, {"stem": "imagenet_deep"}, 44_568_392),  # timm resnet101c
    (101, {"stem": "imagenet_deep", "avg_down": True}, 44_568_392),  # timm resnet101d
])
def test_unregistered_depths_are_options_away(depth, options, count):
    assert _declared_count(get_resnet(depth, in_channels=3, **options)) == count


@pytest.mark.parametrize("depth, k", sorted(WRN_COUNTS))
def test_wrn_parameter_counts_match_the_reference(depth, k):
    assert _declared_count(wrn(depth, k, in_channels=3)) == WRN_COUNTS[depth, k]
    if (depth, k) in WRN_CONFIGS:
        assert _declared_count(get_model("wrn%d_%d" % (depth, k), in_channels=3)) \
            == WRN_COUNTS[depth, k]


def test_counts_with_inferred_input_channels_agree():
    net = get_model("resnet18_v1")
    net.initialize()
    net(_input(3, batch=1))
    assert count_parameters(net, trainable_only=True) == IMAGENET_COUNTS[18]


def test_any_6n_plus_2_depth_builds():
    net = cifar_resnet(8)
    stages = [b for label, b in top_level_layers(net) if label.startswith("stage")]
    assert [len(s) for s in stages] == [1, 1, 1]


# --- stage shapes ----------------------------------------------------------------------


def _layer_shapes(net, x):
    rows = []
    for label, layer in top_level_layers(net):
        x = layer(x)
        rows.append((label, x.shape))
    return rows


@pytest.mark.parametrize("depth", sorted(RESNET_SPEC))
def test_stage_shapes_follow_the_table(depth):
    """Maps halve at each stage after the first; channels 64/128/256/512 x expansion."""
    net = get_resnet(depth, num_classes=10, in_channels=3)
    net.initialize()
    e = 1 if RESNET_SPEC[depth][0] == "basic" else 4
    assert _layer_shapes(net, _input(3, size=64, batch=1)) == [
        ("conv", (1, 64, 32, 32)), ("bn", (1, 64, 32, 32)), ("relu", (1, 64, 32, 32)),
        ("pool", (1, 64, 16, 16)), ("stage1", (1, 64 * e, 16, 16)),
        ("stage2", (1, 128 * e, 8, 8)), ("stage3", (1, 256 * e, 4, 4)),
        ("stage4", (1, 512 * e, 2, 2)), ("gap", (1, 512 * e, 1, 1)), ("dense", (1, 10))]


def test_v2_net_ends_with_bn_and_relu():
    labels = [label for label, _ in top_level_layers(get_resnet(18, version=2))]
    assert labels[-4:] == ["post_bn", "post_relu", "gap", "dense"]


def test_cifar_stage_shapes():
    net = cifar_resnet(20, in_channels=3)
    net.initialize()
    shapes = dict(_layer_shapes(net, _input(3, batch=1)))
    assert shapes["conv"] == (1, 16, 32, 32)
    assert [shapes["stage%d" % i] for i in (1, 2, 3)] == [
        (1, 16, 32, 32), (1, 32, 16, 16), (1, 64, 8, 8)]
    assert "pool" not in shapes


def test_shapes_command_prints_readable_stage_names(capsys):
    assert main(["shapes", "--model", "resnet50_v1", "--channels", "3"]) == 0
    out = capsys.readouterr().out
    for label, shape in [("pool", (1, 64, 56, 56)), ("stage1", (1, 256, 56, 56)),
                         ("stage2", (1, 512, 28, 28)), ("stage3", (1, 1024, 14, 14)),
                         ("stage4", (1, 2048, 7, 7)), ("dense", (1, 10))]:
        assert any(line.startswith(label + " (") and str(shape) in line
                   for line in out.splitlines()), (label, shape)


@pytest.mark.slow
def test_models_command_lists_every_model_with_its_count(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert sorted(lines) == list_models()
    assert "11,689,512" in lines["resnet18_v1"] and "269,722" in lines["cifar_resnet20_v1"]
    assert "25,028,904" in lines["resnext50_32x4d"] and "2,748,890" in lines["wrn16_4"]
    assert "trainable" in out.splitlines()[0]


# --- golden outputs --------------------------------------------------------------------


@pytest.mark.parametrize("name", GOLDEN_MODELS)
def test_golden_outputs(name):
    if os.environ.get(REGEN_ENV):
        pytest.fail("%s is set: the tests only compare with the golden files; write them with %s"
                    % (REGEN_ENV, REGEN_COMMAND))
    x, out = golden_output(name)
    np.testing.assert_allclose(golden_output(name)[1], out, rtol=1e-6, atol=1e-6)
    record = read_golden(name)
    assert record["input_shape"] == list(x.shape)
    _close(out, np.array(record["output"], dtype=np.float32))


def test_golden_outputs_depend_on_the_seed():
    """Guard: a different seed gives different outputs, so the golden test can fail."""
    assert not np.allclose(golden_output("resnet18_v1", seed=1)[1],
                           golden_output("resnet18_v1")[1])


# --- shortcuts, versions, zero init --------------------------------------------------------


def _trainable(name, **kwargs):
    return _initialised_count(get_model(name, in_channels=3, **kwargs), trainable_only=True)


@pytest.mark.parametrize("name", ["resnet18_v1", "resnet50_v1", "cifar_resnet20_v1",
                                  "cifar_resnet20_v2"])
def test_shortcut_options_order_parameter_counts(name):
    a, b, c = (_trainable(name, shortcut=s) for s in "ABC")
    assert a < b < c


def test_plain_net_lacks_only_the_projections():
    # Option B projects where a stage starts: 1x1 conv plus BN gamma and beta.
    widths = RESNET_SPEC[18][2][1:]
    projections = sum(cin * cout + 2 * cout for cin, cout in zip(widths, widths[1:]))
    assert _trainable("resnet18_v1") - _trainable("plain18") == projections == 173_824
    assert _trainable("resnet34_v1") - _trainable("plain34") == projections


def test_cifar_plain_nets_equal_the_option_a_nets_without_additions():
    # Option A has no parameters, so the plain CIFAR nets have exactly as many.
    for depth in CIFAR_PLAIN_DEPTHS:
        assert _trainable("cifar_plain%d" % depth) == _trainable("cifar_resnet%d_v1" % depth)
    blocks = [b for stage in get_model("cifar_plain20").features
              if isinstance(stage, nn.HybridSequential) for b in stage]
    assert len(blocks) == 9 and all(b.shortcut_kind is None for b in blocks)


def test_deep_stem_adds_a_full_size_layer_of_a_third_of_the_width():
    net = ResNet(BasicBlockV1, (1, 1, 1), (48, 48, 96, 192), num_classes=10, stem="deep")
    net.initialize()
    shapes = dict(_layer_shapes(net, mx.nd.zeros((2, 1, 28, 28))))
    assert shapes["conv0"] == (2, 16, 28, 28) and shapes["conv"] == (2, 48, 14, 14)
    assert [shapes["stage%d" % i] for i in (1, 2, 3)] == [
        (2, 48, 14, 14), (2, 96, 7, 7), (2, 192, 4, 4)]


def test_halve_stem_keeps_half_the_size():
    net = ResNet(BasicBlockV1, (1, 1, 1), (32, 32, 64, 128), num_classes=10, stem="halve")
    net.initialize()
    shapes = dict(_layer_shapes(net, mx.nd.zeros((2, 1, 28, 28))))
    assert shapes["conv"] == (2, 32, 14, 14) and "pool" not in shapes
    assert [shapes["stage%d" % i] for i in (1, 2, 3)] == [
        (2, 32, 14, 14), (2, 64, 7, 7), (2, 128, 4, 4)]


def test_cifar_option_a_has_no_shortcut_parameters():
    net = cifar_resnet(20, shortcut="A")
    assert not [n for n in net.collect_params() if "shortcut" in n]
    assert [n for n in cifar_resnet(20, shortcut="B").collect_params() if "shortcut" in n]


def _block_input(in_channels, size=6, seed=3):
    return mx.nd.array(np.random.RandomState(seed).normal(size=(2, in_channels, size, size)))


def test_zero_init_last_bn_sets_only_the_last_gammas():
    net = get_resnet(50, version=1, zero_init_last_bn=True, in_channels=3)
    net.initialize(mx.init.Xavier())
    blocks = [b for label, stage in top_level_layers(net) if label.startswith("stage")
              for b in stage]
    assert len(blocks) == sum(RESNET_SPEC[50][1])
    for b in blocks:
        assert isinstance(b.last_bn.gamma.init, mx.init.Zero)
        assert not b.last_bn.gamma.data().asnumpy().any()
        assert all((bn.gamma.data().asnumpy() == 1).all() for bn in b.bns[:-1])
    plain = get_resnet(50, in_channels=3)
    plain.initialize(mx.init.Xavier())
    gammas = [p.data().asnumpy() for n, p in plain.collect_params().items() if n.endswith("gamma")]
    assert all((g == 1).all() for g in gammas)


# --- the later family: ResNeXt, wide, ResNet-B/C/D, squeeze-excite, WRN ----------------


def _stage_blocks(net):
    return [list(stage) for label, stage in top_level_layers(net) if label.startswith("stage")]


def test_v1_already_strides_in_the_3x3_convolution_resnet_b():
    """He et al. 2019's ResNet-B is torchvision's ResNet and our v1: the 3x3 conv strides."""
    first = _stage_blocks(get_resnet(50))[1][0]
    assert [conv._kwargs["stride"] for conv in first.convs] == [(1, 1), (2, 2), (1, 1)]


def test_resnext_groups_the_3x3_convolution_only():
    blocks = _stage_blocks(get_model("resnext50_32x4d", in_channels=3))
    for stage, width in zip(blocks, (128, 256, 512, 1024)):
        for b in stage:
            assert [c._kwargs["num_group"] for c in b.convs] == [1, 32, 1]
            assert b.width == width and b.out_channels == width * 2
            # Each of the 32 groups sees width / 32 input channels of the 3x3 kernel.
            assert b.conv2.weight.shape == (width, width // 32, 3, 3)
    assert "conv 3x3, 256, g32, /2" in layer_sequence(blocks[1][0])[0]


def test_wide_bottleneck_doubles_the_inner_width_not_the_output():
    plain, wide = (_stage_blocks(get_model(n, in_channels=3))[3][0]
                   for n in ("resnet50_v1", "wide_resnet50_2"))
    assert (plain.width, wide.width) == (512, 1024)
    assert plain.out_channels == wide.out_channels == 2048


def test_se_sits_on_the_residual_branch_before_the_addition():
    blk = BottleneckV1(64, 16, se_reduction=16)
    main, shortcut = layer_sequence(blk)
    assert main[-4:] == ["BN", "SE, 64 -> 4 -> 64", "add", "ReLU"] and shortcut == []
    # A zero last gamma zeroes the branch, and the SE module keeps it zero.
    blk = BottleneckV1(64, 16, se_reduction=16, zero_init_last_bn=True)
    blk.initialize(mx.init.Xavier())
    x = _block_input(64)
    np.testing.assert_allclose(blk(x).asnumpy(), np.maximum(x.asnumpy(), 0), atol=1e-6)
    seresnet = get_model("seresnet50")
    assert all(b.se is not None and b.se.squeezed == b.out_channels // 16
               for stage in _stage_blocks(seresnet) for b in stage)


def test_deep_stem_and_avg_down_keep_the_stage_shapes():
    x = _input(3, size=64, batch=1)
    shapes = {}
    for name in ("resnet50_v1", "resnet50_v1c", "resnet50_v1d"):
        net = get_model(name, num_classes=10, in_channels=3)
        net.initialize()
        shapes[name] = dict(_layer_shapes(net, x))
    deep = shapes["resnet50_v1d"]
    assert [deep[k] for k in ("conv0", "conv1", "conv", "pool")] == [
        (1, 32, 32, 32), (1, 32, 32, 32), (1, 64, 32, 32), (1, 64, 16, 16)]
    stages = ["stage%d" % i for i in (1, 2, 3, 4)] + ["dense"]
    assert [deep[k] for k in stages] == [shapes["resnet50_v1"][k] for k in stages] \
        == [shapes["resnet50_v1c"][k] for k in stages]


def test_wrn_stages_widths_and_stem_without_bn():
    net = wrn(16, 4, in_channels=3)
    net.initialize()
    shapes = _layer_shapes(net, _input(3, batch=1))
    assert shapes == [("conv", (1, 16, 32, 32)), ("stage1", (1, 64, 32, 32)),
                      ("stage2", (1, 128, 16, 16)), ("stage3", (1, 256, 8, 8)),
                      ("post_bn", (1, 256, 8, 8)), ("post_relu", (1, 256, 8, 8)),
                      ("gap", (1, 256, 1, 1)), ("dense", (1, 10))]
    blocks = [b for stage in _stage_blocks(net) for b in stage]
    assert all(isinstance(b, BasicBlockV2) for b in blocks) and len(blocks) == 6
    # A 1x1 projection exactly where the shape changes: each stage's first block.
    assert [b.shortcut is not None for b in blocks] == [True, False] * 3


def test_wrn_dropout_between_the_two_convolutions():
    net = wrn(10, 2, dropout=0.3, in_channels=3)
    blk = _stage_blocks(net)[1][0]
    main, _ = layer_sequence(blk)
    assert main == ["BN", "ReLU", "conv 3x3, 64, /2", "BN", "ReLU", "dropout", "conv 3x3, 64",
                    "add"]
    net.initialize(mx.init.Xavier())
    x = _input(3, batch=4)
    assert np.array_equal(net(x).asnumpy(), net(x).asnumpy())  # prediction: no dropout
    with autograd.record():
        a, b = net(x).asnumpy(), net(x).asnumpy()
    assert not np.allclose(a, b)  # training: a fresh mask each call
    plain = wrn(10, 2, in_channels=3)
    assert "dropout" not in layer_sequence(_stage_blocks(plain)[1][0])[0]


def test_variant_options_can_be_overridden():
    net = resnet_variant("seresnet50", se_reduction=8, num_classes=10)
    assert _stage_blocks(net)[0][0].se.squeezed == 256 // 8
    assert net.prefix == "seresnet50_" and get_model("resnext50_32x4d").prefix == \
        "resnext50_32x4d_"


# --- bad inputs ------------------------------------------------------------------------


@pytest.mark.parametrize("call, words", [
    (lambda: get_model("resnet19"), ["'resnet19'", "did you mean resnet18", "list_models()"]),
    (lambda: get_resnet(19), ["18, 34, 50, 101, 152", "cifar_resnet"]),
    (lambda: cifar_resnet(21), ["6n+2", "20, 32, 44, 56, 110"]),
    (lambda: cifar_resnet(2), ["6n+2"]),
    (lambda: get_resnet(18, shortcut="D"), ["'A'", "'B'", "'C'", "None"]),
    (lambda: get_model("resnet18_v1", shortcut="D"), ["'A'", "'B'", "'C'"]),
    (lambda: get_resnet(18, version=3), ["1 (", "2 (", "3"]),
    (lambda: get_model("plain18", shortcut="C"), ["plain networks have no shortcut", "'C'"]),
    (lambda: plain_resnet(34, shortcut="B"), ["plain networks have no shortcut"]),
    (lambda: get_model("cifar_plain56", shortcut="A"), ["plain networks have no shortcut",
                                                        "cifar_resnet(56"]),
    (lambda: get_resnet(18, stem="tiny"), ["'imagenet'", "'small'"]),
    (lambda: get_model("resnet18_v1", num_classes=0), ["num_classes"]),
    (lambda: get_model("resnet18_v1", in_channels=-1), ["in_channels"]),
    (lambda: get_model("cifar_resnet20_v1", colour=True), ["cifar_resnet20_v1", "colour"]),
    (lambda: ResNet(nn.Dense, [2], [8, 8]), ["BasicBlockV1", "BottleneckV2"]),
    (lambda: ResNet(BasicBlockV1, [2, 2], [8, 8]), ["channels", "2 stages"]),
    (lambda: BasicBlockV1(0, 8), ["in_channels"]),
    (lambda: BottleneckV2(8, 0), ["channels"]),
    (lambda: BasicBlockV1(16, 8, shortcut="A"), ["'A'", "16", "8"]),
    (lambda: ZeroPadShortcut(-1), ["extra_channels"]),
    (lambda: make_stage(BasicBlockV1, 8, 8, 0), ["num_blocks"]),
    (lambda: BasicBlockV1(8, 8, groups=2), ["groups", "bottleneck", "basic blocks"]),
    (lambda: BottleneckV1(8, 8, base_width=4), ["base_width", "at least 1"]),
    (lambda: BottleneckV1(8, 8, groups=0), ["groups"]),
    (lambda: BottleneckV2(8, 8, dropout=1.0), ["dropout", "[0, 1)"]),
    (lambda: BottleneckV1(8, 8, se_reduction=0), ["se_reduction"]),
    (lambda: BasicBlockV1(8, 16, stride=2, shortcut="A", avg_down=True), ["avg_down", "'B'"]),
    (lambda: make_shortcut(None, 8, 8, 1, avg_down=True), ["avg_down", "'C'"]),
    (lambda: SqueezeExcite(0), ["channels"]),
    (lambda: wrn(17, 4), ["6n+4", "WRN-28-10"]),
    (lambda: wrn(16, 0), ["k"]),
    (lambda: resnet_variant("resnext50"), ["resnext50_32x4d", "seresnet50"]),
    (lambda: get_resnet(18, stem="deeper"), ["'imagenet_deep'", "'conv'"]),
])
def test_bad_arguments_say_what_is_allowed(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for word in words:
        assert word in str(info.value)


def test_unknown_model_on_the_command_line(capsys):
    assert main(["shapes", "--model", "resnet19_v1"]) == 2
    assert "resnet18_v1" in capsys.readouterr().err


def _broken(num_classes=10):
    return len(num_classes)  # TypeError: a bug, not a bad argument


def test_get_model_does_not_hide_bugs_as_bad_arguments(monkeypatch):
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))  # registered for this test
    register_model("test_core_broken", "a factory with a bug inside")(_broken)
    with pytest.raises(ValueError, match=r"model 'resnet18' does not accept these arguments"):
        get_model("resnet18", colour="red")
    with pytest.raises(ValueError, match=r"model 'cifar_resnet20_v1' does not accept these "
                                         r"arguments.*colour"):
        get_model("cifar_resnet20_v1", colour=True)  # its factory passes **kwargs on
    with pytest.raises(TypeError, match="has no len"):
        get_model("test_core_broken")
    assert "test_core_broken" in models.list_models()


def test_no_test_model_leaks_into_the_registry():
    assert not [m for m in models.list_models() if m.startswith("test_core")]


@pytest.mark.parametrize("name, w, count", [("compact_resnet8", 48, 690_970),
                                            ("compact_resnet8_w32", 32, 308_074)])
def test_compact_resnet8_counts(name, w, count):
    from gluon_resnet import get_model
    from gluon_resnet.summary import count_flops, count_parameters

    net = get_model(name)
    net.initialize()
    assert net(mx.nd.zeros((2, 1, 28, 28))).shape == (2, 10)
    def conv(cin, cout, k=3):
        return k * k * cin * cout

    def bn(c):
        return 2 * c

    expected = (conv(1, w) + bn(w)                                              # stem
                + 2 * (conv(w, w) + bn(w))                                      # stage 1
                + conv(w, 2 * w) + conv(2 * w, 2 * w) + 2 * bn(2 * w) + conv(w, 2 * w, 1)
                + bn(2 * w)
                + conv(2 * w, 4 * w) + conv(4 * w, 4 * w) + 2 * bn(4 * w)
                + conv(2 * w, 4 * w, 1) + bn(4 * w)
                + 4 * w * 10 + 10)                                              # dense
    assert count_parameters(net, trainable_only=True) == expected == count
    # Multiply-accumulates: each convolution's weights times its output positions.
    macs = (conv(1, w) * 14 ** 2 + 2 * conv(w, w) * 14 ** 2
            + (conv(w, 2 * w) + conv(2 * w, 2 * w) + conv(w, 2 * w, 1)) * 7 ** 2
            + (conv(2 * w, 4 * w) + conv(4 * w, 4 * w) + conv(2 * w, 4 * w, 1)) * 4 ** 2
            + 4 * w * 10)
    assert count_flops(get_model(name), (1, 1, 28, 28))["macs"] == macs


def test_compact_resnet9_is_compact_resnet8_with_a_deep_stem():
    from gluon_resnet import get_model
    from gluon_resnet.summary import count_flops, count_parameters

    assert RECIPES["best"]["model"] == "compact_resnet9"
    net8, net9 = get_model("compact_resnet8"), get_model("compact_resnet9")
    for net in (net8, net9):
        net.initialize()
        assert net(mx.nd.zeros((2, 1, 28, 28))).shape == (2, 10)
    # The extra layer: a 3x3 convolution from 1 to 16 channels and its BN; the
    # 3x3/2 convolution after it reads 16 channels instead of 1.
    extra = 9 * 1 * 16 + 2 * 16 + 9 * (16 - 1) * 48
    assert (count_parameters(net9, trainable_only=True)
            == count_parameters(net8, trainable_only=True) + extra == 697_626)
    extra_macs = 9 * 16 * 28 ** 2 + 9 * (16 - 1) * 48 * 14 ** 2
    assert (count_flops(get_model("compact_resnet9"), (1, 1, 28, 28))["macs"]
            == count_flops(get_model("compact_resnet8"), (1, 1, 28, 28))["macs"] + extra_macs)


def test_each_model_has_its_own_description_and_recipes_are_named_truly():
    """No two models share a description, and "the X recipe's network" is said of exactly
    the model recipe X trains (``config.RECIPES``)."""


    descriptions = {name: model_description(name) for name in list_models()}
    assert len(set(descriptions.values())) == len(descriptions)
    for recipe, changes in RECIPES.items():
        model = changes.get("model", TrainConfig().model)
        claimed = [name for name, text in descriptions.items()
                   if "the %s recipe's network" % recipe in text]
        assert claimed in ([model], []), (recipe, claimed)


def test_an_unknown_name_gets_the_closest_names():
    with pytest.raises(ValueError) as info:
        get_model("compact_resnet8_w23")
    message = str(info.value)
    assert "did you mean compact_resnet8_w32" in message and "list_models()" in message
    assert "resnet152_v2" not in message
