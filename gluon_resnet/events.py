"""What the training loop tells its callbacks, and how training ends early.

``Learner.fit`` runs six nested phases, and fires ``before_<phase>`` and
``after_<phase>`` around each one::

    fit
      epoch                      (once per epoch)
        train                    (the pass over the training data)
          batch                  (once per batch)
            step                 (forward, backward, optimizer update)
        validate                 (the test set, when there is one)

plus ``after_interrupt`` when a stop signal ends training after a batch.  A
``Callback`` overrides the hooks it needs; ``order`` sorts the callbacks
(lower runs first).  Stop signals themselves are ``gluon_resnet.signals``.
"""

import signal

__all__ = ["PHASES", "EVENTS", "Callback", "TrainingInterrupted", "TrainingDiverged"]

#: The phases of ``Learner.fit``, outermost first.
PHASES = ("fit", "epoch", "train", "validate", "batch", "step")
#: Every hook a ``Callback`` may implement.
EVENTS = tuple("%s_%s" % (when, phase) for phase in PHASES for when in ("before", "after")) + (
    "after_interrupt",)


class Callback:
    """Hooks around ``Learner.fit``; override the ones you need.

    Each hook receives the ``Learner``; its attributes (``epoch``, ``batch``,
    ``num_epochs``, ``X``, ``y``, ``batch_loss``, ``last_loss``,
    ``test_acc``, ``recorder``, ``history``, ``net``, ``trainer``...) describe
    the current state.  See ``Learner`` for what each one means and when it
    is set.
    """

    order = 0


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
