"""Callbacks for ``Learner``: the recorder, printing, progress, files, figures, checkpoints.

``Recorder`` and ``DivergenceCheck`` are part of every ``Learner``: the first
keeps the epoch's running sums, the timing and the history that the printing,
history and plotting callbacks read; the second stops a run whose loss became
NaN or infinite.  The rest are optional.
"""

import csv
import io
import json
import math
import os
import sys
import time

import numpy as np

from ._mxnet import mx
from .arrays import in_caller_mode, scalar
from .checkpoint import atomic_write, save_checkpoint
from .events import Callback, TrainingDiverged
from .plotting import close_figure, in_notebook, plot_curves, plot_history
from .validate import non_negative_number, optional_positive_int

__all__ = ["Recorder", "DivergenceCheck", "PrintEpochs", "PrintSummary", "ProgressBar",
           "HistoryWriter", "CurvePlotter", "LiveCurves", "Checkpointer", "OneCycleSchedule"]


class Recorder(Callback):
    """Running sums of the epoch, timing, and the history of finished epochs.

    Sums stay on the device (one host sync per epoch).  Its state in a
    checkpoint is the history and, when saved inside an epoch, that epoch's
    sums and time so far, which a resumed run continues.

    Attributes
    ----------
    history : list of dict
        One entry per finished epoch: ``epoch``, ``loss``, ``train_acc``,
        ``test_acc``, ``time``, ``train_time``, ``lr`` (loss and accuracy NaN
        for an epoch cancelled before its first batch).
    loss_sum, correct : NDArray of shape (1,)
        Sums over the running epoch's batches so far (None before training).
    n : int
        Examples of the running epoch so far.
    """

    order = -100

    def __init__(self):
        self.history = []
        self.loss_sum = self.correct = None
        self.n, self.seconds, self.train_time = 0, 0.0, None
        self._carry = None  # [loss, correct, n, seconds] of an interrupted epoch
        self._start = None
        self._in_epoch = False  # the sums belong to an epoch that has not ended

    def state_dict(self):
        """``history``, and ``partial``: the running epoch's sums (None between epochs)."""
        return {"history": [dict(h) for h in self.history],
                "partial": self.partial() if self._in_epoch else None}

    def load_state_dict(self, state):
        self.history = [dict(h) for h in state["history"]]
        self._carry = list(state["partial"]) if state.get("partial") else None

    def partial(self):
        """``[loss sum, correct, examples, seconds]`` of the running epoch (host values)."""
        return [scalar(self.loss_sum), scalar(self.correct), self.n, self._seconds()]

    def _seconds(self):
        return self.seconds + time.time() - self._start

    def before_fit(self, learner):
        self._in_epoch = False  # whatever an earlier fit that failed left

    def before_epoch(self, learner):
        loss, correct, self.n, self.seconds = self._carry or (0.0, 0.0, 0, 0.0)
        self._carry = None
        ctx = learner.ctxs[0]
        self.loss_sum = in_caller_mode(mx.nd.array([loss], ctx=ctx))
        self.correct = in_caller_mode(mx.nd.array([correct], ctx=ctx))
        self.train_time = None
        self._in_epoch = True
        self._start = time.time()

    def after_step(self, learner):
        self.loss_sum += learner.batch_loss.as_in_context(self.loss_sum.context)
        self.correct += learner.batch_correct.as_in_context(self.correct.context)
        self.n += learner.batch_size

    def after_train(self, learner):
        self.loss_sum.wait_to_read()  # the last batch's compute belongs to the training time
        self.train_time = self._seconds()

    def after_epoch(self, learner):
        self._in_epoch = False
        n = self.n or float("nan")  # nothing trained: an epoch cancelled before its first batch
        seconds = self._seconds()
        self.history.append({
            "epoch": learner.epoch, "loss": scalar(self.loss_sum) / n,
            "train_acc": scalar(self.correct) / n, "test_acc": float(learner.test_acc),
            "time": seconds, "train_time": seconds if self.train_time is None else self.train_time,
            "lr": learner.trainer.learning_rate})


class DivergenceCheck(Callback):
    """Stop when the loss becomes NaN or infinite (``TrainingDiverged``).

    The host reads the loss of the *previous* batch after the current one
    is queued, so no batch waits for itself; that finished value is also
    ``learner.last_loss`` (mean loss per example) for the progress bar.  Runs
    before the checkpointer, so a diverged state is never saved.
    """

    order = -90

    def __init__(self):
        self.pending = None  # (batch number, summed loss NDArray, examples)

    def before_fit(self, learner):
        self.pending = None  # what an earlier fit that failed left

    def _check(self, learner):
        if self.pending is None:
            return
        number, loss, n = self.pending
        self.pending = None
        value = scalar(loss)
        learner.last_loss = value / n
        if not math.isfinite(value):
            rate = learner.trainer.learning_rate
            raise TrainingDiverged(
                "the loss became %s in epoch %d, batch %d: training stopped. The learning "
                "rate (%g) is probably too high; try a lower one, for example %g."
                % (value, learner.epoch + 1, number, rate, rate / 10))

    def after_step(self, learner):
        self._check(learner)
        self.pending = (learner.batch + 1, learner.batch_loss, learner.batch_size)

    def _check_last(self, learner):
        self._check(learner)

    after_train = after_cancel_epoch = after_cancel_fit = _check_last


class PrintEpochs(Callback):
    """Print d2lzh's lines: ``training on cpu(0)`` and one line per epoch."""

    def before_fit(self, learner):
        ctx = learner.ctxs[0] if len(learner.ctxs) == 1 else learner.ctxs
        print("training on", ctx, flush=True)

    def after_epoch(self, learner):
        h = learner.history[-1]
        print("epoch %d, loss %.4f, train acc %.3f, test acc %.3f, time %.1f sec"
              % (h["epoch"], h["loss"], h["train_acc"], h["test_acc"], h["time"]), flush=True)


class PrintSummary(Callback):
    """Print d2l 1.x's two lines after training (``train_ch6``).

    ``loss 0.xxx, train acc 0.xxx, test acc 0.xxx`` for the last epoch, then
    ``NNNN.N examples/sec on cpu(0)``: all training examples over the time of
    the training passes (evaluation left out, as d2l's timer does).
    """

    def __init__(self):
        self.examples, self.seconds = 0, 0.0

    def after_train(self, learner):
        self.examples += learner.recorder.n
        self.seconds += learner.recorder.train_time

    def after_fit(self, learner):
        if not learner.history or learner.epoch < learner.num_epochs:
            return  # nothing trained (num_epochs 0), or training ended early
        h = learner.history[-1]
        print("loss %.3f, train acc %.3f, test acc %.3f" % (h["loss"], h["train_acc"],
                                                             h["test_acc"]), flush=True)
        ctx = learner.ctxs[0] if len(learner.ctxs) == 1 else learner.ctxs
        print("%.1f examples/sec on %s" % (self.examples / max(self.seconds, 1e-9), ctx),
              flush=True)


class ProgressBar(Callback):
    """A tqdm bar per epoch with images per second and ETA.

    Parameters
    ----------
    enabled : bool or None, default None
        None: only when standard error is a terminal.
    """

    order = -10

    def __init__(self, enabled=None):
        self.enabled = enabled
        self.bar = None

    def _on(self):
        return sys.stderr.isatty() if self.enabled is None else self.enabled

    def before_train(self, learner):
        if not self._on():
            return
        from tqdm import tqdm  # deferred: only drawn when standard error is a terminal

        total = getattr(learner.train_iter, "num_examples", None)
        # A resumed epoch starts where it stopped (the Recorder, which runs first, restored n).
        self.bar = tqdm(total=total, initial=learner.recorder.n, unit="img", unit_scale=False,
                        leave=False, desc="epoch %d/%d" % (learner.epoch + 1, learner.num_epochs),
                        dynamic_ncols=True, file=sys.stderr)

    def after_batch(self, learner):
        if self.bar is not None:
            self.bar.update(learner.batch_size)
            if learner.last_loss is not None:
                self.bar.set_postfix(loss="%.4f" % learner.last_loss, refresh=False)

    def _close(self, learner=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    after_epoch = after_fit = _close


class HistoryWriter(Callback):
    """Write the history after each epoch as ``history.json`` and ``history.csv``."""

    FIELDS = ["epoch", "loss", "train_acc", "test_acc", "time", "train_time", "lr"]

    def __init__(self, folder):
        self.folder = folder

    def after_epoch(self, learner):
        def write_json(tmp):
            with open(tmp, "w") as f:
                json.dump(learner.history, f, indent=1)

        def write_csv(tmp):
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=self.FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(learner.history)
            with open(tmp, "w", newline="") as f:
                f.write(buf.getvalue())

        atomic_write(os.path.join(self.folder, "history.json"), write_json)
        atomic_write(os.path.join(self.folder, "history.csv"), write_csv)


class CurvePlotter(Callback):
    """Save the learning curves (loss, train and test accuracy) as a PNG after each epoch."""

    def __init__(self, path, title=None):
        self.path, self.title = path, title

    def after_epoch(self, learner):
        def write(tmp):  # saved, then closed: no epoch's figure stays open (or shows in a notebook)
            close_figure(plot_history(learner.history, path=tmp, title=self.title))

        atomic_write(self.path, write, suffix=".png")


class LiveCurves(Callback):
    """Learning curves that grow while the network trains, like the book's animator.

    Every ``every`` batches the running train loss and accuracy of the epoch
    so far are added (read from the device: one short wait), and after each
    epoch the epoch's means and the test accuracy.  The x axis counts epochs.
    In a Jupyter notebook the figure below the cell is redrawn in place;
    elsewhere it is only saved to ``path`` (if given): no window, no file.

    Parameters
    ----------
    every : int, optional
        Batches between two points; by default about five points per epoch.
    path : str, optional
        Also save the figure there as PNG after each epoch.
    title : str, optional
    """

    order = 5

    def __init__(self, every=None, path=None, title=None):
        optional_positive_int(every, "every", "LiveCurves")
        self.every, self.path, self.title = every, path, title
        self.series, self.fig, self.handle, self.num_batches = None, None, None, None

    def _batches_per_epoch(self, learner):
        try:
            return len(learner.train_iter)
        except TypeError:  # an iterator without a length
            return None

    def before_fit(self, learner):
        from matplotlib.figure import Figure  # deferred: matplotlib is slow to import

        self.series = {"train loss": ([], []), "train acc": ([], []), "test acc": ([], [])}
        for h in learner.history:  # resuming: the epochs already done
            self._add_epoch(h)
        # A bare Figure (not pyplot's) is shown only where we display it.
        self.fig = Figure(figsize=(6, 4))
        self.num_batches = self._batches_per_epoch(learner)

    def _add(self, label, x, y):
        xs, ys = self.series[label]
        xs.append(x)
        ys.append(y)

    def _add_epoch(self, h):
        self._add("train loss", h["epoch"], h["loss"])
        self._add("train acc", h["epoch"], h["train_acc"])
        if h["test_acc"] == h["test_acc"]:  # not NaN
            self._add("test acc", h["epoch"], h["test_acc"])

    def after_batch(self, learner):
        every = self.every or max(1, (self.num_batches or 250) // 5)
        if learner.batch % every or (self.num_batches and learner.batch >= self.num_batches):
            return  # the epoch's last point comes from after_epoch
        if self.path is None and not in_notebook():
            return  # a point nobody sees would cost a wait for the device
        recorder = learner.recorder
        loss_sum, correct, n = recorder.loss_sum, recorder.correct, recorder.n
        x = learner.epoch + (learner.batch / self.num_batches if self.num_batches else 0.5)
        self._add("train loss", x, scalar(loss_sum) / n)
        self._add("train acc", x, scalar(correct) / n)
        self._draw(learner)

    def after_epoch(self, learner):
        self._add_epoch(learner.history[-1])
        self._draw(learner, save=True)

    def _draw(self, learner, save=False):
        shown = in_notebook()
        if not shown and not (save and self.path):
            return  # outside Jupyter nobody sees the figure between saves
        plot_curves(self.series, fig=self.fig, title=self.title,
                    xlim=(0, max(learner.num_epochs, 1)),
                    path=self.path if save else None)
        if shown:
            from IPython import display  # deferred: only inside a notebook

            # A PNG made here shows under any matplotlib backend the kernel has.
            buffer = io.BytesIO()
            self.fig.savefig(buffer, format="png", dpi=100)
            image = display.Image(data=buffer.getvalue(), format="png")
            if self.handle is None:
                self.handle = display.display(image, display_id=True)
            else:
                self.handle.update(image)


def _finite(net):
    """Whether every parameter of ``net`` is finite (one copy to the host of each)."""
    return all(np.isfinite(p.list_data()[0].asnumpy()).all()
               for p in net.collect_params().values())


def _length(data_iter):
    """Batches per epoch of ``data_iter``, or None for an iterator without a length."""
    try:
        return len(data_iter)
    except TypeError:
        return None


class Checkpointer(Callback):
    """Save a checkpoint after every epoch, every few minutes, and when training is interrupted.

    The checkpoint (see ``gluon_resnet.checkpoint``) is replaced atomically,
    so a kill at any moment leaves the last good one.  It is not written when
    a parameter is NaN or infinite (the training diverged): the previous
    checkpoint stays.  During an epoch it
    is written after the batch that ends ``minutes`` since the last save (the
    state a stop signal saves, to resume inside the epoch), so a kill loses
    at most that much training.

    Parameters
    ----------
    path : str
        Checkpoint file, for example ``runs/chapter/checkpoint.ckpt``.
    config : dict
        The run's configuration, stored in the checkpoint for resuming.
    data : DataDescription, optional
        What the network was trained on (class names, channels, input size,
        mean and std: the loader's ``description()``), stored as
        ``meta["data"]`` (its ``to_dict()``) for predicting and exporting.
    minutes : float, default 10
        Save during the epoch when this many minutes passed since the last
        save; 0 saves only at epoch ends and on stop signals.
    batches : int, optional
        Also save every this many batches of an epoch (tests and very slow
        batches).

    Attributes
    ----------
    clock : callable
        Seconds, for ``minutes`` (``time.monotonic``).
    """

    order = 10

    def __init__(self, path, config, data=None, minutes=10, batches=None):
        non_negative_number(minutes, "minutes", "Checkpointer")
        optional_positive_int(batches, "batches", "Checkpointer")
        self.path, self.config = path, config
        self.data = None if data is None else data.to_dict()
        self.minutes, self.batches = minutes, batches
        self.clock = time.monotonic
        self.saved = None  # (epoch, batch) of the last save
        self.last_time = None

    def before_fit(self, learner):
        self.last_time = self.clock()

    def _save(self, learner):
        if self.saved == (learner.epoch, learner.batch):
            return  # stopped during evaluation: the epoch's checkpoint is this state
        if not _finite(learner.net):
            return  # diverged: DivergenceCheck stops the run at the next batch
        save_checkpoint(self.path, learner.net, learner.trainer,
                        dict(learner.state(), config=self.config, data=self.data))
        self.saved = (learner.epoch, learner.batch)
        self.last_time = self.clock()
        learner.last_checkpoint = self.path

    after_epoch = after_cancel_fit = _save

    def after_batch(self, learner):
        if learner.batch == _length(learner.train_iter):
            return  # the epoch's end is saved after the evaluation
        if (self.batches is not None and learner.batch % self.batches == 0) or (
                self.minutes > 0 and self.clock() - self.last_time >= 60 * self.minutes):
            self._save(learner)


class OneCycleSchedule(Callback):
    """One-cycle learning rate (Smith 2018): up linearly, then down to near zero.

    The rate rises from ``max_lr / div`` to ``max_lr`` over the first
    ``warmup`` share of all steps, then falls linearly to ``max_lr /
    final_div`` at the last step.  It is a function of the step number
    (``epoch * batches_per_epoch + batch``) only, so a resumed run continues
    the same curve.
    """

    def __init__(self, max_lr, warmup=0.25, div=10.0, final_div=1000.0):
        self.max_lr, self.warmup, self.div, self.final_div = max_lr, warmup, div, final_div

    def rate(self, step, total):
        """The learning rate of step ``step`` (0-based) out of ``total``."""
        peak = max(1, int(round(self.warmup * total)))
        low, high, end = self.max_lr / self.div, self.max_lr, self.max_lr / self.final_div
        if step < peak:
            return low + (high - low) * step / peak
        return high + (end - high) * (step - peak) / max(1, total - 1 - peak)

    def before_step(self, learner):
        per_epoch = len(learner.train_iter)
        step = learner.epoch * per_epoch + learner.batch
        learner.trainer.set_learning_rate(self.rate(step, learner.num_epochs * per_epoch))
