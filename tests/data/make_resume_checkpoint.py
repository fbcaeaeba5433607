"""Make tests/data/resume_186705e.ckpt: a run stopped inside its second epoch.

Run once, from a checkout of commit 186705e (before issue 24 changed how the Learner
saves its state), with the package of that commit installed:

    python tests/data/make_resume_checkpoint.py tests/data/resume_186705e.ckpt

It trains ``helpers.tiny_net`` with ``RUN`` and stops it with SIGTERM after batch
``STOP_BATCH`` of epoch 2, as ``gluon-resnet train`` stops on a signal; the checkpoint is
what that run saved.  ``tests/test_training.py`` resumes it with today's code.
"""

import os
import shutil
import signal
import sys
import tempfile

from gluon_resnet import models  # before MXNet: it sets the thread count
from gluon_resnet.events import Callback, TrainingInterrupted
from gluon_resnet.experiment import TrainConfig, run_training

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for helpers

from helpers import TINY_MODEL, register_tiny_net  # noqa: E402

#: The run: 200 training images in 4 batches an epoch, momentum (an optimizer state to
#: restore), fp32 (bf16 would depend on the CPU).
RUN = dict(model=TINY_MODEL, resize=None, limit=200, batch_size=50, epochs=2, lr=0.1,
           momentum=0.9, seed=5, precision="fp32")
#: The batch of epoch 2 after which the run was stopped.
STOP_BATCH = 2


class StopInSecondEpoch(Callback):
    def after_batch(self, learner):
        if (learner.epoch, learner.batch) == (1, STOP_BATCH):
            signal.raise_signal(signal.SIGTERM)


def main(target):
    register_tiny_net(models._REGISTRY)
    out = tempfile.mkdtemp()
    try:
        try:
            run_training(TrainConfig(**RUN), out=out, quiet=True,
                         callbacks=[StopInSecondEpoch()])
        except TrainingInterrupted as stop:
            shutil.copy(stop.checkpoint, target)
        else:
            raise SystemExit("the run was not stopped")
    finally:
        shutil.rmtree(out)


if __name__ == "__main__":
    main(sys.argv[1])
