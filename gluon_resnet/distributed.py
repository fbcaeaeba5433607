"""Training with several processes: MXNet's parameter server, started on this machine.

A distributed job has three roles (Li et al. 2014, "Scaling Distributed
Machine Learning with the Parameter Server"): one *scheduler* that introduces
the others to each other, *servers* that hold the values of the kvstore, and
*workers* that train.  Every process learns its role and the scheduler's
address from the variables ``DMLC_ROLE``, ``DMLC_PS_ROOT_URI``,
``DMLC_PS_ROOT_PORT``, ``DMLC_NUM_SERVER`` and ``DMLC_NUM_WORKER``; a
scheduler or server runs its role as soon as it imports ``mxnet``, a worker
joins the job when it creates ``mx.kv.create('dist_sync')``.

Two halves:

Worker side, used by ``run_training``.
    ``join_job`` creates the kvstore.  ``--batch-size`` stays the *global*
    batch: each of ``N`` workers trains on batches of ``batch_size / N`` from
    its own shard of the training set (``num_parts = N``,
    ``part_index = rank``, equal shard sizes), so every worker runs the same
    number of batches of the same sizes.  The servers only add up gradients
    (``update_on_kvstore=False``): every worker pulls the same sum and runs the
    same optimizer step, so the parameters stay identical, worker 0 can save
    the optimizer state in its checkpoints, and learning-rate schedules work.
    Because the shards interleave (worker ``r`` takes positions ``r, r + N,
    ...`` of the epoch's order), the ``N`` local batches of one step together
    are exactly the single-process batch of that step: for a network without
    batch normalisation, ``N`` workers compute what one process computes.
    ``AverageRunningStats`` averages the BN running statistics over the
    workers at the end of each epoch, before worker 0 evaluates.  Only worker
    0 evaluates, prints and writes files; the others ignore Ctrl-C (worker 0
    decides when the job stops).  ``DistributedTrainer`` closes a race in the
    first step of Gluon's ``Trainer``, and ``finish_job`` / a failing
    worker's exit make sure the job ends promptly either way.

Launcher, ``gluon-resnet launch``.
    ``launch`` starts the scheduler, the servers and the workers as
    subprocesses on 127.0.0.1, each in its own process group, prefixes their
    output with their role, and stops all of them (SIGTERM, then SIGKILL
    after a grace period) as soon as one fails, when ``timeout`` is exceeded,
    or after Ctrl-C (forwarded to the workers first, so that worker 0 saves a
    checkpoint).  On Linux the processes also die with the launcher if it is
    killed outright.  MXNet's own ``tools/launch.py`` (dmlc_tracker) does not run
    on Python 3.9 and later (it calls ``Thread.isAlive``).
"""

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from ._cpu import usable_cores
from ._mxnet import mx
from .training import Callback
from mxnet import gluon

__all__ = ["DIST_KVSTORES", "process_kvstore", "join_job", "DistributedTrainer",
           "finish_job", "AverageRunningStats", "SaveFinalParameters",
           "final_parameters_callback", "worker_command", "launch", "LaunchError"]

#: Distributed kvstores a worker can train with (synchronous: every step waits for all).
DIST_KVSTORES = ("dist_sync", "dist_device_sync")
#: Set by the launcher: the worker's index, which becomes its rank (see ``launch``).
WORKER_INDEX_VARIABLE = "GLUON_RESNET_WORKER"
#: Path pattern, ``{rank}`` replaced: each worker saves its final parameters there.
DUMP_VARIABLE = "GLUON_RESNET_DUMP_PARAMS"


# ---------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------

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


def join_job(kvstore, global_batch):
    """Join the distributed job of this worker; return its ``KVStore``.

    Checks that ``global_batch`` splits evenly over the workers, makes
    workers other than rank 0 ignore Ctrl-C, and arranges that a worker that
    leaves with an error does not wait for the others at exit (see
    ``finish_job``).
    """
    workers = int(os.environ.get("DMLC_NUM_WORKER", "1"))
    if global_batch % workers:
        raise ValueError("the batch size %d is the global batch of all workers, so it must be "
                         "divisible by the %d workers; try %d"
                         % (global_batch, workers, max(workers, global_batch // workers * workers)))
    kv = mx.kv.create(kvstore)
    _JOB.update(kv=kv, done=False)
    atexit.register(_leave_without_barrier)
    if kv.rank != 0 and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    index = os.environ.get(WORKER_INDEX_VARIABLE)
    if index is not None and int(index) != kv.rank:
        print("note: launcher's worker %s has rank %d in the job" % (index, kv.rank),
              file=sys.stderr, flush=True)
    return kv


class DistributedTrainer(gluon.Trainer):
    """``gluon.Trainer`` whose first step gives every worker worker 0's parameters safely.

    In its first ``step`` the Trainer initialises the kvstore with worker 0's
    parameters and pulls them, then pushes the first gradients; pull and
    push are independent engine operations.  When another worker's gradient
    push reaches the server before a worker's pull, that pull returns a sum
    of gradients instead of the initial parameters and the workers drift
    apart (3 of 11 test runs here, before this class).  Waiting for the
    pulls before any gradient leaves removes the race.  (Initialising
    earlier, after an inference-mode forward pass, is no remedy: oneDNN then
    keeps convolution weights in its own layout, and worker 0's first push
    of such a weight never initialises its key on the server.)
    """

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
    """Average the BN running statistics over all workers after each epoch's last batch.

    Gradients keep the trainable parameters equal on every worker, but each
    BN layer's running mean and variance follow only that worker's shard.
    At the end of every epoch (before worker 0 evaluates) they are replaced
    by their mean over the workers (and over the devices of each worker), so
    evaluation and checkpoints use statistics of all the data and every
    worker ends with the same parameters.  Costs two tiny messages per BN
    layer per epoch.
    """

    #: kvstore keys of the statistics start here, far above the Trainer's parameter indices
    #: (0, 1, ...) and far below 2**31 / 9973 (the kvstore multiplies keys by 9973 in an int).
    KEY_BASE = 100000

    def __init__(self, kv):
        self.kv, self.keys = kv, None

    def after_batch(self, learner):
        if learner.batch != len(learner.train_iter):
            return
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


# ---------------------------------------------------------------------------
# Launcher
# ---------------------------------------------------------------------------

class LaunchError(ValueError):
    """The launch command is wrong; the message says how to write it."""


#: Seconds between SIGTERM and SIGKILL when the job is stopped.
GRACE_SECONDS = 5.0
#: After Ctrl-C, seconds the workers get to save a checkpoint and exit.
INTERRUPT_SECONDS = 60.0
#: After all workers finished, seconds the scheduler and servers get to exit by themselves.
WIND_DOWN_SECONDS = 10.0
#: Exit statuses of ``launch`` other than 0 (success).
EXIT_FAILED, EXIT_TIMEOUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 124, 130, 143


def worker_command(command):
    """Arguments after ``python`` for each worker, from ``launch``'s ``-- train ...``.

    Checks the training command (as ``gluon-resnet train`` would) and its
    device, and adds ``--kvstore dist_sync`` unless a distributed kvstore is
    given.
    """
    from .cli import build_parser

    command = list(command)
    if not command or command[0] != "--":
        raise LaunchError("put the training command after '--', for example: gluon-resnet launch "
                          "--workers 2 -- train --no-resize --epochs 1")
    command = command[1:]
    if not command or command[0] != "train":
        raise LaunchError("only the train command can run on several workers; write "
                          "-- train [options], got -- %s" % " ".join(command))
    args = build_parser().parse_args(command)  # a bad option exits here, as train would
    if args.kvstore is not None and args.kvstore not in DIST_KVSTORES:
        raise LaunchError("a launched job trains with a distributed kvstore (%s); leave out "
                          "--kvstore %s" % (" or ".join(DIST_KVSTORES), args.kvstore))
    if args.ctx is not None and args.ctx.strip().lower() not in ("cpu", "auto"):
        from .devices import parse_ctx

        parse_ctx(args.ctx)  # an unavailable device: one sentence, before anything starts
    if args.kvstore is None:
        command += ["--kvstore", "dist_sync"]
    return ["-m", "gluon_resnet", *command]


def free_ports(n, host="127.0.0.1"):
    """``n`` distinct TCP ports free on ``host`` right now, in increasing order."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return sorted(s.getsockname()[1] for s in sockets)
    finally:
        for s in sockets:
            s.close()


def _parent_death_signal():
    """A function for ``preexec_fn``: the child gets SIGKILL when the launcher dies.

    Linux's ``prctl(PR_SET_PDEATHSIG)``, looked up before forking so that the
    child only makes the call.  None elsewhere.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def _describe_status(status):
    if status < 0:
        try:
            return "was killed by %s" % signal.Signals(-status).name
        except ValueError:
            return "was killed by signal %d" % -status
    return "exited with status %d" % status


class _Node:
    """One process of the job."""

    def __init__(self, role, index, argv, env):
        self.role, self.index, self.argv, self.env = role, index, argv, env
        self.proc, self.reader, self.status = None, None, None

    @property
    def label(self):
        return self.role if self.role == "scheduler" else "%s %d" % (self.role, self.index)

    def start(self):
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_parent_death_signal())

    def pump(self, out, lock):
        """Copy the process's output to ``out``, each line prefixed with ``[label]``."""
        def run():
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with lock:
                    out.write("[%s] %s\n" % (self.label, line))
                    out.flush()
            self.proc.stdout.close()

        self.reader = threading.Thread(target=run, name="pump-" + self.label, daemon=True)
        self.reader.start()

    def poll(self):
        if self.status is None and self.proc is not None:
            self.status = self.proc.poll()
        return self.status

    def signal_group(self, signum):
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _job_nodes(worker_args, workers, servers, threads, python):
    ports = free_ports(1 + servers + workers)
    base = {k: v for k, v in os.environ.items() if not k.startswith("DMLC_") and k != "PORT"}
    base.update(DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(ports[0]),
                DMLC_NUM_SERVER=str(servers), DMLC_NUM_WORKER=str(workers),
                DMLC_NODE_HOST="127.0.0.1", PYTHONUNBUFFERED="1")
    plain = [python, "-c", "import mxnet"]  # a scheduler or server runs its role on import
    nodes = [_Node("scheduler", 0, plain, dict(base, DMLC_ROLE="scheduler", OMP_NUM_THREADS="1"))]
    # ps-lite numbers servers and workers in the order of their ports (same host), so
    # increasing ports make launcher index i the worker of rank i.
    for i in range(servers):
        nodes.append(_Node("server", i, plain, dict(base, DMLC_ROLE="server", OMP_NUM_THREADS="1",
                                                    PORT=str(ports[1 + i]))))
    for i in range(workers):
        nodes.append(_Node("worker", i, [python, *worker_args],
                           dict(base, DMLC_ROLE="worker", OMP_NUM_THREADS=str(threads),
                                PORT=str(ports[1 + servers + i]),
                                **{WORKER_INDEX_VARIABLE: str(i)})))
    return nodes


def launch(worker_args, workers=2, servers=1, timeout=None, threads=None, python=None,
           out=None, err=None, grace=GRACE_SECONDS):
    """Run a distributed job on this machine and return its exit status.

    Parameters
    ----------
    worker_args : list of str
        Each worker runs ``python *worker_args`` (see ``worker_command``).
    workers, servers : int, default 2, 1
        Worker and server processes; there is always one scheduler.
    timeout : float, optional
        Stop the whole job after this many seconds (exit status 124).
    threads : int, optional
        ``OMP_NUM_THREADS`` of each worker; by default the usable cores are
        divided among the workers (at least one each).  The scheduler and
        servers get one.
    python : str, optional
        Interpreter of the processes (default ``sys.executable``).
    out, err : file, optional
        Where the processes' prefixed lines and the launcher's messages go
        (standard output and standard error by default).
    grace : float
        Seconds between SIGTERM and SIGKILL when stopping the job.

    Returns
    -------
    int
        0 when every worker exited 0; 1 when a process failed (the message
        names it); 124 on timeout; 130 after Ctrl-C; 143 after SIGTERM.
    """
    for name, value in (("workers", workers), ("servers", servers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LaunchError("--%s must be a positive integer, got %r" % (name, value))
    if timeout is not None and not timeout > 0:
        raise LaunchError("--timeout must be a positive number of seconds, got %r" % (timeout,))
    out, err = out or sys.stdout, err or sys.stderr
    threads = threads or max(1, usable_cores() // workers)
    nodes = _job_nodes(list(worker_args), workers, servers, threads, python or sys.executable)
    return _Job(nodes, out, err, grace).run(timeout)


class _Job:
    def __init__(self, nodes, out, err, grace):
        self.nodes, self.out, self.err, self.grace = nodes, out, err, grace
        self.workers = [n for n in nodes if n.role == "worker"]
        self.lock = threading.Lock()
        self.sigints, self.sigterm = 0, False

    def say(self, text):
        """A progress line among the processes' output."""
        with self.lock:
            self.out.write("[launch] %s\n" % text)
            self.out.flush()

    def report(self, text):
        """The launcher's last word, on standard error."""
        with self.lock:
            self.err.write("gluon-resnet launch: %s\n" % text)
            self.err.flush()

    def _on_sigint(self, signum, frame):
        self.sigints += 1

    def _on_sigterm(self, signum, frame):
        self.sigterm = True

    def run(self, timeout):
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {signal.SIGINT: signal.signal(signal.SIGINT, self._on_sigint),
                        signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_sigterm)}
        try:
            for node in self.nodes:  # all forks first, before any thread exists
                node.start()
            for node in self.nodes:
                node.pump(self.out, self.lock)
            scheduler = self.nodes[0].env
            self.say("scheduler at 127.0.0.1:%s, %d server(s), %d worker(s) with "
                     "OMP_NUM_THREADS=%s; pids: %s"
                     % (scheduler["DMLC_PS_ROOT_PORT"], len(self.nodes) - 1 - len(self.workers),
                        len(self.workers), self.workers[0].env["OMP_NUM_THREADS"],
                        ", ".join("%s %d" % (n.label, n.proc.pid) for n in self.nodes)))
            return self._watch(timeout)
        finally:
            self._stop_all()
            for sig, previous in handlers.items():
                signal.signal(sig, previous)

    def _watch(self, timeout):
        start = time.monotonic()
        interrupted_at = finished_at = None
        while True:
            now = time.monotonic()
            if self.sigints >= 2:
                self.report("interrupted twice: stopped every process at once")
                return EXIT_INTERRUPTED
            if self.sigints == 1 and interrupted_at is None:
                interrupted_at = now
                for node in self.workers:
                    if node.poll() is None:
                        node.proc.send_signal(signal.SIGINT)
                self.say("Ctrl-C: asked the workers to stop (worker 0 saves a checkpoint); "
                         "Ctrl-C again stops everything at once")
            if self.sigterm:
                self.report("terminated: stopped every process of the job")
                return EXIT_TERMINATED
            for node in self.nodes:
                status = node.poll()
                if status not in (None, 0) and interrupted_at is None:
                    self.report("error: %s (pid %d) %s; stopped the other processes of the job"
                                % (node.label, node.proc.pid, _describe_status(status)))
                    return EXIT_FAILED
            if interrupted_at is not None:
                if self.workers[0].poll() is not None or now - interrupted_at > INTERRUPT_SECONDS:
                    self.report("interrupted: stopped every process of the job")
                    return EXIT_INTERRUPTED
            elif all(n.poll() == 0 for n in self.workers):
                finished_at = finished_at or now
                if all(n.poll() is not None for n in self.nodes) \
                        or now - finished_at > WIND_DOWN_SECONDS:
                    return 0
            if timeout is not None and now - start > timeout:
                self.report("error: the job ran longer than --timeout %g seconds; stopped all "
                            "of its processes" % timeout)
                return EXIT_TIMEOUT
            time.sleep(0.05)

    def _stop_all(self):
        """SIGTERM to every process group still running, SIGKILL after the grace period."""
        running = [n for n in self.nodes if n.proc is not None and n.poll() is None]
        for node in running:
            node.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and any(n.poll() is None for n in running):
            time.sleep(0.05)
        for node in running:
            if node.poll() is None:
                node.signal_group(signal.SIGKILL)
                node.proc.wait()
                node.poll()
        for node in self.nodes:
            if node.reader is not None:
                node.reader.join(timeout=self.grace)
