"""Recipes and their parts: one-cycle schedule, label smoothing, augmentation."""

import os

import numpy as np
import pytest

import mxnet as mx

from gluon_resnet.callbacks import OneCycleSchedule
from gluon_resnet.cli import build_parser
from gluon_resnet.data import FashionMNISTLoader
from gluon_resnet.experiment import RECIPES, RunError, recipe_config, run_training
from gluon_resnet.training import LabelSmoothingLoss

from helpers import DATA_DIR


def test_cli_knows_every_recipe():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    recipe = next(a for a in train._actions if a.dest == "recipe")
    assert tuple(recipe.choices) == tuple(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
@pytest.mark.slow
def test_recipe_is_valid_and_trains_a_few_batches(name, tmp_path):
    if not os.path.isdir(DATA_DIR):
        pytest.skip("Fashion-MNIST is not installed")
    # fp32: bf16 AMP would switch this whole test process to bf16 (see test_precision.py).
    config = recipe_config(name, limit=200, epochs=1, batch_size=50,
                           precision="fp32").validate()
    assert config.recipe == name
    history, out = run_training(config, out=str(tmp_path / name), quiet=True)
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    assert os.path.exists(os.path.join(out, "checkpoint.ckpt"))


def test_unknown_recipe():
    with pytest.raises(RunError, match="fast"):
        recipe_config("fastest")


def test_one_cycle_rises_then_falls():
    sched = OneCycleSchedule(1.0, warmup=0.25, div=10, final_div=1000)
    rates = [sched.rate(s, 100) for s in range(100)]
    peak = int(np.argmax(rates))
    assert rates[0] == pytest.approx(0.1) and rates[peak] == pytest.approx(1.0)
    assert peak == 25 and rates[-1] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(rates[:peak], rates[1:peak + 1]))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:]))


def test_label_smoothing_loss():
    pred = mx.nd.random.normal(shape=(6, 10))
    label = mx.nd.array([0, 1, 2, 3, 4, 9])
    plain = mx.gluon.loss.SoftmaxCrossEntropyLoss()(pred, label).asnumpy()
    np.testing.assert_allclose(LabelSmoothingLoss(0.0)(pred, label).asnumpy(), plain, rtol=1e-5)
    smooth = LabelSmoothingLoss(0.1)(pred, label).asnumpy()
    logp = mx.nd.log_softmax(pred).asnumpy()
    expected = -(0.9 * logp[np.arange(6), label.asnumpy().astype(int)] + 0.1 * logp.mean(axis=1))
    np.testing.assert_allclose(smooth, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="smoothing"):
        LabelSmoothingLoss(1.0)


def test_augmentation_flips_and_shifts_exactly_and_reproducibly():
    images = np.zeros((64, 8, 8), np.uint8)
    images[:, 2, 1] = 255
    loader = FashionMNISTLoader(images, np.zeros(64, int), 64, augment=True, max_shift=1, seed=5)
    first = next(iter(loader))[0].asnumpy()
    loader.epoch = 0
    again = next(iter(loader))[0].asnumpy()
    np.testing.assert_array_equal(first, again)
    positions = set()
    for x in first:
        hot = np.argwhere(x[0] > 0.99)
        assert len(hot) == 1 and np.isclose(x.sum(), 1.0, atol=1e-4)  # moved, not blurred
        positions.add(tuple(hot[0]))
    rows = {r for r, _ in positions}
    cols = {c for _, c in positions}
    assert rows == {1, 2, 3} and cols == {0, 1, 2, 5, 6, 7}  # shifted by -1..1, some flipped
    assert not np.array_equal(first, next(iter(loader))[0].asnumpy())  # a new epoch, new draws


def test_max_shift_zero_flips_real_images_only():
    if not os.path.isdir(DATA_DIR):
        pytest.skip("Fashion-MNIST is not installed")
    from gluon_resnet import load_data_fashion_mnist

    train_iter, _ = load_data_fashion_mnist(64, limit=200, shuffle=False, augment=True,
                                            max_shift=0)
    assert train_iter.max_shift == 0
    plain_iter, _ = load_data_fashion_mnist(64, limit=200, shuffle=False)
    X, plain = next(iter(train_iter))[0].asnumpy(), next(iter(plain_iter))[0].asnumpy()
    same = [np.allclose(a, b, atol=1e-5) for a, b in zip(X, plain)]
    mirrored = [np.allclose(a, b[:, :, ::-1], atol=1e-5) for a, b in zip(X, plain)]
    assert all(s or m for s, m in zip(same, mirrored))  # never shifted
    assert 10 < sum(mirrored) < 54  # about half flipped


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_max_shift_must_be_a_non_negative_integer(bad):
    with pytest.raises(ValueError, match="max_shift"):
        FashionMNISTLoader(np.zeros((4, 8, 8), np.uint8), np.zeros(4, int), 2, augment=True,
                           max_shift=bad)
    with pytest.raises(RunError, match="max_shift"):
        recipe_config("best", max_shift=bad).validate()


def test_best_recipe_reaches_the_loader_with_its_shift():
    if not os.path.isdir(DATA_DIR):
        pytest.skip("Fashion-MNIST is not installed")
    from gluon_resnet.experiment import build_data

    config = recipe_config("best", limit=100)
    train_iter, test_iter = build_data(config)
    assert train_iter.augment and train_iter.max_shift == config.max_shift == RECIPES["best"][
        "max_shift"]
    assert not test_iter.augment


def test_flip_evaluation_adds_the_mirror_images_softmax():
    from mxnet import gluon
    from gluon_resnet import evaluate_accuracy

    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Flatten(), gluon.nn.Dense(3))
    net.initialize(mx.init.Normal(1.0))
    rng = np.random.RandomState(0)
    X = mx.nd.array(rng.uniform(size=(40, 1, 4, 4)))
    y = mx.nd.array(rng.randint(0, 3, size=40))
    both = net(X).softmax(axis=1) + net(X.flip(axis=3)).softmax(axis=1)
    expected = float((both.argmax(axis=1) == y).mean().asscalar())
    plain = float((net(X).argmax(axis=1) == y).mean().asscalar())
    batches = [(X[:25], y[:25]), (X[25:], y[25:])]
    assert evaluate_accuracy(batches, net, flip=True) == pytest.approx(expected)
    assert evaluate_accuracy(batches, net) == pytest.approx(plain)
    assert expected != plain  # the mirror images change some decisions here


def test_the_fast_recipe_uses_the_amx_friendly_compact_network():
    assert RECIPES["fast"]["model"] == "compact_resnet8_w32"


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


def test_random_erasing_blacks_out_one_rectangle_of_the_drawn_size():
    images = np.full((200, 12, 10), 255, np.uint8)
    loader = FashionMNISTLoader(images, np.zeros(200, int), 200, erase=0.5, seed=7)
    boxes = loader.erasing(0)
    X = next(iter(loader))[0].asnumpy()[:, 0]
    erased = boxes[:, 2] > 0
    assert 70 < erased.sum() < 130  # about half, at probability 0.5
    for x, (top, left, h, w) in zip(X, boxes):
        expected = np.ones((12, 10), np.float32)
        expected[top:top + h, left:left + w] = 0
        np.testing.assert_array_equal(x, expected)
    area = boxes[erased, 2] * boxes[erased, 3] / 120.0
    assert area.min() >= 0.01 and area.max() <= 0.5  # 2-40% of the image, after rounding
    assert (boxes[erased, 0] + boxes[erased, 2] <= 12).all()
    assert (boxes[erased, 1] + boxes[erased, 3] <= 10).all()
    loader.epoch = 0
    np.testing.assert_array_equal(next(iter(loader))[0].asnumpy()[:, 0], X)  # reproducible
    assert not np.array_equal(loader.erasing(1), boxes)  # a new epoch, new rectangles
    # Its own stream: turning erasing on leaves the flips and shifts as they were.
    flips = FashionMNISTLoader(images, np.zeros(200, int), 200, augment=True, seed=7)
    both = FashionMNISTLoader(images, np.zeros(200, int), 200, augment=True, seed=7, erase=0.5)
    np.testing.assert_array_equal(flips.augmentation(0), both.augmentation(0))


def test_erasing_shards_erase_as_one_process():
    images = np.full((60, 8, 8), 255, np.uint8)
    whole = FashionMNISTLoader(images, np.zeros(60, int), 10, shuffle=True, seed=3, erase=0.7)
    by_example = dict(zip(whole.indices(2), map(tuple, whole.erasing(2))))
    for r in range(2):
        shard = FashionMNISTLoader(images, np.zeros(60, int), 5, shuffle=True, seed=3,
                                   erase=0.7, num_parts=2, part_index=r)
        assert [by_example[i] for i in shard.indices(2)] == list(map(tuple, shard.erasing(2)))


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half"])
def test_erase_must_be_a_probability(bad):
    for value in (bad, None):
        with pytest.raises(ValueError, match=r"FashionMNISTLoader: erase must be a number in "
                                             r"\[0, 1\]"):
            FashionMNISTLoader(np.zeros((4, 8, 8), np.uint8), np.zeros(4, int), 2, erase=value)
    with pytest.raises(RunError, match="erase"):
        recipe_config("fast", erase=bad).validate()


def test_erase_option_reaches_the_loader():
    if not os.path.isdir(DATA_DIR):
        pytest.skip("Fashion-MNIST is not installed")
    from gluon_resnet.experiment import build_data

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    args = train.parse_args(["--erase", "0.25", "--limit", "100"])
    assert args.erase == 0.25
    train_iter, test_iter = build_data(recipe_config("fast", erase=0.25, limit=100))
    assert train_iter.erase == 0.25 and test_iter.erase == 0
    with pytest.raises(SystemExit):
        train.parse_args(["--erase", "2"])
