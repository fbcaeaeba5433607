"""Training on a small ``Learner``: ``train_ch5`` (d2lzh) and ``train_ch6`` (d2l 1.x).

The loop runs the phases fit > epoch > train | validate, train > batch > step
(see ``gluon_resnet.events``) and fires an event before and after each; a
callback may cancel a phase, and ``after_fit`` runs however training ends.  It
only trains and evaluates.  What it remembers (sums, timing, history) is the
``Recorder`` callback, the NaN check is ``DivergenceCheck``, and everything
optional hangs on it as a ``Callback``: the book's epoch lines, a progress
bar, history files, learning-curve figures, checkpoints.

Speed: metrics are summed on the device and read once per epoch; the host
waits for the *previous* batch's loss before queueing the next batch, so the
engine always has work queued while memory stays bounded.

Stopping: during ``fit`` the first SIGINT (Ctrl-C), SIGTERM or SIGHUP asks the
loop to stop after the current batch (``gluon_resnet.signals``); the loop then
cancels the fit, the callbacks save the state (``after_cancel_fit``) and ``fit``
raises ``TrainingInterrupted`` (a ``KeyboardInterrupt``).  A second signal
stops at once.

State: a checkpoint holds where the loop is (``epoch``, ``batch``), the
history, and each callback's own state (``Learner.state``).
"""

from ._mxnet import mx
from mxnet import autograd, gluon, init

from .arrays import array_ops, in_caller_mode, scalar
from .callbacks import (Checkpointer, DivergenceCheck, LiveCurves, PrintEpochs, PrintSummary,
                        ProgressBar, Recorder)
from .checkpoint import batch_seed
from .events import (CANCELS, Callback, CancelFit, CancelPhase, TrainingDiverged,
                     TrainingInterrupted)
from .signals import StopSignals, signal_name
from .validate import non_negative_int, positive_number

__all__ = ["Learner", "Callback", "evaluate_accuracy", "train_ch5", "TrainingInterrupted",
           "TrainingDiverged", "as_ctx_list", "LabelSmoothingLoss", "PrintEpochs",
           "evaluate_accuracy_gpu", "train_ch6"]


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


def _correct(scores, labels):
    """The number of correct predictions among ``scores`` ``(N, classes)``: one float32 value.

    Both sides are compared as float32: in numpy mode ``argmax`` gives int64
    and a comparison gives bool, and MXNet compares only arrays of one type.
    """
    predicted = scores.argmax(axis=1).astype("float32", copy=False)
    hits = predicted == labels.astype("float32", copy=False)
    return hits.astype("float32", copy=False).sum()


def _add_up(arrays):
    """The sum of a non-empty list of arrays of either mode (numpy mode has no ``add_n``)."""
    total = arrays[0]
    for a in arrays[1:]:
        total = total + a
    return total


def evaluate_accuracy(data_iter, net, ctx=None, *, flip=False):
    """Accuracy of ``net`` on ``data_iter`` (d2lzh's signature).

    Works in both array modes: on legacy ``nd`` batches, and on ``mxnet.np``
    batches after ``npx.set_np()``.

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
    ops = array_ops(mx.nd)
    correct = in_caller_mode(mx.nd.zeros((1,), ctx=ctxs[0]))
    n = 0
    for X, y in data_iter:
        parts = ctxs[:max(1, y.shape[0])]  # a batch smaller than the devices skips the last
        for xs, ys in zip(_split(X, parts), _split(y, parts)):
            scores = net(xs)
            if flip:
                scores = (ops.softmax(scores, axis=1)
                          + ops.softmax(net(ops.flip(xs, axis=3)), axis=1))
            correct += _correct(scores, ys).as_in_context(ctxs[0])
        n += y.shape[0]
    if n == 0:
        raise ValueError("evaluate_accuracy: data_iter yielded no examples")
    return scalar(correct) / n


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


def _check_state_keys(callbacks):
    """Refuse two callbacks with state under one ``state_key`` (one would lose its state)."""
    keys = [cb.state_key for cb in callbacks if type(cb).state_dict is not Callback.state_dict]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError("Learner: several callbacks keep their state under the name %s; give "
                         "each its own state_key" % ", ".join(repr(k) for k in twice))


class Learner:
    """Train ``net`` with ``trainer`` on ``train_iter``, evaluate on ``test_iter``.

    Parameters
    ----------
    net : mxnet.gluon.Block
        Initialised network, inputs ``(N, C, H, W)`` to scores ``(N, classes)``.
    train_iter, test_iter : iterable of (X, y)
        Data; ``test_iter`` may be None (no validate phase).  A loader with a
        settable ``epoch`` attribute (as ``load_data_fashion_mnist`` returns)
        gets the epoch number set, so that its shuffle order is reproducible
        on resume.
    trainer : mxnet.gluon.Trainer
        Its ``step`` gets each batch's size; a ``distributed.DistributedTrainer``
        turns that into the global batch of all workers.
    ctx : Context or list of Context, optional
        Devices; batches are split across several.  CPU by default.
    loss : mxnet.gluon.loss.Loss, optional
        ``SoftmaxCrossEntropyLoss()`` by default.
    callbacks : list of Callback
        Added to the ``Recorder`` and ``DivergenceCheck`` every learner has.
    handle_signals : bool, default True
        Turn the first SIGINT, SIGTERM or SIGHUP into a clean stop (main
        thread only).
    eval_flip : bool, default False
        Evaluate with flip test-time augmentation (see ``evaluate_accuracy``).
    seed : int or None, default None
        Reseed MXNet's generators before every batch from ``(seed, epoch, batch)``, so
        that dropout masks are the same in a resumed run (None: MXNet's state runs on).

    Attributes
    ----------
    The state callbacks read, all set here and updated by the loop:

    num_epochs : int
        The ``num_epochs`` of the running ``fit``.
    epoch : int
        Epochs completed (so the 0-based index of the running epoch).
    batch : int
        Batches completed within the running epoch.
    X, y : NDArray
        The running batch, ``(N, C, H, W)`` and ``(N,)``, set before
        ``before_batch``; ``batch_size`` is ``N``.
    batch_loss, batch_correct : NDArray of shape (1,), or a 0-d mxnet.np array
        Summed loss and correct predictions of the running batch (after the
        step; not yet computed by the engine).  Arrays are in the caller's
        mode: ``mxnet.np`` after ``npx.set_np()``.
    last_loss : float or None
        Mean loss of the last batch the engine finished (``DivergenceCheck``).
    test_acc : float
        Accuracy of the running epoch's validate phase (NaN before it ends,
        or without test data).
    recorder : Recorder
        Running sums, timing and ``history`` (also ``learner.history``).
    stop : StopSignals
        ``stop.signum`` is the stop signal received during ``fit``, if any.
    last_checkpoint : str or None
        The file a ``Checkpointer`` wrote last.
    """

    def __init__(self, net, train_iter, test_iter, trainer, ctx=None, loss=None,
                 callbacks=(), handle_signals=True, eval_flip=False, seed=None):
        self.net, self.trainer = net, trainer
        self.train_iter, self.test_iter = train_iter, test_iter
        self.ctxs = as_ctx_list(ctx)
        self.loss = loss or gluon.loss.SoftmaxCrossEntropyLoss()
        self.eval_flip = eval_flip
        self.seed = seed
        self.recorder = Recorder()
        self.callbacks = sorted([self.recorder, DivergenceCheck(), *callbacks],
                                key=lambda cb: cb.order)
        _check_state_keys(self.callbacks)
        self.stop = StopSignals(enabled=handle_signals)
        self.num_epochs, self.epoch, self.batch = 0, 0, 0
        self.X = self.y = self.batch_loss = self.batch_correct = None
        self.batch_size = 0
        self.last_loss = None
        self.test_acc = float("nan")
        self.last_checkpoint = None

    @property
    def history(self):
        """One dict per finished epoch (see ``Recorder``)."""
        return self.recorder.history

    # -- state ---------------------------------------------------------------
    def state(self):
        """What a checkpoint needs besides parameters and optimizer state.

        ``epoch`` and ``batch`` (where the loop is), ``history`` (a copy for
        readers of the checkpoint) and ``callbacks``: the ``state_dict()`` of
        each callback that has one, by its ``state_key``.
        """
        saved = {}
        for cb in self.callbacks:
            state = cb.state_dict()
            if state is not None:
                saved[cb.state_key] = state
        return {"epoch": self.epoch, "batch": self.batch, "history": self.history,
                "callbacks": saved}

    def restore(self, meta):
        """Continue from a checkpoint's ``meta`` (see ``checkpoint.load_checkpoint``).

        Each callback gets back the state saved under its ``state_key``; one
        the checkpoint has nothing for starts afresh.
        """
        self.epoch, self.batch = meta["epoch"], meta["batch"]
        saved = meta.get("callbacks")
        if saved is None:  # saved before callbacks kept their own state: only the Recorder's
            saved = {self.recorder.state_key: {"history": meta["history"],
                                               "partial": meta.get("partial")}}
        for cb in self.callbacks:
            if cb.state_key in saved:
                cb.load_state_dict(saved[cb.state_key])

    # -- phases --------------------------------------------------------------
    def _phase(self, name, body, *args, then=None):
        """Fire ``before_<name>``, run ``body``, call ``then``, fire ``after_<name>``.

        The phase's cancel exception, raised by a callback in ``before_<name>``
        or while ``body`` runs, skips the rest of both and fires
        ``after_cancel_<name>``; ``then`` (the counter moving on) and
        ``after_<name>`` follow either way.  Other exceptions pass on at once.
        """
        try:
            self._fire("before_" + name)
            body(*args)
        except CANCELS.get(name, ()):
            self._fire("after_cancel_" + name)
        if then is not None:
            then()
        self._after(name)

    def _after(self, name):
        """Fire ``after_<name>``; the phase has ended, so its own cancel comes too late."""
        try:
            self._fire("after_" + name)
        except CANCELS.get(name, ()) as late:
            raise RuntimeError("%s was raised in after_%s, when the %s had ended; raise it in "
                               "before_%s or in an event of a phase inside it"
                               % (type(late).__name__, name, name, name)) from None

    def _fire(self, event):
        for cb in self.callbacks:
            getattr(cb, event)(self)

    def fit(self, num_epochs):
        """Train until ``num_epochs`` epochs are complete; return the history.

        A callback's ``CancelFit`` ends training early (the history so far is
        returned); a stop signal ends it the same way, then raises
        ``TrainingInterrupted``.  ``after_fit`` runs however training ends.
        """
        self.num_epochs = non_negative_int(num_epochs, "num_epochs", "Learner.fit")
        with self.stop:
            try:
                self._fire("before_fit")
                self._fit()
            except CancelFit:
                self._fire("after_cancel_fit")
            except CancelPhase as stray:
                raise RuntimeError("%s was raised outside the %s phase it cancels"
                                   % (type(stray).__name__, stray.phase)) from None
            finally:  # callbacks let go of what they hold (a progress bar), however fit ends
                self._after("fit")
            if self._stopped_by_signal():
                raise self._interrupted()
        return self.history

    def _fit(self):
        while self.epoch < self.num_epochs:
            self._phase("epoch", self._epoch, then=self._next_epoch)
            self._stop_if_asked()

    def _epoch(self):
        self.test_acc = float("nan")
        self._phase("train", self._train)
        if self.test_iter is not None:
            self._phase("validate", self._validate)

    def _next_epoch(self):
        self.epoch, self.batch = self.epoch + 1, 0

    def _train(self):
        if hasattr(self.train_iter, "epoch"):
            self.train_iter.epoch = self.epoch
        done = self.batch  # resuming inside an epoch: these batches are done
        empty = True
        for i, (X, y) in enumerate(self.train_iter):
            empty = False
            if i >= done:
                self.X, self.y, self.batch_size = X, y, y.shape[0]
                self._phase("batch", self._batch, then=self._next_batch)
                self._stop_if_asked()
        if empty:
            raise ValueError("the training data yielded no examples")

    def _validate(self):
        self.test_acc = evaluate_accuracy(self.test_iter, self.net, self.ctxs,
                                          flip=self.eval_flip)

    def _batch(self):
        if self.seed is not None:  # MXNet's draws (dropout) follow from (seed, epoch, batch)
            mx.random.seed(batch_seed(self.seed, self.epoch, self.batch))
        self._phase("step", self._step)

    def _next_batch(self):
        self.batch += 1

    def _step(self):
        xs, ys = _split(self.X, self.ctxs), _split(self.y, self.ctxs)
        with autograd.record():
            outs = [self.net(x) for x in xs]
            losses = [self.loss(o, t).sum() for o, t in zip(outs, ys)]
        autograd.backward(losses)  # bf16 AMP needs no loss scaling
        self.trainer.step(self.batch_size)
        home = self.ctxs[0]
        self.batch_loss = _add_up([part.as_in_context(home) for part in losses])
        self.batch_correct = _add_up([_correct(o, t).as_in_context(home)
                                      for o, t in zip(outs, ys)])

    # -- stopping ------------------------------------------------------------
    def _stopped_by_signal(self):
        return self.stop.requested and self.epoch < self.num_epochs

    def _stop_if_asked(self):
        """On a stop signal, cancel the fit (its callbacks save the state there)."""
        if self._stopped_by_signal():
            raise CancelFit()

    def _interrupted(self):
        """The ``TrainingInterrupted`` that says where a stop signal ended training."""
        if self.batch:
            where = "in epoch %d after batch %d" % (self.epoch + 1, self.batch)
        else:
            where = "after epoch %d" % self.epoch
        message = "training interrupted (%s) %s" % (signal_name(self.stop.signum), where)
        if self.last_checkpoint is None:
            message += ("; the network keeps the parameters trained so far (a Checkpointer "
                        "callback, as gluon-resnet train uses, would also save them)")
        return TrainingInterrupted(message, checkpoint=self.last_checkpoint,
                                   signum=self.stop.signum)


def train_ch5(net, train_iter, test_iter, batch_size, trainer, ctx, num_epochs, *,
              callbacks=()):
    """Train and evaluate as d2lzh's ``train_ch5`` does, and return the history.

    Prints ``training on cpu(0)`` and, per epoch, ``epoch 1, loss 0.4856, train
    acc 0.828, test acc 0.894, time 61.8 sec``.  ``batch_size`` is accepted for
    d2lzh compatibility; the optimizer step uses each batch's actual size.
    Ctrl-C (or SIGTERM, SIGHUP) stops after the current batch, keeps the
    trained parameters in ``net`` and raises ``TrainingInterrupted``.

    ``callbacks`` (keyword only, not in d2lzh) adds ``Learner`` callbacks, for
    example ``callbacks.LiveCurves()``: learning curves that update while the
    network trains in a notebook.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``loss``, ``train_acc``, ``test_acc``, ``time``, ``lr``.
    """
    learner = Learner(net, train_iter, test_iter, trainer, ctx,
                      callbacks=[PrintEpochs(), ProgressBar(enabled=None)] + list(callbacks))
    return learner.fit(num_epochs)


# -- the current edition (d2l 1.x, numpy mode) --------------------------------

def evaluate_accuracy_gpu(net, data_iter, device=None):
    """Accuracy of ``net`` on ``data_iter`` (d2l 1.x's name and argument order).

    ``device`` defaults to the device of the network's first parameter, as in
    d2l (the CPU for a network without parameters).  Works in either mode; the
    same computation as ``evaluate_accuracy(data_iter, net, device)``.

    Returns
    -------
    float
        Fraction of correctly classified examples.
    """
    if device is None:
        params = list(net.collect_params().values())
        device = params[0].list_ctx()[0] if params else mx.cpu()
    return evaluate_accuracy(data_iter, net, device)


def train_ch6(net, train_iter, test_iter, num_epochs, lr, device, *, progress=None,
              checkpoint=None, plot=True, callbacks=()):
    """Train and evaluate as d2l 1.x's ``train_ch6`` does (the current edition).

    Initialises ``net`` on ``device`` with Xavier (``force_reinit``), trains it
    with SGD at learning rate ``lr`` and softmax cross-entropy, evaluates it
    after each epoch and prints, at the end::

        loss 0.xxx, train acc 0.xxx, test acc 0.xxx
        NNNN.N examples/sec on cpu(0)

    (the last epoch's means; all training examples over the time of the
    training passes, evaluation left out, as d2l's timer counts).

    In Jupyter a figure of the training loss, training accuracy and test
    accuracy grows below the cell while it trains, redrawn in place; elsewhere
    nothing is drawn.  Ctrl-C (or SIGTERM, SIGHUP) stops after the current
    batch, keeps the trained parameters in ``net`` and raises
    ``TrainingInterrupted``.  Works in numpy mode (``npx.set_np()``, as the
    current edition runs) and in the legacy mode.

    Keyword-only arguments (not in d2l):

    progress : bool or None, default None
        A progress bar per epoch; None: only when standard error is a terminal.
    checkpoint : str, optional
        Save parameters and optimizer state to this file after every epoch and
        when interrupted; load them with ``gluon_resnet.checkpoint.load_checkpoint``.
    plot : bool, default True
        Draw the live figure in Jupyter.
    callbacks : list of Callback
        More ``Learner`` callbacks.

    Returns
    -------
    None
        As in d2l (so that a notebook cell ending with it shows only the lines).
    """
    num_epochs = non_negative_int(num_epochs, "num_epochs", "train_ch6")
    positive_number(lr, "lr", "train_ch6")
    net.initialize(init.Xavier(), ctx=device, force_reinit=True)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
    extra = [PrintSummary(), ProgressBar(enabled=progress)]
    if plot:
        extra.append(LiveCurves())
    if checkpoint:
        data = train_iter.description() if hasattr(train_iter, "description") else None
        extra.append(Checkpointer(checkpoint, {"trainer": "train_ch6", "num_epochs": num_epochs,
                                               "lr": lr}, data))
    learner = Learner(net, train_iter, test_iter, trainer, device,
                      loss=gluon.loss.SoftmaxCrossEntropyLoss(),
                      callbacks=extra + list(callbacks))
    learner.fit(num_epochs)
