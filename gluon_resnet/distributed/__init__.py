"""Training with several processes: MXNet's parameter server, on this machine or on several.

Modules: ``worker`` (what a training process does in a job: join it,
split the global batch, average BN statistics, leave), ``peers`` (a worker
whose peer went quiet stops instead of waiting forever), ``launcher``
(``gluon-resnet launch``: start the scheduler, servers and workers, watch
them, pass stop signals on, stop them all), ``hosts`` (the hosts file, ssh
and the checks of every host for ``launch --hosts``) and two scripts that
run on the other hosts: ``hostcheck`` and ``remote``.
"""

from .launcher import DIST_KVSTORES, LaunchError, free_ports, launch, worker_command
from .peers import EXIT_PEER_QUIET, StepWatch, WatchSteps, step_timeout
from .worker import (AverageRunningStats, DistributedTrainer, Job, SaveFinalParameters,
                     final_parameters_callback, finish_job, join_job, process_kvstore)

__all__ = ["DIST_KVSTORES", "Job", "process_kvstore", "join_job", "DistributedTrainer",
           "finish_job", "AverageRunningStats", "SaveFinalParameters",
           "final_parameters_callback", "worker_command", "launch", "LaunchError", "free_ports",
           "StepWatch", "WatchSteps", "step_timeout", "EXIT_PEER_QUIET"]
