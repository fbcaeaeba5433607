"""What the training loop tells its callbacks, and how training ends early.

``Learner.fit`` runs six nested phases, and fires ``before_<phase>`` and
``after_<phase>`` around each one::

    fit
      epoch                      (once per epoch)
        train                    (the pass over the training data)
          batch                  (once per batch)
            step                 (forward, backward, optimizer update)
        validate                 (the test set, when there is one)

A ``Callback`` overrides the hooks it needs; ``order`` sorts the callbacks
(lower runs first).

Ending a phase early: a callback raises the phase's ``Cancel`` exception
(``CancelBatch``, ``CancelTrain``, ``CancelValidate``, ``CancelEpoch``,
``CancelFit``) in ``before_<phase>`` or while the phase runs (in an event of a
phase inside it).  The rest of that phase is skipped, ``after_cancel_<phase>``
fires, then ``after_<phase>`` as for a phase that ran to its end, and the loop
goes on after it: a cancelled batch or epoch still counts, so a resumed run
stays in step.  The step has no cancel of its own: cancel its batch.  A stop
signal (``gluon_resnet.signals``) cancels the fit after the running batch:
``after_cancel_fit`` is where the state is saved, and ``fit`` then raises
``TrainingInterrupted``.

Any other exception passes through the phases without their ``after_`` event,
so a half-done epoch is neither recorded nor saved; only ``after_fit`` runs
however training ends (in a ``finally``), for callbacks to let go of what
they hold.
"""

import signal

__all__ = ["PHASES", "CANCELS", "EVENTS", "Callback", "CancelPhase", "CancelBatch", "CancelTrain",
           "CancelValidate", "CancelEpoch", "CancelFit", "TrainingInterrupted",
           "TrainingDiverged"]

#: The phases of ``Learner.fit``, outermost first.
PHASES = ("fit", "epoch", "train", "validate", "batch", "step")


class CancelPhase(Exception):
    """Raised by a callback to end the running phase ``phase`` early (see the module)."""

    phase = None


class CancelBatch(CancelPhase):
    """Skip the rest of this batch (it still counts as done)."""

    phase = "batch"


class CancelTrain(CancelPhase):
    """End this epoch's pass over the training data; validation still runs."""

    phase = "train"


class CancelValidate(CancelPhase):
    """Skip the rest of this epoch's evaluation (``test_acc`` stays NaN)."""

    phase = "validate"


class CancelEpoch(CancelPhase):
    """End this epoch now (it still counts as done) and go on with the next one."""

    phase = "epoch"


class CancelFit(CancelPhase):
    """End training now; ``fit`` returns the history as it is."""

    phase = "fit"


#: The cancel exception of each phase that has one.
CANCELS = {cancel.phase: cancel for cancel in (CancelFit, CancelEpoch, CancelTrain,
                                               CancelValidate, CancelBatch)}
#: Every hook a ``Callback`` may implement.
EVENTS = tuple("%s_%s" % (when, phase) for phase in PHASES for when in ("before", "after")) + tuple(
    "after_cancel_" + phase for phase in PHASES if phase in CANCELS)


class Callback:
    """Hooks around ``Learner.fit``; override the ones you need.

    Each hook receives the ``Learner``; its attributes (``epoch``, ``batch``,
    ``num_epochs``, ``X``, ``y``, ``batch_loss``, ``last_loss``,
    ``test_acc``, ``recorder``, ``history``, ``net``, ``trainer``...) describe
    the current state.  See ``Learner`` for what each one means and when it
    is set.

    A callback with state that a resumed run needs returns it from
    ``state_dict`` (JSON-serialisable) and takes it back in
    ``load_state_dict``; checkpoints keep it under ``meta["callbacks"]
    [state_key]``.
    """

    order = 0

    @property
    def state_key(self):
        """The name of this callback's state in a checkpoint: its class name by default."""
        return type(self).__name__

    def state_dict(self):
        """What a resumed run needs to continue this callback, or None (nothing: the default)."""
        return None

    def load_state_dict(self, state):
        """Continue from ``state``, what ``state_dict`` returned when the checkpoint was saved."""


def _no_op(self, learner):
    pass


for _event in EVENTS:
    setattr(Callback, _event, _no_op)
del _event


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal (Ctrl-C, SIGTERM, SIGHUP).

    Attributes
    ----------
    checkpoint : str or None
        Where the state was saved, if a ``Checkpointer`` saved it.
    signum : int
        The signal (``signal.SIGINT`` when raised without one).
    immediate : bool
        True when a second signal stopped training at once, without saving.
    exit_status : int
        What a command-line program should exit with: 128 + the signal
        number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
    """

    def __init__(self, message, checkpoint=None, signum=signal.SIGINT, immediate=False):
        super().__init__(message)
        self.checkpoint, self.signum, self.immediate = checkpoint, signum, immediate

    @property
    def exit_status(self):
        return 128 + int(self.signum)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""
