"""Callbacks for ``Learner``: progress bar, history files, figures, checkpoints."""

import csv
import io
import json
import os
import sys

from .checkpoint import atomic_write, save_checkpoint
from .training import Callback

__all__ = ["ProgressBar", "HistoryWriter", "CurvePlotter", "Checkpointer", "OneCycleSchedule"]


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

    def before_epoch(self, learner):
        if not self._on():
            return
        from tqdm import tqdm

        total = getattr(learner.train_iter, "num_examples", None)
        self.bar = tqdm(total=total, initial=0, unit="img", unit_scale=False, leave=False,
                        desc="epoch %d/%d" % (learner.epoch + 1, learner.num_epochs),
                        dynamic_ncols=True, file=sys.stderr)

    def after_batch(self, learner):
        if self.bar is not None:
            self.bar.update(learner.batch_size)
            if hasattr(learner, "last_loss"):
                self.bar.set_postfix(loss="%.4f" % learner.last_loss, refresh=False)

    def _close(self, learner=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    after_epoch = after_interrupt = _close


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
        from .plotting import plot_history

        plot_history(learner.history, path=self.path, title=self.title)


class Checkpointer(Callback):
    """Save a checkpoint after every epoch and when training is interrupted.

    The checkpoint (see ``gluon_resnet.checkpoint``) is replaced atomically,
    so the last good one survives a crash.  It is not written when the loss
    has diverged: the previous checkpoint stays.

    Parameters
    ----------
    path : str
        Checkpoint file, for example ``runs/chapter/checkpoint.ckpt``.
    config : dict
        The run's configuration, stored in the checkpoint for resuming.
    """

    order = 10

    def __init__(self, path, config):
        self.path, self.config = path, config

    def _save(self, learner):
        save_checkpoint(self.path, learner.net, learner.trainer,
                        dict(learner.state(), config=self.config))
        learner.last_checkpoint = self.path

    after_epoch = after_interrupt = _save


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

    def before_batch(self, learner):
        per_epoch = len(learner.train_iter)
        step = learner.epoch * per_epoch + learner.batch
        learner.trainer.set_learning_rate(self.rate(step, learner.num_epochs * per_epoch))
