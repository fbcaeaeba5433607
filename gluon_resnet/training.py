"""Training: d2lzh's ``train_ch5`` and ``evaluate_accuracy`` on a small ``Learner``.

The loop (``Learner.fit -> _epoch -> _batch``) only trains and keeps score;
everything optional hangs on it as a ``Callback``: printing the book's epoch
lines, a progress bar, history files, learning-curve figures and checkpoints.

Speed: metrics are summed on the device and read once per epoch.  The host
waits for the *previous* batch's loss before queueing the next batch, so the
engine always has work queued while memory stays bounded, and that finished
value is what the divergence check reads: no batch waits for itself.

Interruption: during ``fit`` the first Ctrl-C (SIGINT) asks the loop to stop
after the current batch; the callbacks then save the last consistent state and
``fit`` raises ``TrainingInterrupted`` (a ``KeyboardInterrupt``).  A second
Ctrl-C interrupts at once.
"""

import math
import signal
import threading
import time

from ._mxnet import mx
from mxnet import autograd, gluon

__all__ = ["Learner", "Callback", "evaluate_accuracy", "train_ch5", "TrainingInterrupted",
           "TrainingDiverged", "as_ctx_list", "LabelSmoothingLoss"]


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C; ``checkpoint`` is where the state was saved (or None)."""

    def __init__(self, message, checkpoint=None):
        super().__init__(message)
        self.checkpoint = checkpoint


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def as_ctx_list(ctx):
    """``ctx`` as a non-empty list of contexts (``None`` means the CPU)."""
    if ctx is None:
        return [mx.cpu()]
    if isinstance(ctx, mx.Context):
        return [ctx]
    ctx = list(ctx)
    if not ctx:
        raise ValueError("ctx is an empty list; give at least one device, for example mx.cpu()")
    return ctx


def _split(batch, ctxs):
    if len(ctxs) == 1:
        return [batch.as_in_context(ctxs[0])]
    return gluon.utils.split_and_load(batch, ctxs, even_split=False)


def evaluate_accuracy(data_iter, net, ctx=None, *, flip=False):
    """Accuracy of ``net`` on ``data_iter`` (d2lzh's signature).

    Parameters
    ----------
    data_iter : iterable of (X, y)
        Batches of inputs ``(N, C, H, W)`` and integer labels ``(N,)``.
    net : mxnet.gluon.Block
        Maps ``X`` to scores ``(N, num_classes)``.
    ctx : mxnet.Context or list of Context, optional
        Devices; the batch is split across several.  CPU by default.
    flip : bool, default False
        Keyword only, not in d2lzh: test-time augmentation that adds the
        softmax of each image's left-right mirror image to its own before
        the argmax (twice the work).

    Returns
    -------
    float
        Fraction of correctly classified examples; the host syncs once.
    """
    ctxs = as_ctx_list(ctx)
    correct = mx.nd.zeros((1,), ctx=ctxs[0])
    n = 0
    for X, y in data_iter:
        for xs, ys in zip(_split(X, ctxs), _split(y, ctxs)):
            scores = net(xs)
            if flip:
                scores = scores.softmax(axis=1) + net(xs.flip(axis=3)).softmax(axis=1)
            hits = (scores.argmax(axis=1) == ys.astype("float32")).sum()
            correct += hits.as_in_context(ctxs[0])
        n += y.shape[0]
    if n == 0:
        raise ValueError("evaluate_accuracy: data_iter yielded no examples")
    return correct.asscalar() / n


class LabelSmoothingLoss(gluon.loss.Loss):
    """Softmax cross-entropy against labels smoothed towards the uniform distribution.

    The target of class ``y`` is ``1 - smoothing + smoothing / C`` and every
    other class gets ``smoothing / C`` (Szegedy et al. 2016, section 7).
    ``smoothing=0`` is ``SoftmaxCrossEntropyLoss``.

    Shapes
    ------
    ``pred`` ``(N, C)`` scores, ``label`` ``(N,)`` integers; output ``(N,)``.
    """

    def __init__(self, smoothing=0.1, num_classes=10, **kwargs):
        super().__init__(weight=None, batch_axis=0, **kwargs)
        if not 0 <= smoothing < 1:
            raise ValueError("label smoothing must be in [0, 1), got %r" % (smoothing,))
        self.smoothing, self.num_classes = smoothing, num_classes

    def hybrid_forward(self, F, pred, label):
        logp = F.log_softmax(pred.astype("float32"), axis=-1)
        target = F.one_hot(label, self.num_classes, on_value=1 - self.smoothing + self.smoothing /
                           self.num_classes, off_value=self.smoothing / self.num_classes)
        return -F.sum(logp * target, axis=-1)


class Callback:
    """Hooks around ``Learner.fit``; override the ones you need.

    Each hook receives the ``Learner``, whose attributes (``epoch``, ``batch``,
    ``history``, ``net``, ``trainer``...) describe the current state.
    """

    order = 0

    def before_fit(self, learner):
        pass

    def before_epoch(self, learner):
        pass

    def before_batch(self, learner):
        pass

    def after_batch(self, learner):
        pass

    def after_epoch(self, learner):
        pass

    def after_interrupt(self, learner):
        pass

    def after_fit(self, learner):
        pass


class Learner:
    """Train ``net`` with ``trainer`` on ``train_iter``, evaluate on ``test_iter``.

    Parameters
    ----------
    net : mxnet.gluon.Block
        Initialised network, inputs ``(N, C, H, W)`` to scores ``(N, classes)``.
    train_iter, test_iter : iterable of (X, y)
        Data; ``test_iter`` may be None.  A loader with a settable ``epoch``
        attribute (as ``load_data_fashion_mnist`` returns) gets the epoch
        number set, so that its shuffle order is reproducible on resume.
    trainer : mxnet.gluon.Trainer
    ctx : Context or list of Context, optional
        Devices; batches are split across several.  CPU by default.
    loss : mxnet.gluon.loss.Loss, optional
        ``SoftmaxCrossEntropyLoss()`` by default.
    callbacks : list of Callback
    handle_sigint : bool, default True
        Turn the first Ctrl-C into a clean stop (main thread only).
    eval_flip : bool, default False
        Evaluate with flip test-time augmentation (see ``evaluate_accuracy``).
    num_workers : int, default 1
        Processes training together through a distributed kvstore.  Each
        batch is this worker's equal share of a global batch ``num_workers``
        times larger; the kvstore sums the gradients of all workers, and the
        step divides by the global batch size.

    Attributes
    ----------
    epoch : int
        Epochs completed so far (0-based index of the running epoch).
    batch : int
        Batches completed within the running epoch.
    history : list of dict
        One entry per finished epoch: ``epoch``, ``loss``, ``train_acc``,
        ``test_acc``, ``time``, ``lr``.
    """

    def __init__(self, net, train_iter, test_iter, trainer, ctx=None, loss=None,
                 callbacks=(), handle_sigint=True, num_workers=1, eval_flip=False):
        self.net, self.train_iter, self.test_iter, self.trainer = net, train_iter, test_iter, trainer
        self.ctxs = as_ctx_list(ctx)
        self.loss = loss or gluon.loss.SoftmaxCrossEntropyLoss()
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)
        self.handle_sigint = handle_sigint
        self.num_workers = num_workers
        self.eval_flip = eval_flip
        self.epoch, self.batch, self.history = 0, 0, []
        self.partial = None  # metric sums of an interrupted epoch: [loss, correct, n, seconds]
        self.interrupt_requested = False
        self.num_epochs = 0

    # -- events --------------------------------------------------------------
    def _event(self, name):
        for cb in self.callbacks:
            getattr(cb, name)(self)

    # -- state ---------------------------------------------------------------
    def state(self):
        """What a checkpoint needs besides parameters and optimizer state."""
        return {"epoch": self.epoch, "batch": self.batch, "history": self.history,
                "partial": self.partial}

    def restore(self, meta):
        """Continue from a checkpoint's ``meta`` (see ``checkpoint.load_checkpoint``)."""
        self.epoch, self.batch = meta["epoch"], meta["batch"]
        self.history = list(meta["history"])
        self.partial = meta.get("partial")

    # -- loop ----------------------------------------------------------------
    def fit(self, num_epochs):
        """Train until ``num_epochs`` epochs are complete; return the history."""
        if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 0:
            raise ValueError("num_epochs must be a non-negative integer, got %r" % (num_epochs,))
        self.num_epochs = num_epochs
        self.interrupt_requested = False
        previous = self._install_sigint()
        try:
            self._event("before_fit")
            while self.epoch < num_epochs:
                self._run_epoch()
                if self.interrupt_requested and self.epoch < num_epochs:
                    # Ctrl-C during the evaluation: the epoch is complete and saved.
                    raise TrainingInterrupted("training interrupted after epoch %d" % self.epoch,
                                              checkpoint=getattr(self, "last_checkpoint", None))
            self._event("after_fit")
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        return self.history

    def _install_sigint(self):
        if not self.handle_sigint or threading.current_thread() is not threading.main_thread():
            return None

        def on_sigint(signum, frame):
            if self.interrupt_requested:
                raise KeyboardInterrupt
            self.interrupt_requested = True

        return signal.signal(signal.SIGINT, on_sigint)

    def _sums(self):
        ctx = self.ctxs[0]
        loss_sum, correct, n, seconds = self.partial or (0.0, 0.0, 0, 0.0)
        return mx.nd.array([loss_sum], ctx=ctx), mx.nd.array([correct], ctx=ctx), n, seconds

    def _run_epoch(self):
        loss_sum, correct, n, seconds = self._sums()
        start, skip = time.time(), self.batch
        if hasattr(self.train_iter, "epoch"):
            self.train_iter.epoch = self.epoch
        self._event("before_epoch")
        pending = None  # (batch index, loss NDArray) of the batch queued last
        for i, (X, y) in enumerate(self.train_iter):
            if i < skip:
                continue  # resuming inside an epoch: these batches are done
            self.batch = i
            self._event("before_batch")
            batch_loss, batch_correct = self._step(X, y)
            loss_sum += batch_loss.as_in_context(loss_sum.context)
            correct += batch_correct.as_in_context(correct.context)
            n += y.shape[0]
            if pending is not None:
                self._check_finite(*pending)
            pending = (i, batch_loss)
            self.batch = i + 1
            self.batch_size = y.shape[0]
            # Running sums of the epoch on the device, for callbacks that plot
            # them (reading them waits for the engine, so do it rarely).
            self.running = (loss_sum, correct, n)
            self._event("after_batch")
            if self.interrupt_requested:
                self._check_finite(*pending)
                self.partial = [float(loss_sum.asscalar()), float(correct.asscalar()), n,
                                seconds + time.time() - start]
                self._event("after_interrupt")
                saved = getattr(self, "last_checkpoint", None)
                where = "training interrupted in epoch %d after batch %d" % (self.epoch + 1,
                                                                             self.batch)
                if saved is None:
                    where += ("; the network keeps the parameters trained so far (a Checkpointer "
                              "callback, as gluon-resnet train uses, would also save them)")
                raise TrainingInterrupted(where, checkpoint=saved)
        if pending is not None:
            self._check_finite(*pending)
        if n == 0:
            raise ValueError("the training data yielded no examples")
        train_time = seconds + time.time() - start
        test_acc = (evaluate_accuracy(self.test_iter, self.net, self.ctxs, flip=self.eval_flip)
                    if self.test_iter is not None else float("nan"))
        self.history.append({
            "epoch": self.epoch + 1, "loss": float(loss_sum.asscalar()) / n,
            "train_acc": float(correct.asscalar()) / n, "test_acc": float(test_acc),
            "time": seconds + time.time() - start, "train_time": train_time,
            "lr": self.trainer.learning_rate})
        self.epoch, self.batch, self.partial = self.epoch + 1, 0, None
        self._event("after_epoch")

    def _step(self, X, y):
        xs, ys = _split(X, self.ctxs), _split(y, self.ctxs)
        with autograd.record():
            outs = [self.net(x) for x in xs]
            losses = [self.loss(o, t).sum() for o, t in zip(outs, ys)]
        autograd.backward(losses)  # bf16 AMP needs no loss scaling
        self.trainer.step(X.shape[0] * self.num_workers)
        home = self.ctxs[0]
        batch_loss = mx.nd.add_n(*[l.as_in_context(home) for l in losses])
        batch_correct = mx.nd.add_n(*[
            (o.argmax(axis=1) == t.astype("float32")).sum().as_in_context(home)
            for o, t in zip(outs, ys)])
        return batch_loss, batch_correct

    def _check_finite(self, index, batch_loss):
        value = batch_loss.asscalar()  # the engine has finished this batch by now or soon
        self.last_loss = value
        if not math.isfinite(value):
            raise TrainingDiverged(
                "the loss became %s in epoch %d, batch %d: training stopped. The learning "
                "rate (%g) is probably too high; try a lower one, for example %g."
                % (value, self.epoch + 1, index + 1, self.trainer.learning_rate,
                   self.trainer.learning_rate / 10))


class PrintEpochs(Callback):
    """Print d2lzh's lines: ``training on cpu(0)`` and one line per epoch."""

    def before_fit(self, learner):
        ctx = learner.ctxs[0] if len(learner.ctxs) == 1 else learner.ctxs
        print("training on", ctx, flush=True)

    def after_epoch(self, learner):
        h = learner.history[-1]
        print("epoch %d, loss %.4f, train acc %.3f, test acc %.3f, time %.1f sec"
              % (h["epoch"], h["loss"], h["train_acc"], h["test_acc"], h["time"]), flush=True)


def train_ch5(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs, *,
              callbacks=()):
    """Train and evaluate as d2lzh's ``train_ch5`` does, and return the history.

    Prints ``training on cpu(0)`` and, per epoch, ``epoch 1, loss 0.4856, train
    acc 0.828, test acc 0.894, time 61.8 sec``.  ``batch_size`` is accepted for
    d2lzh compatibility; the optimizer step uses each batch's actual size.
    Ctrl-C stops after the current batch, keeps the trained parameters in
    ``net`` and raises ``TrainingInterrupted``.

    ``callbacks`` (keyword only, not in d2lzh) adds ``Learner`` callbacks, for
    example ``callbacks.LiveCurves()``: learning curves that update while the
    network trains in a notebook.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``loss``, ``train_acc``, ``test_acc``, ``time``, ``lr``.
    """
    from .callbacks import ProgressBar

    learner = Learner(net, train_iter, test_iter, trainer, ctx,
                      callbacks=[PrintEpochs(), ProgressBar(enabled=None)] + list(callbacks))
    return learner.fit(num_epochs)
