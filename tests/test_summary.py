"""summary.py: multiply-accumulates against published figures and against counts made by hand
(the shape table's column), and each 3x3 layer's response."""

import pytest

import mxnet as mx
from mxnet import init
from mxnet.gluon import nn

from gluon_resnet import chapter_resnet18, get_model
from gluon_resnet.cli import main
from gluon_resnet.summary import count_flops, format_summary, layer_responses, summarize


@pytest.mark.parametrize("name, shape, gmacs", [
    ("chapter_resnet18", (1, 1, 96, 96), 0.3187),   # 0.64 GFLOP per inference image
    ("resnet18_v1", (1, 3, 224, 224), 1.814),       # torchvision: 1.81
    ("resnet50_v1", (1, 3, 224, 224), 4.089),       # torchvision: 4.09
    ("cifar_resnet20_v1", (1, 3, 32, 32), 0.04055),  # about 41 M in the literature
])
def test_count_flops_matches_published_figures(name, shape, gmacs):
    counted = count_flops(get_model(name), shape)
    assert counted["flops"] == 2 * counted["macs"]
    assert abs(counted["macs"] / 1e9 - gmacs) / gmacs < 0.002


def test_count_flops_scales_with_the_input_and_refuses_hybridized_nets():
    small = count_flops(chapter_resnet18(), (1, 1, 96, 96))["macs"]
    large = count_flops(chapter_resnet18(), (1, 1, 192, 192))["macs"]
    assert 3.9 < large / small < 4.01  # convolutions scale with the area; the dense layer does not
    net = chapter_resnet18()
    net.initialize()
    net.hybridize()
    with pytest.raises(ValueError, match="not hybridized"):
        count_flops(net, (1, 1, 96, 96))
    with pytest.raises(ValueError, match=r"\(1, C, H, W\)"):
        count_flops(chapter_resnet18(), (2, 1, 96, 96))


@pytest.mark.parametrize("name, layers", [("cifar_resnet20_v1", 19), ("cifar_plain20", 19),
                                          ("cifar_plain56", 55), ("compact_resnet9", 8)])
def test_layer_responses_has_one_value_per_3x3_layer(name, layers):
    net = get_model(name)
    net.initialize(init.Xavier())
    stds = layer_responses(net, mx.nd.random.uniform(shape=(4, 1, 28, 28)))
    assert len(stds) == layers and all(s > 0 for s in stds)


def test_layer_responses_measure_after_bn_in_forward_order():
    net = get_model("cifar_resnet20_v1")
    net.initialize(init.Xavier())
    X = mx.nd.random.uniform(shape=(8, 1, 28, 28))
    net(X)  # BN statistics exist; inference mode uses the running ones
    stage = net.features[3]  # conv, bn, relu, stage1, ...
    second_unit_last_bn = stage[1].bns[1]
    second_unit_last_bn.gamma.set_data(mx.nd.zeros_like(second_unit_last_bn.gamma.data()))
    second_unit_last_bn.beta.set_data(mx.nd.zeros_like(second_unit_last_bn.beta.data()))
    stds = layer_responses(net, X)
    # stem (1), unit 1 (2, 3), unit 2 (4, 5): the zeroed BN is the fifth 3x3 layer.
    assert stds[4] == 0 and all(s > 0 for i, s in enumerate(stds) if i != 4)
    stem = net.features[1](net.features[0](X)).asnumpy()
    assert stds[0] == pytest.approx(float(stem.std()), rel=1e-6)


def test_layer_responses_refuses_hybridized_and_pre_activation_networks():
    net = get_model("cifar_resnet20_v1")
    net.initialize()
    net.hybridize()
    with pytest.raises(ValueError, match="not hybridized"):
        layer_responses(net, mx.nd.zeros((1, 1, 28, 28)))
    v2 = get_model("cifar_resnet20_v2")
    v2.initialize()
    with pytest.raises(ValueError, match="pre-activation"):
        layer_responses(v2, mx.nd.zeros((1, 1, 28, 28)))


def _small_net():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, kernel_size=3, padding=1, in_channels=3),  # (1, 8, 10, 10)
            nn.Conv2D(4, kernel_size=3, strides=2, groups=2, in_channels=8),  # (1, 4, 4, 4)
            nn.GlobalAvgPool2D(), nn.Dense(5))  # (1, 4, 1, 1): 4 inputs
    net.initialize()
    return net


def test_each_layer_counts_its_multiply_accumulates():
    # By hand: every output value of a convolution takes (input channels per group) x kh x kw
    # multiply-accumulates; every output of a dense layer one per input.
    conv = 8 * 10 * 10 * (3 * 3 * 3)     # 21,600
    grouped = 4 * 4 * 4 * (4 * 3 * 3)    # 2,304: each group sees 8 / 2 = 4 input channels
    dense = 5 * 4                        # 20
    rows = summarize(_small_net(), (1, 3, 10, 10))
    assert [r["macs"] for r in rows] == [conv, grouped, 0, dense]
    table = format_summary(rows).splitlines()
    assert table[0].split()[-1] == "MACs"
    assert table[-1].split()[-1] == format(conv + grouped + dense, ",")


def test_a_batch_counts_per_image():
    rows = summarize(_small_net(), (4, 3, 10, 10))
    assert rows[0]["macs"] == 8 * 10 * 10 * 27


def test_a_hybridized_layer_shows_no_count():
    net = _small_net()
    net[0].hybridize()
    net(mx.nd.zeros((1, 3, 10, 10)))
    rows = summarize(net, (1, 3, 10, 10))
    assert rows[0]["macs"] is None and rows[1]["macs"] == 2304
    assert format_summary(rows).splitlines()[-1].split()[-1] == "-"


@pytest.mark.slow
def test_the_shapes_command_prints_the_macs_column(capsys):
    assert main(["shapes", "--model", "compact_resnet8", "--size", "28"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-1] == "MACs"
    # compact_resnet8's stem: 48 filters of 1 x 3 x 3 over a 14 x 14 output.
    assert lines[2].split()[-1] == format(48 * 14 * 14 * 9, ",")
