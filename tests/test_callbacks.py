"""The callbacks: a resumed epoch's progress bar starts where the run stopped; one cycle sets the
trainer's rate of every step; a loss that is not finite stops the run; the Checkpointer saves
every few minutes during the epoch, never a diverged network."""

import re

import numpy as np
import pytest

import mxnet as mx
from mxnet import gluon, init

from gluon_resnet.callbacks import OneCycleSchedule, ProgressBar
from gluon_resnet.callbacks import Checkpointer
from gluon_resnet.checkpoint import read_checkpoint, read_checkpoint_meta
from gluon_resnet.events import Callback, TrainingDiverged
from gluon_resnet.data import load_data_fashion_mnist
from gluon_resnet.models import get_model
from gluon_resnet.training import Learner

from helpers import needs_data


@needs_data
def test_a_resumed_epochs_progress_bar_starts_at_the_resumed_position(capsys):
    train_iter, _ = load_data_fashion_mnist(50, limit=200)
    net = get_model("compact_resnet8_w32")
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    learner = Learner(net, train_iter, None, trainer, callbacks=[ProgressBar(enabled=True)])
    # Stopped after two of four batches (as a checkpoint's meta says).
    learner.restore({"epoch": 0, "batch": 2, "history": [], "partial": [200.0, 20.0, 100, 5.0]})
    learner.fit(1)
    # The bar draws at its start; later draws depend on tqdm's clock, so only the start is
    # certain: it must be the resumed position, and the bar must never show an earlier one.
    shown = re.findall(r"(\d+)/200", capsys.readouterr().err)
    assert shown[0] == "100" and not {"0", "50"} & set(shown), shown


def test_one_cycle_rises_then_falls():
    sched = OneCycleSchedule(1.0, warmup=0.25, div=10, final_div=1000)
    rates = [sched.rate(s, 100) for s in range(100)]
    peak = int(np.argmax(rates))
    assert rates[0] == pytest.approx(0.1) and rates[peak] == pytest.approx(1.0)
    assert peak == 25 and rates[-1] == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(rates[:peak], rates[1:peak + 1]))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:]))


class Clock(Callback):
    """A clock for the Checkpointer that advances ``step`` seconds per batch."""

    order = -50

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        return self.now

    def before_batch(self, learner):
        self.now += self.step


@needs_data
@pytest.mark.parametrize("minutes, saved", [(10, [(0, 3), (0, 6), (1, 0)]), (0, [(1, 0)])])
def test_checkpoints_come_every_few_minutes_during_the_epoch(tmp_path, monkeypatch, minutes,
                                                             saved):
    from gluon_resnet import callbacks

    positions = []
    real = callbacks.save_checkpoint

    def save(path, net, trainer, meta):
        positions.append((meta["epoch"], meta["batch"]))
        real(path, net, trainer, meta)

    monkeypatch.setattr(callbacks, "save_checkpoint", save)
    train_iter, _ = load_data_fashion_mnist(10, limit=70)  # 7 batches
    net = get_model("compact_resnet8_w32")
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    clock = Clock(4 * 60)  # a batch every four minutes
    checkpointer = Checkpointer(str(tmp_path / "c.ckpt"), {}, minutes=minutes)
    checkpointer.clock = clock
    Learner(net, train_iter, None, trainer, callbacks=[clock, checkpointer]).fit(1)
    assert positions == saved
    meta = read_checkpoint_meta(str(tmp_path / "c.ckpt"))
    assert (meta["epoch"], meta["batch"]) == (1, 0)


@needs_data
def test_a_checkpoint_during_the_epoch_never_saves_a_diverged_network(tmp_path):
    train_iter, _ = load_data_fashion_mnist(10, limit=100)
    net = get_model("compact_resnet8_w32")
    net.initialize(init.Xavier())
    # Loss 24, then about 2e38, then inf at batch 4 (seed 0).
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 1e38})
    path = str(tmp_path / "c.ckpt")
    learner = Learner(net, train_iter, None, trainer,
                      callbacks=[Checkpointer(path, {}, minutes=0, batches=1)])
    with pytest.raises(TrainingDiverged):
        learner.fit(1)
    saved = read_checkpoint(path)
    assert 0 < saved.meta["batch"] < learner.batch  # saved during the epoch, before the NaN
    work = str(tmp_path / "model.params")
    with open(work, "wb") as f:
        f.write(saved._members["model.params"])
    assert all(np.isfinite(v.asnumpy()).all() for v in mx.nd.load(work).values())
class _Rates(Callback):
    """The learning rate the trainer steps with, per step: ``(epoch, batch, rate)``."""

    def __init__(self):
        self.seen = []

    def after_step(self, learner):
        self.seen.append((learner.epoch, learner.batch, learner.trainer.learning_rate))


def _batches(count, seed=0):
    rng = np.random.RandomState(seed)
    return [(mx.nd.array(rng.normal(size=(4, 3))), mx.nd.array(rng.randint(0, 2, size=4)))
            for _ in range(count)]


def test_one_cycle_sets_the_trainers_rate_of_every_step_of_a_run():
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 123.0})
    rates = _Rates()
    Learner(net, _batches(4), None, trainer, callbacks=[OneCycleSchedule(0.8), rates],
            handle_signals=False).fit(2)
    # The definition: 8 steps; from 0.08 at step 0 up to 0.8 at step 2 (a quarter of the
    # steps), then straight down to 0.0008 at step 7, the last.
    down = [0.8 + (0.0008 - 0.8) * k / 5 for k in range(6)]
    expected = [0.08, 0.44] + down
    assert [(e, b) for e, b, _ in rates.seen] == [(e, b) for e in (0, 1) for b in range(4)]
    assert [r for _, _, r in rates.seen] == pytest.approx(expected, rel=1e-9)
    # A run resumed inside the second epoch continues the same curve.
    rates = _Rates()
    learner = Learner(net, _batches(4), None, trainer, callbacks=[OneCycleSchedule(0.8), rates],
                      handle_signals=False)
    learner.restore({"epoch": 1, "batch": 1, "history": [{"epoch": 1}], "partial": None})
    learner.fit(2)
    assert [r for _, _, r in rates.seen] == pytest.approx(expected[5:], rel=1e-9)


class _LossBecomes(Callback):
    """Makes the summed loss of batch ``batch`` (1-based) ``value``; counts the steps run."""

    order = -100  # before DivergenceCheck reads the loss

    def __init__(self, batch, value):
        self.batch, self.value, self.steps = batch, value, 0

    def after_step(self, learner):
        self.steps += 1
        if learner.batch + 1 == self.batch:
            learner.batch_loss = mx.nd.array([self.value])


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_loss_that_is_not_finite_stops_the_run(value):
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    bad = _LossBecomes(3, value)
    learner = Learner(net, _batches(6), None, trainer, callbacks=[bad], handle_signals=False)
    with pytest.raises(TrainingDiverged, match=r"the loss became %s in epoch 1, batch 3: "
                                               r"training stopped" % value):
        learner.fit(1)
    # The host reads a batch's loss once the next one is queued: stopped after batch 4 of 6.
    assert bad.steps == 4 and learner.history == []
    # The last batch's loss is read when the pass ends.
    bad = _LossBecomes(6, value)
    learner = Learner(net, _batches(6), None, trainer, callbacks=[bad], handle_signals=False)
    with pytest.raises(TrainingDiverged, match=r"became %s in epoch 1, batch 6" % value):
        learner.fit(2)
    assert bad.steps == 6 and learner.history == []
