"""The current edition's names (d2l 1.x, MXNet's numpy mode) against ``d2l``'s own code.

``d2l==1.0.3`` (``from d2l import mxnet as d2l``) is the oracle, as ``d2lzh`` is
for the first edition: ``train_ch6`` prints what ``d2l.train_ch6`` prints for the
same network, data and seed; ``evaluate_accuracy_gpu`` gives what d2l's gives
(``Accumulator`` and ``Timer``: test_meters.py; the devices: test_devices.py).
The batches and loop follow the caller's mode and never switch it.
"""

import os
import re
import signal

import matplotlib

matplotlib.use("Agg")  # d2l's Animator draws with pyplot: no window in the tests

import numpy as np
import pytest

import mxnet as mx
from mxnet import init, npx
from mxnet.gluon import nn

from d2l import mxnet as d2l
from matplotlib import pyplot as plt

import gluon_resnet
from gluon_resnet import (Residual, evaluate_accuracy, evaluate_accuracy_gpu,
                          load_data_fashion_mnist, train_ch6)
from gluon_resnet.checkpoint import load_checkpoint
from gluon_resnet.events import Callback, TrainingInterrupted

from helpers import needs_data

SUMMARY = re.compile(r"^loss \d+\.\d{3}, train acc \d\.\d{3}, test acc \d\.\d{3}$")
SPEED = re.compile(r"^\d+\.\d examples/sec on cpu\(0\)$")


def _small_net():
    """A small network of the chapter's kind (convolution, BN, our ``Residual``) for 28x28."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, kernel_size=3, padding=1), nn.BatchNorm(), nn.Activation("relu"),
            nn.MaxPool2D(pool_size=2), Residual(8), Residual(16, use_1x1conv=True, strides=2),
            nn.GlobalAvgPool2D(), nn.Dense(10))
    return net


def _lines(text):
    """The printed lines, without the text d2l's Animator writes outside Jupyter."""
    return [line for line in text.splitlines() if SUMMARY.match(line) or "examples/sec" in line]


@needs_data
@pytest.mark.slow
def test_train_ch6_prints_what_d2l_prints_and_trains_the_same(numpy_mode, capsys, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = {}
    for name, train in (("d2l", d2l.train_ch6), ("ours", train_ch6)):
        # Fresh loaders, so both runs see the same shuffles: 5 batches (d2l's plot needs at
        # least 5) of a balanced subset, 2 epochs.
        train_iter, test_iter = load_data_fashion_mnist(64, limit=320, test_limit=100)
        plt.close("all")
        mx.random.seed(7)
        net = _small_net()
        net.hybridize()
        train(net, train_iter, test_iter, 2, 0.5, mx.cpu())
        runs[name] = (capsys.readouterr().out, net)
    theirs, ours = runs["d2l"][0], runs["ours"][0]
    assert SUMMARY.match(_lines(theirs)[0]) and SPEED.match(_lines(theirs)[1])
    # Exactly d2l's two lines, nothing else; outside Jupyter no figure, no window, no file.
    lines = ours.splitlines()
    assert len(lines) == 2 and SPEED.match(lines[1]), ours
    assert lines[0] == _lines(theirs)[0]
    assert plt.get_fignums() == [] and os.listdir(tmp_path) == []
    # The same loop: the same parameters at the end, not only the same three digits.
    for a, b in zip(runs["d2l"][1].collect_params().values(),
                    runs["ours"][1].collect_params().values()):
        np.testing.assert_allclose(a.data().asnumpy(), b.data().asnumpy(), rtol=1e-4, atol=1e-5)
    assert npx.is_np_array()  # the caller's mode, still on


@needs_data
@pytest.mark.slow
def test_train_ch6_keywords_checkpoint_ctrl_c_and_live_figure_in_place(tmp_path, capsys,
                                                                       monkeypatch):
    """Legacy mode too; a checkpoint and Ctrl-C safety on request; one figure redrawn in Jupyter."""
    from IPython import display

    import gluon_resnet.callbacks as callbacks

    shown = []

    class Handle:
        def update(self, image):
            shown.append(("update", image.format))

    def fake_display(image, display_id=False):
        shown.append(("display", display_id))
        return Handle()

    monkeypatch.setattr(callbacks, "in_notebook", lambda: True)
    monkeypatch.setattr(display, "display", fake_display)

    class PressCtrlC(Callback):
        def after_batch(self, learner):
            if learner.epoch == 1 and learner.batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    train_iter, test_iter = load_data_fashion_mnist(40, limit=200, test_limit=40)
    net = nn.Sequential()
    net.add(nn.Dense(16, activation="relu"), nn.Dense(10))
    path = str(tmp_path / "ch6.ckpt")
    with pytest.raises(TrainingInterrupted, match=r"in epoch 2 after batch 2") as stopped:
        train_ch6(net, train_iter, test_iter, 3, 0.1, mx.cpu(), checkpoint=path,
                  progress=False, callbacks=[PressCtrlC()])
    assert stopped.value.checkpoint == path
    assert capsys.readouterr().out == ""  # the two lines come only after the last epoch
    again = nn.Sequential()
    again.add(nn.Dense(16, activation="relu"), nn.Dense(10))
    again.initialize()
    again(mx.nd.zeros((1, 1, 28, 28)))
    meta = load_checkpoint(path, again, restore_random_state=False)
    assert (meta["epoch"], meta["batch"]) == (1, 2)
    for a, b in zip(net.collect_params().values(), again.collect_params().values()):
        np.testing.assert_array_equal(a.data().asnumpy(), b.data().asnumpy())
    # One figure, shown once, then redrawn in place (5 batches: points after 1, 2, 3, 4, the
    # first epoch's end, then after batches 1 and 2 of the second).
    assert shown[0] == ("display", True) and shown[1:] == [("update", "png")] * 6, shown
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not npx.is_np_array()


@needs_data
def test_train_ch6_checks_its_arguments():
    net = nn.Dense(10)
    train_iter, test_iter = load_data_fashion_mnist(10, limit=10, test_limit=10)
    with pytest.raises(ValueError, match=r"^train_ch6: num_epochs must be a non-negative "):
        train_ch6(net, train_iter, test_iter, -1, 0.1, mx.cpu())
    with pytest.raises(ValueError, match=r"^train_ch6: lr must be a positive number, got 0\."):
        train_ch6(net, train_iter, test_iter, 1, 0, mx.cpu())


@needs_data
def test_batches_follow_the_callers_mode():
    train_iter, test_iter = load_data_fashion_mnist(8, resize=32, limit=20, test_limit=10)
    X, y = next(iter(test_iter))
    assert isinstance(X, mx.nd.NDArray) and isinstance(y, mx.nd.NDArray)
    npx.set_np()
    try:
        Xn, yn = next(iter(test_iter))  # the same loader: the mode at each batch decides
        assert isinstance(Xn, mx.np.ndarray) and isinstance(yn, mx.np.ndarray)
        assert (Xn.dtype, yn.dtype, Xn.shape) == (np.float32, np.int32, (8, 1, 32, 32))
        np.testing.assert_array_equal(Xn.asnumpy(), X.asnumpy())
        np.testing.assert_array_equal(yn.asnumpy(), y.asnumpy())
        assert isinstance(next(iter(train_iter))[0], mx.np.ndarray)
        assert npx.is_np_array()
    finally:
        npx.reset_np()


@needs_data
def test_evaluate_accuracy_gpu_equals_d2l(numpy_mode):
    _, test_iter = load_data_fashion_mnist(50, limit=10, test_limit=200)
    net = _small_net()
    net.initialize(init.Normal(0.5))
    expected = d2l.evaluate_accuracy_gpu(net, test_iter)
    assert 0 < expected < 1
    assert evaluate_accuracy_gpu(net, test_iter) == expected
    assert evaluate_accuracy_gpu(net, test_iter, mx.cpu()) == expected
    assert evaluate_accuracy(test_iter, net, mx.cpu()) == expected


def test_evaluate_accuracy_gpu_legacy_mode_and_default_device():
    rng = np.random.RandomState(0)
    X, y = rng.uniform(size=(30, 5)), rng.randint(0, 3, size=30)
    batches = [(mx.nd.array(X[i:i + 10]), mx.nd.array(y[i:i + 10], dtype="int32"))
               for i in range(0, 30, 10)]
    net = nn.Dense(3)
    net.initialize(init.Normal(1.0))
    scores = net(mx.nd.array(X)).asnumpy()
    assert evaluate_accuracy_gpu(net, batches) == np.mean(scores.argmax(axis=1) == y)


def test_the_current_editions_names_are_exported():
    for name in ("train_ch6", "evaluate_accuracy_gpu", "Timer", "Accumulator",
                 "load_data_fashion_mnist", "try_gpu", "try_all_gpus"):
        assert name in gluon_resnet.__all__ and hasattr(gluon_resnet, name)
