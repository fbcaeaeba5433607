"""summary: the shape table's multiply-accumulates, against counts made by hand."""

import pytest

import mxnet as mx
from mxnet.gluon import nn

from gluon_resnet.cli import main
from gluon_resnet.summary import format_summary, summarize


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
