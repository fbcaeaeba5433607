"""The worker side of a distributed job: join it, train with it, leave it.

A distributed job has three roles (Li et al. 2014, "Scaling Distributed
Machine Learning with the Parameter Server"): one *scheduler* that introduces
the others to each other, *servers* that hold the values of the kvstore, and
*workers* that train.  Every process learns its role and the scheduler's
address from the variables ``DMLC_ROLE``, ``DMLC_PS_ROOT_URI``,
``DMLC_PS_ROOT_PORT``, ``DMLC_NUM_SERVER`` and ``DMLC_NUM_WORKER``; a
scheduler or server runs its role as soon as it imports ``mxnet``, a worker
joins the job when it creates ``mx.kv.create('dist_sync')``.

``join_job`` returns a ``Job``: rank, number of workers, kvstore, and whether
this process leads (rank 0 evaluates, prints and writes files).  The batch
size of a run is the *global* batch: each of ``N`` workers trains on batches
of ``Job.local_batch`` = ``batch_size / N`` from its own shard of the
training set (interleaved positions of the epoch's order, equal shard
sizes), and ``DistributedTrainer`` divides the summed gradients by the
global batch.  The servers only add up gradients
(``update_on_kvstore=False``): every worker pulls the same sum and runs the
same optimizer step, so the parameters stay identical, worker 0 can save the
optimizer state in its checkpoints, and learning-rate schedules work.  For a
network without batch normalisation, ``N`` workers compute what one process
computes; ``AverageRunningStats`` averages the BN running statistics over the
workers after each epoch's training pass.  Only worker 0 handles stop
signals (the launcher forwards them to it); it saves, and the launcher then
stops the rest.  Every worker also runs a ``peers.StepWatch``: a step that
waits too long for a peer that went quiet stops the worker instead of
hanging it.
"""

import atexit
import ctypes
import dataclasses
import os
import signal
import socket
import sys
import threading

import numpy as np

from .._mxnet import mx
from mxnet import gluon

from ..events import Callback
from .launcher import DIST_KVSTORES, DUMP_VARIABLE, RANK_NOTE, WORKER_INDEX_VARIABLE
from .peers import StepWatch, node_address, step_timeout

__all__ = ["Job", "process_kvstore", "join_job", "DistributedTrainer", "finish_job",
           "AverageRunningStats", "SaveFinalParameters", "final_parameters_callback",
           "exchange_peers"]


@dataclasses.dataclass
class Job:
    """What this process is in its training job.

    A single process is ``Job()``: rank 0 of one worker, kvstore ``'device'``.

    Attributes
    ----------
    rank : int
        This worker's index in the job (0 leads).
    num_workers : int
        Worker processes training together.
    kvstore : str
        How gradients are added up: ``'device'``, ``'local'`` or a distributed kind.
    kv : mxnet.kvstore.KVStore or None
        The distributed kvstore, None in a single process.
    watch : peers.StepWatch or None
        What stops this worker when a peer went quiet; None in a single process.
    """

    rank: int = 0
    num_workers: int = 1
    kvstore: str = "device"
    kv: object = None
    watch: object = None

    @property
    def lead(self):
        """True for the process that evaluates, prints and writes the run folder."""
        return self.rank == 0

    @property
    def distributed(self):
        return self.kv is not None

    def local_batch(self, global_batch):
        """This worker's share of every global batch."""
        return global_batch // self.num_workers

    def describe(self, global_batch):
        """``distributed: 2 workers, kvstore dist_sync, global batch 50 = 2 x 25``."""
        return ("distributed: %d workers, kvstore %s, global batch %d = %d x %d"
                % (self.num_workers, self.kvstore, global_batch, self.num_workers,
                   self.local_batch(global_batch)))

    def finish(self):
        """Leave a distributed job (see ``finish_job``); nothing for a single process."""
        if self.kv is not None:
            finish_job(self.kv)
        if self.watch is not None:
            self.watch.stop()


def process_kvstore(requested, explicit=True):
    """The kvstore this process trains with.

    A worker of a distributed job (``DMLC_ROLE=worker``) always uses a
    distributed kvstore (``dist_sync`` unless ``requested`` is one already).
    Outside a job a distributed kvstore is an error when ``explicit``, and
    falls back to ``'device'`` otherwise (resuming a distributed run's
    checkpoint in one process).
    """
    if os.environ.get("DMLC_ROLE") == "worker":
        return requested if requested in DIST_KVSTORES else "dist_sync"
    if requested in DIST_KVSTORES:
        if explicit:
            raise ValueError("kvstore %s trains with several processes: start them with "
                             "gluon-resnet launch --workers 2 -- train ... (or give each process "
                             "the DMLC_* variables of a distributed job)" % requested)
        return "device"
    return requested


_JOB = {"kv": None, "done": False}


def join_job(kvstore, global_batch, explicit=True):
    """The ``Job`` of this process; a distributed worker joins its job here.

    Parameters
    ----------
    kvstore : str
        The configured kvstore; ``process_kvstore(kvstore, explicit)`` says
        which one this process uses.
    global_batch : int
        The run's batch size, which must split evenly over the workers.
    explicit : bool
        Whether the kvstore was asked for (not inherited from a checkpoint).

    A worker checks the batch, starts its ``StepWatch`` (limit:
    ``GLUON_RESNET_STEP_TIMEOUT``), creates the kvstore, makes workers other
    than rank 0 ignore Ctrl-C, arranges that a worker that leaves with an
    error does not wait for the others at exit (see ``finish_job``), and
    learns where its peers answer (``exchange_peers``).
    """
    kvstore = process_kvstore(kvstore, explicit)
    if kvstore not in DIST_KVSTORES:
        return Job(kvstore=kvstore)
    limit = step_timeout()
    workers = int(os.environ.get("DMLC_NUM_WORKER", "1"))
    if global_batch % workers:
        raise ValueError("the batch size %d is the global batch of all workers, so it must be "
                         "divisible by the %d workers; try %d"
                         % (global_batch, workers, max(workers, global_batch // workers * workers)))
    scheduler = (os.environ.get("DMLC_PS_ROOT_URI", "127.0.0.1"),
                 int(os.environ.get("DMLC_PS_ROOT_PORT", "0")))
    watch = StepWatch(limit, scheduler, "%d workers and %s servers"
                      % (workers, os.environ.get("DMLC_NUM_SERVER", "1"))).start()
    kv = mx.kv.create(kvstore)
    _JOB.update(kv=kv, done=False)
    atexit.register(_leave_without_barrier)
    if kv.rank != 0 and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    index = os.environ.get(WORKER_INDEX_VARIABLE)
    if index is not None and int(index) != kv.rank:
        print(RANK_NOTE % (int(index), kv.rank), file=sys.stderr, flush=True)
    address = node_address()
    watch.joined(kv.rank, exchange_peers(kv, address, watch.serve(address)))
    return Job(rank=kv.rank, num_workers=kv.num_workers, kvstore=kvstore, kv=kv, watch=watch)


#: kvstore key of the peer table: above ``AverageRunningStats.KEY_BASE``'s keys, below 2**31 / 9973.
PEERS_KEY = 200000
_HOST_CHARS = 32
_PEER_FIELDS = 4 + 2 + _HOST_CHARS  # IPv4 address, port, pid, host name


def exchange_peers(kv, address, port):
    """Every worker's ``{rank, address, port, pid, host}``, learnt through the kvstore.

    Each worker pushes a table with only its own row filled; the servers add
    the tables up, so every worker pulls all rows.  float32 holds every
    field exactly (octets, ports, pids below 2**24, character codes).
    """
    table = np.zeros((kv.num_workers, _PEER_FIELDS), dtype=np.float32)
    host = [ord(c) for c in socket.gethostname()[:_HOST_CHARS]]
    table[kv.rank, :6] = [int(octet) for octet in address.split(".")] + [port, os.getpid()]
    table[kv.rank, 6:6 + len(host)] = host
    kv.init(PEERS_KEY, mx.nd.zeros(table.size))
    summed = mx.nd.array(table.ravel())
    kv.pushpull(PEERS_KEY, summed)
    rows = summed.asnumpy().reshape(table.shape).astype(np.int64)
    return [{"rank": r, "address": ".".join(str(v) for v in row[:4]), "port": int(row[4]),
             "pid": int(row[5]), "host": "".join(chr(c) for c in row[6:] if c)}
            for r, row in enumerate(rows)]


class DistributedTrainer(gluon.Trainer):
    """``gluon.Trainer`` for a worker of a distributed job.

    ``step(batch_size)`` takes this worker's batch size: the kvstore sums
    the gradients of all workers, so the step divides by the global batch,
    ``batch_size * num_workers``.

    Its first ``step`` also gives every worker worker 0's parameters safely.
    There the Trainer initialises the kvstore with worker 0's parameters and
    pulls them, then pushes the first gradients; pull and push are
    independent engine operations.  When another worker's gradient push
    reaches the server before a worker's pull, that pull returns a sum of
    gradients instead of the initial parameters and the workers drift apart
    (3 of 11 test runs here, before this class).  Waiting for the pulls
    before any gradient leaves removes the race.  (Initialising earlier,
    after an inference-mode forward pass, is no remedy: oneDNN then keeps
    convolution weights in its own layout, and worker 0's first push of such
    a weight never initialises its key on the server.)
    """

    def __init__(self, params, optimizer, optimizer_params=None, kvstore=None, **kwargs):
        super().__init__(params, optimizer, optimizer_params, kvstore=kvstore, **kwargs)
        self.num_workers = kvstore.num_workers

    def step(self, batch_size, ignore_stale_grad=False):
        super().step(batch_size * self.num_workers, ignore_stale_grad)

    def _init_params(self):
        super()._init_params()
        mx.nd.waitall()


def finish_job(kv):
    """Leave the job after training: wait for all workers, then worker 0 stops the servers.

    That is what the distributed kvstore's destructor does; it is called
    here rather than whenever the garbage collector gets to the kvstore
    (the Trainer and its parameters form a reference cycle), so the job ends
    as soon as the last worker is done.  ``kv`` cannot be used afterwards.

    A worker that fails never gets here, and must not wait for the others
    (they are stuck in a step that waits for it): at exit its barrier is
    switched off, the process ends at once, and the launcher then stops the
    rest of the job.
    """
    mx.nd.waitall()
    mx.base.check_call(mx.base._LIB.MXKVStoreFree(kv.handle))
    kv.handle = mx.base.KVStoreHandle()  # a null handle: nothing left for __del__ to free
    if _JOB["kv"] is kv:
        _JOB.update(kv=None, done=True)


def _leave_without_barrier():
    kv = _JOB["kv"]
    if kv is not None and not _JOB["done"]:
        mx.base.check_call(mx.base._LIB.MXKVStoreSetBarrierBeforeExit(kv.handle, ctypes.c_int(0)))


class AverageRunningStats(Callback):
    """Average the BN running statistics over all workers after each epoch's training pass.

    Gradients keep the trainable parameters equal on every worker, but each
    BN layer's running mean and variance follow only that worker's shard.
    After the train phase of every epoch (before worker 0 evaluates) they are
    replaced by their mean over the workers (and over the devices of each
    worker), so evaluation and checkpoints use statistics of all the data and
    every worker ends with the same parameters.  Costs two tiny messages per
    BN layer per epoch.
    """

    #: kvstore keys of the statistics start here, far above the Trainer's parameter indices
    #: (0, 1, ...) and far below 2**31 / 9973 (the kvstore multiplies keys by 9973 in an int).
    KEY_BASE = 100000

    def __init__(self, kv):
        self.kv, self.keys = kv, None

    def after_train(self, learner):
        stats = [p for name, p in sorted(learner.net.collect_params().items())
                 if name.endswith(("running_mean", "running_var"))]
        if self.keys is None:
            self.keys = [self.KEY_BASE + i for i in range(len(stats))]
            for key, p in zip(self.keys, stats):
                self.kv.init(key, p.data(learner.ctxs[0]).zeros_like())
        for key, p in zip(self.keys, stats):
            arrays = p.list_data()
            self.kv.pushpull(key, arrays)  # in place: the sum over workers and devices
            for a in arrays:
                a /= self.kv.num_workers * len(arrays)


class SaveFinalParameters(Callback):
    """Save the network's parameters to ``path`` when training ends (``save_parameters``)."""

    def __init__(self, path):
        self.path = path

    def after_fit(self, learner):
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        learner.net.save_parameters(self.path)


def final_parameters_callback(rank=0):
    """``SaveFinalParameters`` to the path in ``GLUON_RESNET_DUMP_PARAMS``, or None.

    A debugging aid: with ``GLUON_RESNET_DUMP_PARAMS=/tmp/params-{rank}.params``
    every worker writes its final parameters, so one can check that all
    workers ended identical.
    """
    pattern = os.environ.get(DUMP_VARIABLE)
    return SaveFinalParameters(pattern.format(rank=rank)) if pattern else None
