"""The loop's phases and events: their order, the cancel paths, after_fit, callbacks' state.

A tiny learner on random 8x8 images (40 of them, batches of 16, 16 and 8) runs in well
under a second; nothing here reads Fashion-MNIST.
"""

import json

import numpy as np
import pytest

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from gluon_resnet.callbacks import ProgressBar
from gluon_resnet.data import FashionMNISTLoader
from gluon_resnet.events import (CANCELS, EVENTS, PHASES, Callback, CancelBatch, CancelEpoch,
                                 CancelFit, CancelTrain, CancelValidate, TrainingInterrupted)
from gluon_resnet.training import Learner


def _tiny_learner(callbacks=(), n=40, batch=16, test=True):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(n, 8, 8)).astype(np.uint8)
    labels = rng.randint(0, 3, size=n)
    net = nn.HybridSequential()
    net.add(nn.Flatten(), nn.Dense(3))
    net.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    train = FashionMNISTLoader(images, labels, batch, shuffle=True)
    return Learner(net, train, FashionMNISTLoader(images, labels, batch) if test else None,
                   trainer, callbacks=callbacks, handle_signals=False)


class Log(Callback):
    def __init__(self):
        self.events = []


for _event in EVENTS:
    setattr(Log, _event, lambda self, learner, _e=_event: self.events.append(_e))

BATCH = ["before_batch", "before_step", "after_step", "after_batch"]
VALIDATE = ["before_validate", "after_validate"]
EPOCH = ["before_epoch", "before_train"] + BATCH * 3 + ["after_train"] + VALIDATE + ["after_epoch"]


def test_every_phase_fires_before_and_after_in_order():
    log = Log()
    _tiny_learner([log]).fit(2)  # 3 batches per epoch (16, 16, 8)
    assert log.events == ["before_fit"] + EPOCH * 2 + ["after_fit"]
    assert set(EVENTS) == {"%s_%s" % (w, p) for p in PHASES for w in ("before", "after")} | {
        "after_cancel_" + p for p in ("fit", "epoch", "train", "validate", "batch")}
    assert all(CANCELS[p].phase == p for p in CANCELS)
    log = Log()
    _tiny_learner([log], test=False).fit(1)  # no test data: no validate phase
    assert "before_validate" not in log.events


def test_callbacks_read_only_attributes_made_in_init():
    seen = {}

    class Snapshot(Callback):
        def after_batch(self, learner):
            seen.setdefault("batch", set(vars(learner)))

        def after_epoch(self, learner):
            seen.setdefault("epoch", set(vars(learner)))

    learner = _tiny_learner([Snapshot()])
    made = set(vars(learner))
    for name in ("epoch", "batch", "num_epochs", "X", "y", "batch_size", "batch_loss",
                 "batch_correct", "last_loss", "test_acc", "recorder", "stop", "last_checkpoint"):
        assert name in made, name
    history = learner.fit(1)
    assert seen["batch"] == seen["epoch"] == set(vars(learner)) == made
    assert learner.history is history and len(history) == 1
    assert set(history[0]) == {"epoch", "loss", "train_acc", "test_acc", "time", "train_time",
                               "lr"}
    assert learner.recorder.n == 40 and learner.last_loss is not None


class Raise(Callback):
    """Raise ``error`` in ``event`` when the learner is at (epoch, batch) ``at`` (0-based epoch)."""

    def __init__(self, error, event, at):
        self.error, self.event, self.at = error, event, at
        setattr(self, event, self._maybe)

    def _maybe(self, learner):
        if (learner.epoch, learner.batch) == self.at:
            raise self.error


# (cancel, the event that raises it, at (epoch, batch), epochs asked, the events expected,
#  epochs done, examples the Recorder counted in the last epoch)
CASES = {
    "batch": (CancelBatch, "before_step", (0, 1), 1,
              ["before_fit", "before_epoch", "before_train"] + BATCH
              + ["before_batch", "before_step", "after_cancel_batch", "after_batch"] + BATCH
              + ["after_train"] + VALIDATE + ["after_epoch", "after_fit"], 1, 24),
    "train": (CancelTrain, "after_batch", (0, 1), 2,
              ["before_fit", "before_epoch", "before_train"] + BATCH
              + ["after_cancel_train", "after_train"] + VALIDATE + ["after_epoch"] + EPOCH
              + ["after_fit"], 2, 40),
    "validate": (CancelValidate, "before_validate", (0, 3), 1,
                 ["before_fit"] + EPOCH[:-3] + ["before_validate", "after_cancel_validate",
                                                "after_validate", "after_epoch", "after_fit"],
                 1, 40),
    "epoch": (CancelEpoch, "after_batch", (0, 1), 2,
              ["before_fit", "before_epoch", "before_train"] + BATCH
              + ["after_cancel_epoch", "after_epoch"] + EPOCH + ["after_fit"], 2, 40),
    "fit": (CancelFit, "after_batch", (1, 1), 3,
            ["before_fit"] + EPOCH + ["before_epoch", "before_train"] + BATCH
            + ["after_cancel_fit", "after_fit"], 1, 16),
}


@pytest.mark.parametrize("phase", list(CASES))
def test_a_cancel_ends_its_phase_early_and_the_loop_goes_on(phase):
    cancel, event, at, epochs, expected, done, examples = CASES[phase]
    log = Log()
    learner = _tiny_learner([log, Raise(cancel(), event, at)])
    history = learner.fit(epochs)  # no exception: a cancel is not an error
    assert log.events == expected
    assert learner.epoch == done == len(history)
    assert learner.recorder.n == examples
    if phase == "validate":
        assert np.isnan(history[0]["test_acc"])  # the evaluation was skipped
    else:
        assert all(np.isfinite(h["loss"]) for h in history)


def test_a_cancel_too_late_or_outside_its_phase_is_named_and_after_fit_still_runs():
    log = Log()
    learner = _tiny_learner([log, Raise(CancelBatch(), "after_batch", (0, 2))])
    with pytest.raises(RuntimeError, match=r"^CancelBatch was raised in after_batch, when the "
                       r"batch had ended; raise it in before_batch or in an event of a phase "
                       r"inside it$"):
        learner.fit(1)
    assert log.events[-2:] == ["after_batch", "after_fit"]
    log = Log()
    learner = _tiny_learner([log, Raise(CancelValidate(), "before_batch", (0, 0))])
    with pytest.raises(RuntimeError, match=r"^CancelValidate was raised outside the validate "
                       r"phase it cancels$"):
        learner.fit(1)
    assert log.events == ["before_fit", "before_epoch", "before_train", "before_batch",
                          "after_fit"]


def test_an_error_skips_the_after_events_but_after_fit_lets_go_of_the_progress_bar(capsys):
    log, bar = Log(), ProgressBar(enabled=True)
    learner = _tiny_learner([log, bar, Raise(ValueError("broken"), "after_step", (0, 1))])
    with pytest.raises(ValueError, match="^broken$"):  # the error itself, not another one
        learner.fit(2)
    assert log.events[-2:] == ["after_step", "after_fit"]
    assert learner.history == []  # the half-done epoch is not recorded
    assert bar.bar is None  # closed
    assert "epoch 1/2" in capsys.readouterr().err


def test_a_stop_request_from_a_callback_cancels_the_fit_then_raises():
    class Stop(Callback):
        def after_batch(self, learner):
            if learner.batch == 2:
                learner.stop.request()

    log = Log()
    learner = _tiny_learner([Stop(), log])
    with pytest.raises(TrainingInterrupted, match=r"in epoch 1 after batch 2"):
        learner.fit(3)
    assert log.events[-3:] == ["after_batch", "after_cancel_fit", "after_fit"]
    assert "after_epoch" not in log.events  # the stopped epoch is not recorded
    assert learner.state()["callbacks"]["Recorder"]["partial"][2] == 32


class Counter(Callback):
    """Counts the batches it saw; its state is that count."""

    def __init__(self):
        self.batches = 0

    def after_batch(self, learner):
        self.batches += 1

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state):
        self.batches = state["batches"]


class StopAfter(Callback):
    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def after_batch(self, learner):
        if (learner.epoch, learner.batch) == self.at:
            learner.stop.request()


def test_each_callback_saves_and_restores_its_own_state():
    counter = Counter()
    learner = _tiny_learner([counter, StopAfter(1, 2)])
    with pytest.raises(TrainingInterrupted):
        learner.fit(2)
    state = json.loads(json.dumps(learner.state()))  # as a checkpoint's meta.json keeps it
    assert (state["epoch"], state["batch"]) == (1, 2)
    assert set(state["callbacks"]) == {"Recorder", "Counter"}  # the others have no state
    assert state["callbacks"]["Counter"] == {"batches": 5}
    recorder = state["callbacks"]["Recorder"]
    assert recorder["partial"][2] == 32 and recorder["history"] == state["history"]
    assert len(state["history"]) == 1
    again = Counter()
    resumed = _tiny_learner([again])
    resumed.restore(state)
    assert again.batches == 5 and resumed.history == state["history"]
    history = resumed.fit(2)
    assert again.batches == 6 and len(history) == 2  # one batch was left in epoch 2
    # A callback the checkpoint holds nothing for starts afresh; an unknown entry is ignored.
    fresh = Counter()
    _tiny_learner([fresh]).restore(dict(state, callbacks={"Recorder": recorder,
                                                          "Gone": {"x": 1}}))
    assert fresh.batches == 0


def test_two_callbacks_with_state_under_one_name_are_refused():
    with pytest.raises(ValueError, match=r"^Learner: several callbacks keep their state under "
                       r"the name 'Counter'; give each its own state_key$"):
        _tiny_learner([Counter(), Counter()])

    class Renamed(Counter):
        state_key = "Counter"

    with pytest.raises(ValueError, match=r"under the name 'Counter';"):
        _tiny_learner([Counter(), Renamed()])

    class Second(Counter):
        pass

    assert [cb.state_key for cb in _tiny_learner([Counter(), Second()]).callbacks
            if isinstance(cb, Counter)] == ["Counter", "Second"]  # own names: fine
