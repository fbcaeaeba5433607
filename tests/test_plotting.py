"""Figures: live curves, comparisons, block diagrams, layer responses."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.image
import numpy as np
import pytest

import mxnet as mx
from mxnet import gluon, init

from gluon_resnet import chapter_resnet18, load_data_fashion_mnist, train_ch5
from gluon_resnet.blocks import BasicBlockV1, BasicBlockV2, BottleneckV1, BottleneckV2
from gluon_resnet.callbacks import LiveCurves
from gluon_resnet.plotting import (layer_sequence, plot_blocks, plot_curves,
                                   plot_error_comparison, plot_layer_responses)

from helpers import needs_data


def _png(path):
    """The saved image as an array; fails on a missing or blank (single-colour) image."""
    assert os.path.getsize(path) > 1000
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01, "%s is blank" % path
    return img


# --- block diagrams --------------------------------------------------------------------


def test_layer_sequences_follow_the_forward_order():
    main, shortcut = layer_sequence(BasicBlockV1(64, 128, stride=2))
    assert main == ["conv 3x3, 128, /2", "BN", "ReLU", "conv 3x3, 128", "BN", "add", "ReLU"]
    assert shortcut == ["conv 1x1, 128, /2", "BN"]
    main, shortcut = layer_sequence(BasicBlockV2(64, 64))
    assert main == ["BN", "ReLU", "conv 3x3, 64", "BN", "ReLU", "conv 3x3, 64", "add"]
    assert shortcut == []
    main, shortcut = layer_sequence(BottleneckV1(256, 64))
    assert [m for m in main if m.startswith("conv")] == ["conv 1x1, 64", "conv 3x3, 64",
                                                         "conv 1x1, 256"]
    assert layer_sequence(BottleneckV2(64, 64, stride=2))[1] == ["conv 1x1, 256, /2"]
    assert layer_sequence(BasicBlockV1(16, 32, stride=2, shortcut="A"))[1] == ["zero-pad +16, /2"]
    main, shortcut = layer_sequence(BasicBlockV1(16, 16, shortcut=None))
    assert shortcut is None and "add" not in main and main[-1] == "ReLU"


def test_layer_sequence_counts_match_the_block():
    for block in (BasicBlockV1(64, 64), BottleneckV1(64, 32, stride=2), BottleneckV2(128, 32)):
        main, shortcut = layer_sequence(block)
        convs = [m for m in main if m.startswith("conv")]
        assert len(convs) == len(block.convs) and main.count("BN") == len(block.bns)


def test_plot_blocks_draws_every_block(tmp_path):
    path = str(tmp_path / "blocks.png")
    fig = plot_blocks([BasicBlockV1(64, 64), BottleneckV1(256, 64, stride=2),
                       BasicBlockV1(16, 16, shortcut=None)], ["basic", "bottleneck", "plain"],
                      path=path)
    assert len(fig.axes) == 3 and [ax.get_title() for ax in fig.axes] == ["basic", "bottleneck",
                                                                          "plain"]
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert "conv 1x1, 256" in texts and "+" in texts and any("shortcut" in t for t in texts)
    _png(path)


# --- curves ----------------------------------------------------------------------------


def test_plot_curves_puts_losses_left_and_accuracies_right(tmp_path):
    series = {"train loss": ([0.5, 1], [1.2, 0.6]), "train acc": ([0.5, 1], [0.6, 0.8]),
              "test acc": ([1], [0.82])}
    fig = plot_curves(series, path=str(tmp_path / "c.png"), xlim=(0, 3))
    left, right = fig.axes
    assert [artist.get_label() for artist in left.get_lines()] == ["train loss"]
    assert [artist.get_label() for artist in right.get_lines()] == ["train acc", "test acc"]
    assert left.get_xlim() == (0, 3) and right.get_ylim() == (0, 1)
    _png(tmp_path / "c.png")


def test_plot_error_comparison_draws_errors_in_percent(tmp_path):
    def hist(accs):
        return [{"epoch": i + 1, "train_acc": a, "test_acc": a - 0.05} for i, a in enumerate(accs)]
    fig = plot_error_comparison({"plain-20": hist([0.8, 0.9]), "plain-56": hist([0.7, 0.85])},
                                path=str(tmp_path / "e.png"))
    train_ax, test_ax = fig.axes
    y = train_ax.get_lines()[1].get_ydata()
    np.testing.assert_allclose(y, [30, 15])
    np.testing.assert_allclose(test_ax.get_lines()[0].get_ydata(), [25, 15])
    assert train_ax.get_title() == "training error" and test_ax.get_title() == "test error"
    _png(tmp_path / "e.png")
    fig = plot_error_comparison({"a": hist(np.linspace(0.5, 0.9, 20))})
    for ax in fig.axes:  # whole epochs only, however many there are
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 20]
        assert len(ticks) > 2 and all(float(t).is_integer() for t in ticks), ticks


def test_live_curves_rejects_a_bad_interval():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="every"):
            LiveCurves(every=bad)


@needs_data
@pytest.mark.slow
def test_live_curves_follow_training_and_save_png(tmp_path):
    train_iter, test_iter = load_data_fashion_mnist(100, limit=600, test_limit=200)
    net = chapter_resnet18()
    net.initialize(init.Xavier())
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    live = LiveCurves(every=2, path=str(tmp_path / "live.png"))
    history = train_ch5(net, train_iter, test_iter, 100, trainer, mx.cpu(), 2, callbacks=[live])
    xs, ys = live.series["train loss"]
    # 6 batches per epoch: points after batches 2 and 4, then the epoch's mean.
    np.testing.assert_allclose(xs, [1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    assert ys[2] == pytest.approx(history[0]["loss"]) and ys[5] == pytest.approx(history[1]["loss"])
    assert live.series["test acc"] == ([1, 2], [h["test_acc"] for h in history])
    assert all(0 <= a <= 1 for a in live.series["train acc"][1])
    _png(tmp_path / "live.png")


def test_plot_history_draws_the_three_curves_per_epoch(tmp_path):
    from gluon_resnet.plotting import plot_history

    history = [{"epoch": e, "loss": 1.0 / e, "train_acc": 0.7 + 0.05 * e,
                "test_acc": 0.68 + 0.05 * e}
               for e in (1, 2, 3)]
    fig = plot_history(history, path=str(tmp_path / "h.png"), title="run")
    left, right = fig.axes
    np.testing.assert_allclose(left.get_lines()[0].get_ydata(), [1, 0.5, 1 / 3])
    assert [artist.get_label() for artist in right.get_lines()] == ["train acc", "test acc"]
    assert list(left.get_xticks()) == [1, 2, 3] and left.get_title() == "run"
    _png(tmp_path / "h.png")


def test_plot_layer_responses_draws_layers_in_order_and_sorted(tmp_path):
    responses = {"plain-20": [3.0, 1.0, 2.0], "ResNet-20": [0.5, 2.5, 1.5, 1.0]}
    fig = plot_layer_responses(responses, path=str(tmp_path / "r.png"))
    top, bottom = fig.axes
    np.testing.assert_allclose(top.get_lines()[1].get_ydata(), [0.5, 2.5, 1.5, 1.0])
    np.testing.assert_allclose(bottom.get_lines()[0].get_ydata(), [3.0, 2.0, 1.0])
    assert top.get_lines()[0].get_linestyle() == "--"  # plain networks dashed
    assert top.get_lines()[1].get_linestyle() == "-"
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 4]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    _png(tmp_path / "r.png")


def test_the_curve_plotter_leaves_no_figure_open(tmp_path):
    # One figure per epoch left in pyplot's keeping piled up in long runs (matplotlib's
    # "More than 20 figures" warning) and showed every epoch's curves under a notebook cell.
    import matplotlib.pyplot as plt

    from gluon_resnet.callbacks import CurvePlotter

    class Run:
        history = []

    before = set(plt.get_fignums())
    plotter = CurvePlotter(str(tmp_path / "curves.png"), title="run")
    for epoch in range(1, 4):
        Run.history.append({"epoch": epoch, "loss": 1.0 / epoch, "train_acc": 0.5,
                            "test_acc": 0.4 + 0.1 * epoch})
        plotter.after_epoch(Run)
        assert (tmp_path / "curves.png").stat().st_size > 0
    assert set(plt.get_fignums()) == before
