"""Training with several processes: MXNet's parameter server, started on this machine.

Two modules: ``worker`` (what a training process does in a job: join it,
split the global batch, average BN statistics, leave) and ``launcher``
(``gluon-resnet launch``: start the scheduler, servers and workers, watch
them, pass stop signals on, stop them all).
"""

from .launcher import DIST_KVSTORES, LaunchError, free_ports, launch, worker_command
from .worker import (AverageRunningStats, DistributedTrainer, Job, SaveFinalParameters,
                     final_parameters_callback, finish_job, join_job, process_kvstore)

__all__ = ["DIST_KVSTORES", "Job", "process_kvstore", "join_job", "DistributedTrainer",
           "finish_job", "AverageRunningStats", "SaveFinalParameters",
           "final_parameters_callback", "worker_command", "launch", "LaunchError", "free_ports"]
