"""Training on real Fashion-MNIST subsets: d2lzh's lines, resume, Ctrl-C, NaN, errors."""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mxnet as mx
from mxnet import autograd, gluon, init

from gluon_resnet import chapter_resnet18
from gluon_resnet.checkpoint import read_checkpoint_meta, save_checkpoint
from gluon_resnet.cli import main
from gluon_resnet.events import Callback, TrainingDiverged, TrainingInterrupted
from gluon_resnet.experiment import TrainConfig, run_training
from gluon_resnet.models import get_model
from gluon_resnet.training import LabelSmoothingLoss, evaluate_accuracy, train_ch5

from helpers import TINY_MODEL, needs_data, register_tiny_net

pytestmark = needs_data

EPOCH_LINE = re.compile(r"^epoch (\d+), loss \d+\.\d{4}, train acc \d\.\d{3}, "
                        r"test acc \d\.\d{3}, time \d+\.\d sec$")
# A small, fast run: 28x28 inputs, a balanced subset, a few epochs; fp32, because bf16 AMP
# would switch this whole test process to bf16 (bf16 runs are tested in subprocesses).
#: Short runs of a small residual network (BN, shortcuts) at 28x28, which trains and
#: evaluates several times faster than the chapter's network.
QUICK = dict(model="compact_resnet8", resize=None, limit=1000, batch_size=100, seed=3,
             precision="fp32")


def _quick_config(**kw):
    return TrainConfig(**dict(QUICK, **kw))


@pytest.mark.slow
def test_train_ch5_prints_d2lzh_lines_and_learns(capsys):
    from gluon_resnet.data import load_data_fashion_mnist

    train_iter, test_iter = load_data_fashion_mnist(100, limit=2000)
    net = chapter_resnet18()
    net.initialize(init.Xavier())
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    history = train_ch5(net, train_iter, test_iter, 100, trainer, mx.cpu(), 2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "training on cpu(0)"
    assert len(lines) == 3 and all(EPOCH_LINE.match(line) for line in lines[1:]), lines
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["loss"] < history[0]["loss"]
    # Ten classes: chance is 0.1.
    assert history[-1]["test_acc"] > 0.5
    assert abs(evaluate_accuracy(test_iter, net, mx.cpu()) - history[-1]["test_acc"]) < 1e-6


def _params(folder):
    from gluon_resnet.checkpoint import load_checkpoint
    from gluon_resnet.experiment import build_network

    meta = read_checkpoint_meta(os.path.join(folder, "checkpoint.ckpt"))
    net = build_network(TrainConfig.from_dict(meta["config"]), mx.cpu())
    net(mx.nd.zeros((1, 1, 28, 28)))
    load_checkpoint(os.path.join(folder, "checkpoint.ckpt"), net, restore_random_state=False)
    return {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()}, meta


# Resuming is exact, to the bit: a run stopped (after an epoch, or by any stop signal in
# the middle of one) and resumed ends with the parameters, BN statistics and history (the
# clock aside) of the run that never stopped.  Zero tolerance holds because the resumed run
# computes the same operations on the same values: the same batches (seeded streams), the
# optimizer state and the partial sums saved exactly, MXNet's generator reseeded from
# (seed, epoch, batch) before every batch.
RESUMED = dict(epochs=2, limit=600, momentum=0.9)


def _clockless(history):
    return [{k: v for k, v in h.items() if k not in ("time", "train_time")} for h in history]


def _same_run(a, b):
    """Assert that the runs in folders ``a`` and ``b`` ended identical."""
    (params_a, meta_a), (params_b, meta_b) = _params(a), _params(b)
    assert sorted(params_a) == sorted(params_b)
    for k in params_a:
        np.testing.assert_array_equal(params_a[k], params_b[k], err_msg=k)
    clockless = [_clockless(meta["history"]) for meta in (meta_a, meta_b)]
    assert clockless[0] == clockless[1] and len(clockless[0]) == meta_a["epoch"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The folder of a ``RESUMED`` run that was never stopped."""
    out = str(tmp_path_factory.mktemp("straight") / "run")
    run_training(_quick_config(**RESUMED), out=out, quiet=True)
    return out


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, straight):
    split = str(tmp_path / "split")
    run_training(_quick_config(**dict(RESUMED, epochs=1)), out=split, quiet=True)
    history, _ = run_training(resume=os.path.join(split, "checkpoint.ckpt"),
                              overrides={"epochs": 2}, quiet=True)
    assert len(history) == 2
    _same_run(straight, split)
    # The run folder has everything the README promises.
    for name in ("history.json", "history.csv", "learning_curve.png", "config.json"):
        assert os.path.getsize(os.path.join(split, name)) > 0
    assert len(json.load(open(os.path.join(split, "history.json")))) == 2


class RaiseSignal(Callback):
    """Send ``signum`` to this process after batch ``batch`` of epoch ``epoch`` (1-based)."""

    def __init__(self, signum, epoch, batch, times=1):
        self.signum, self.epoch, self.batch, self.times = signum, epoch, batch, times

    def after_batch(self, learner):
        if (learner.epoch + 1, learner.batch) == (self.epoch, self.batch):
            for _ in range(self.times):
                signal.raise_signal(self.signum)


STOPS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@pytest.mark.parametrize("signum", STOPS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.slow
def test_a_stop_signal_saves_the_batch_and_resume_finishes(tmp_path, signum, straight):
    out = str(tmp_path / "run")
    config = _quick_config(**RESUMED)
    with pytest.raises(TrainingInterrupted) as info:
        run_training(config, out=out, quiet=True, callbacks=[RaiseSignal(signum, 2, 3)])
    stop = info.value
    assert stop.signum == signum and stop.exit_status == 128 + signum and not stop.immediate
    assert "in epoch 2 after batch 3" in str(stop) and stop.checkpoint.endswith("checkpoint.ckpt")
    meta = read_checkpoint_meta(stop.checkpoint)
    assert (meta["epoch"], meta["batch"], len(meta["history"])) == (1, 3, 1)
    assert meta["callbacks"]["Recorder"]["partial"][2] == 300  # examples of the three batches
    assert signal.getsignal(signum) in (signal.default_int_handler, signal.SIG_DFL)
    history, _ = run_training(resume=stop.checkpoint, quiet=True)
    assert [h["epoch"] for h in history] == [1, 2]
    _same_run(straight, out)  # the stop and resume changed nothing


def _load_script(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: A checkpoint saved by the code of commit 186705e, before callbacks kept their own state
#: (the Recorder's sums were meta["partial"]): tests/data/make_resume_checkpoint.py trained
#: helpers.tiny_net with its RUN there and stopped it with SIGTERM inside epoch 2.
OLD_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                              "resume_186705e.ckpt")


@pytest.fixture
def tiny_model():
    """``TINY_MODEL`` registered for one test."""
    from gluon_resnet import models

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
        register_tiny_net(models._REGISTRY)
        yield TINY_MODEL


@pytest.mark.slow
def test_a_checkpoint_from_before_callbacks_kept_their_state_resumes(tmp_path, tiny_model):
    made = _load_script(os.path.join(os.path.dirname(OLD_CHECKPOINT), "make_resume_checkpoint.py"))
    old = read_checkpoint_meta(OLD_CHECKPOINT)
    assert "callbacks" not in old  # the old layout, with the Recorder's sums as "partial":
    assert old["partial"][2] == made.STOP_BATCH * made.RUN["batch_size"]
    assert (old["epoch"], old["batch"], len(old["history"])) == (1, made.STOP_BATCH, 1)
    run = tmp_path / "old"
    run.mkdir()
    shutil.copy(OLD_CHECKPOINT, run / "checkpoint.ckpt")
    history, _ = run_training(resume=str(run), quiet=True)
    assert len(history) == 2 and history[0] == old["history"][0]
    straight = str(tmp_path / "straight")
    run_training(TrainConfig(**made.RUN), out=straight, quiet=True)
    (ours, meta), (theirs, reference) = _params(str(run)), _params(straight)
    assert (meta["epoch"], meta["batch"], meta["callbacks"]["Recorder"]["partial"]) == (2, 0, None)
    # Another CPU or thread count sums float32 in another order, so this machine's run may
    # differ from the one that saved the file: with 1 thread instead of 2, by 1e-4 of the
    # parameters' norm and 1e-5 of the loss.  A skipped batch changes the parameters by 9e-2,
    # and it or losing the saved sums the loss by 17 percent (tests/mutations.py).
    flat = [np.concatenate([p[k].ravel() for k in sorted(p)]) for p in (ours, theirs)]
    assert np.linalg.norm(flat[0] - flat[1]) <= 1e-2 * np.linalg.norm(flat[1])
    for got, want in zip(meta["history"], reference["history"]):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-3)
        assert got["train_acc"] == pytest.approx(want["train_acc"], abs=0.011)  # 2 images
    if _clockless(reference["history"][:1]) == _clockless(old["history"]):
        _same_run(straight, str(run))  # this machine computes what the one that saved it did


@pytest.fixture(scope="module")
def dropout_model():
    """The name of a WRN-10-1 with dropout 0.3, registered for this module's tests only."""
    from gluon_resnet import models

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
        models.register_model("test_wrn10_1_dropout", "WRN-10-1, dropout 0.3 (a test network)")(
            lambda num_classes=10: models.wrn(10, 1, num_classes=num_classes, dropout=0.3))
        yield "test_wrn10_1_dropout"


@pytest.mark.slow
def test_resume_with_dropout_draws_the_masks_of_the_uninterrupted_run(tmp_path, dropout_model):
    config = _quick_config(**dict(RESUMED, model=dropout_model, limit=400))
    net = get_model(dropout_model)
    net.initialize()
    x = mx.nd.ones((2, 1, 28, 28))
    with autograd.train_mode():  # guard: the network's dropout draws random numbers
        assert not np.array_equal(net(x).asnumpy(), net(x).asnumpy())
    straight = str(tmp_path / "straight")
    run_training(config, out=straight, quiet=True)
    out = str(tmp_path / "run")
    with pytest.raises(TrainingInterrupted):
        run_training(config, out=out, quiet=True,
                     callbacks=[RaiseSignal(signal.SIGTERM, 2, 2)])
    run_training(resume=os.path.join(out, "checkpoint.ckpt"), quiet=True)
    _same_run(straight, out)


@pytest.mark.slow
def test_a_second_signal_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    config = _quick_config(epochs=2, limit=600)
    with pytest.raises(TrainingInterrupted) as info:
        run_training(config, out=out, quiet=True,
                     callbacks=[RaiseSignal(signal.SIGTERM, 2, 2, times=2)])
    assert info.value.immediate and info.value.exit_status == 143
    assert "second signal" in str(info.value)
    meta = read_checkpoint_meta(os.path.join(out, "checkpoint.ckpt"))
    assert (meta["epoch"], meta["batch"]) == (1, 0)  # the end of epoch 1, nothing later


CLI_SCRIPT = """
    import signal, sys

    from gluon_resnet import experiment
    from gluon_resnet.cli import main
    from gluon_resnet.events import Callback

    SIGNUM, EPOCH, BATCH = int(sys.argv[1]), 2, 3
    build = experiment.build_callbacks


    class RaiseSignal(Callback):
        def after_batch(self, learner):
            if (learner.epoch + 1, learner.batch) == (EPOCH, BATCH):
                signal.raise_signal(SIGNUM)


    experiment.build_callbacks = lambda *a, **k: build(*a, **k) + [RaiseSignal()]
    sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("signum", STOPS, ids=lambda s: signal.Signals(s).name)
def test_train_command_exits_with_the_signal_status_and_says_how_to_resume(tmp_path, signum):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(CLI_SCRIPT))
    out = str(tmp_path / "run")
    stopped = subprocess.run(
        [sys.executable, str(script), str(int(signum)), "train", "--no-resize", "--limit", "600",
         "--batch-size", "100", "--epochs", "2", "--out", out, "--no-progress", "--precision",
         "fp32", "--model", "compact_resnet8"], capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 128 + signum, stopped.stderr
    assert stopped.stdout.startswith("precision: fp32\ntraining on cpu(0)\nepoch 1, loss")
    checkpoint = os.path.join(out, "checkpoint.ckpt")
    assert "interrupted (%s) in epoch 2 after batch 3" % (
        "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name) in stopped.stderr
    assert "Resume with: gluon-resnet train --resume %s" % checkpoint in stopped.stderr
    assert "Traceback" not in stopped.stderr
    meta = read_checkpoint_meta(checkpoint)
    assert (meta["epoch"], meta["batch"]) == (1, 3)
    if signum != signal.SIGHUP:
        return  # resuming is the same for every signal: once is enough here
    done = subprocess.run([sys.executable, "-m", "gluon_resnet", "train", "--resume", checkpoint,
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "epoch 2, loss" in done.stdout and "epoch 1, loss" not in done.stdout
    meta = read_checkpoint_meta(checkpoint)
    assert meta["epoch"] == 2 and meta["batch"] == 0 and len(meta["history"]) == 2


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    # The chapter's network: its loss overflows within a batch or two at lr 1e10.
    run_training(_quick_config(epochs=1, model="chapter_resnet18"), out=out, quiet=True)
    before = open(os.path.join(out, "checkpoint.ckpt"), "rb").read()
    with pytest.raises(TrainingDiverged, match=r"epoch 2, batch \d+.*lower"):
        run_training(resume=os.path.join(out, "checkpoint.ckpt"),
                     overrides={"epochs": 2, "lr": 1e10}, quiet=True)
    assert open(os.path.join(out, "checkpoint.ckpt"), "rb").read() == before


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    net = chapter_resnet18()
    net.initialize()
    net(mx.nd.zeros((1, 1, 28, 28)))
    path = str(tmp_path / "c.ckpt")
    save_checkpoint(path, net, None, {"epoch": 1})
    good = open(path, "rb").read()

    import zipfile

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, net, None, {"epoch": 2})
    assert open(path, "rb").read() == good
    assert os.listdir(tmp_path) == ["c.ckpt"]  # no temporary file left behind


@pytest.mark.slow
def test_bad_arguments_give_one_sentence(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "-1"])
    assert info.value.code == 2 and "--epochs" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nope.ckpt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # A checkpoint of another model.
    other = str(tmp_path / "other")
    run_training(_quick_config(epochs=1, model="resnet18", limit=200), out=other, quiet=True)
    meta = read_checkpoint_meta(os.path.join(other, "checkpoint.ckpt"))
    assert meta["config"]["model"] == "resnet18"
    assert main(["eval", "--params", os.path.join(other, "checkpoint.ckpt"),
                 "--model", "chapter_resnet18"]) == 2
    assert "resnet18" in capsys.readouterr().err
    # An occupied run folder is not overwritten.
    assert main(["train", "--out", other, "--no-resize", "--limit", "200"]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_command_prints_accuracy_and_saves_figures(tmp_path, capsys):
    import matplotlib.pyplot as plt

    open_before = set(plt.get_fignums())
    out = str(tmp_path / "run")
    history, _ = run_training(_quick_config(epochs=2, limit=2000, batch_size=50), out=out,
                              quiet=True)
    confusion, samples = str(tmp_path / "cm.png"), str(tmp_path / "samples.png")
    # fp32: bf16 would switch this test process to bf16 (bf16 eval: test_precision.py).
    assert main(["eval", "--params", os.path.join(out, "checkpoint.ckpt"), "--limit", "500",
                 "--confusion", confusion, "--samples", samples, "--precision", "fp32"]) == 0
    text = capsys.readouterr().out
    acc = float(re.search(r"test acc (\d\.\d+)", text).group(1))
    # Another sample of the test set than training's own evaluation: close, not equal.
    assert 0.4 < acc <= 1.0 and abs(acc - history[-1]["test_acc"]) < 0.1, (acc, history[-1])
    assert "ankle boot" in text and "t-shirt" in text
    assert "precision: fp32, oneDNN operator fusion" in text
    assert os.path.getsize(confusion) > 10000 and os.path.getsize(samples) > 10000
    # Saved figures are closed: training's learning curve and eval's two leave none open.
    assert set(plt.get_fignums()) == open_before


@pytest.mark.slow
def test_ctrl_c_inside_train_ch5_keeps_the_trained_network():
    import signal as sig

    from gluon_resnet.data import load_data_fashion_mnist
    from gluon_resnet.training import Callback, Learner, TrainingInterrupted

    class PressCtrlC(Callback):
        def after_batch(self, learner):
            if learner.batch == 2:
                os.kill(os.getpid(), sig.SIGINT)

    train_iter, test_iter = load_data_fashion_mnist(50, limit=500)
    net = chapter_resnet18()
    net.initialize(init.Xavier())
    net(next(iter(test_iter))[0])
    before = net[0].weight.data().asnumpy().copy()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    learner = Learner(net, train_iter, test_iter, trainer, callbacks=[PressCtrlC()])
    with pytest.raises(TrainingInterrupted,
                       match=r"\(Ctrl-C\) in epoch 1 after batch 2.*keeps the parameters"):
        learner.fit(3)
    assert learner.epoch == 0 and learner.batch == 2
    assert learner.state()["callbacks"]["Recorder"]["partial"][2] == 100
    assert not np.allclose(net[0].weight.data().asnumpy(), before)
    # The handler is gone again: SIGINT means KeyboardInterrupt as usual.
    assert sig.getsignal(sig.SIGINT) is sig.default_int_handler


@pytest.mark.slow
def test_progress_bar_shows_images_per_second(capsys):
    from gluon_resnet.callbacks import ProgressBar
    from gluon_resnet.data import load_data_fashion_mnist
    from gluon_resnet.training import Learner

    train_iter, _ = load_data_fashion_mnist(50, limit=200)
    net = chapter_resnet18()
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    Learner(net, train_iter, None, trainer, callbacks=[ProgressBar(enabled=True)]).fit(1)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "img/s" in err and "200/200" in err
    Learner(net, train_iter, None, trainer, callbacks=[ProgressBar(enabled=False)]).fit(1)
    assert capsys.readouterr().err == ""


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


@pytest.mark.parametrize("numpy_mode", [False, True], ids=["legacy", "numpy"])
@pytest.mark.parametrize("flip", [False, True])
def test_evaluation_on_two_devices_counts_every_example_once(numpy_mode, flip):
    rng = np.random.RandomState(11)
    weight, bias = rng.normal(size=(4, 6)), rng.normal(size=4)
    images = [rng.normal(size=(n, 1, 2, 3)) for n in (7, 5, 1)]  # uneven splits, a lone one
    labels = [rng.randint(0, 4, size=len(X)) for X in images]

    def scores(X):  # the network below, in numpy: a dense layer on the flattened image
        return X.reshape(len(X), -1) @ weight.T + bias

    def softmax(s):
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    hits = 0
    for X, y in zip(images, labels):
        s = softmax(scores(X)) + softmax(scores(X[..., ::-1])) if flip else scores(X)
        hits += int((s.argmax(axis=1) == y).sum())
    expected = hits / sum(len(y) for y in labels)
    assert 0 < expected < 1
    if numpy_mode:
        mx.npx.set_np()
    try:
        array = mx.np.array if numpy_mode else mx.nd.array
        net = gluon.nn.Dense(4, in_units=6)
        net.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
        net.weight.set_data(array(weight, dtype="float32"))
        net.bias.set_data(array(bias, dtype="float32"))
        batches = [(array(X, dtype="float32"), array(y, dtype="float32"))
                   for X, y in zip(images, labels)]
        for ctx in (mx.cpu(0), [mx.cpu(0), mx.cpu(1)]):
            assert evaluate_accuracy(batches, net, ctx, flip=flip) == pytest.approx(expected)
    finally:
        if numpy_mode:
            mx.npx.reset_np()
