"""``gluon-resnet launch``: a distributed job's processes, started on this machine or over ssh.

``launch`` starts the scheduler, the servers and the workers (see
``gluon_resnet.distributed.worker`` for the roles) as subprocesses on
127.0.0.1, each in its own process group, prefixes their output with their
role, and stops all of them (SIGTERM, then SIGKILL after a grace period) as
soon as one fails or when ``timeout`` is exceeded.  With ``hosts`` (a hosts
file, see ``gluon_resnet.distributed.hosts``) it checks every host first and
starts each process on its host through ssh, inside ``remote.py``, which
passes signals on and ends the process when its ssh connection ends; the
scheduler runs on the first host, the servers go round the hosts (one per
host by default), and each host runs as many workers as the file says.  A stop signal to the
launcher (Ctrl-C, SIGTERM, SIGHUP) goes on to worker 0, which stops after its
current batch and saves a checkpoint; then the job is stopped and the
launcher exits with 128 + the signal number.  A second signal stops
everything at once.  On Linux the processes also die with the launcher if it
is killed outright.  MXNet's own ``tools/launch.py`` (dmlc_tracker) does not
run on Python 3.9 and later (it calls ``Thread.isAlive``).

The launcher imports no MXNet: the scheduler and servers must not inherit
anything an MXNet import sets up.

One module for the whole job: starting, watching and stopping the roles (locally or over
ssh) is one sequence of states, and its teardown paths are easiest to check together.
"""

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from .._cpu import usable_cores
from ..signals import STOP_SIGNALS, signal_name
from ..validate import positive_int, positive_number
from .hosts import check_hosts, read_hosts, remote_command, ssh_argv
from . import remote

__all__ = ["DIST_KVSTORES", "worker_command", "launch", "LaunchError", "free_ports"]

#: Distributed kvstores a worker can train with (synchronous: every step waits for all).
DIST_KVSTORES = ("dist_sync", "dist_device_sync")
#: Set by the launcher: the worker's index, which becomes its rank (see ``launch``).
WORKER_INDEX_VARIABLE = "GLUON_RESNET_WORKER"
#: Path pattern, ``{rank}`` replaced: each worker saves its final parameters there.
DUMP_VARIABLE = "GLUON_RESNET_DUMP_PARAMS"
#: Seconds a worker's step may wait for its peers (see ``gluon_resnet.distributed.peers``).
STEP_TIMEOUT_VARIABLE = "GLUON_RESNET_STEP_TIMEOUT"
#: What a worker prints when its rank is not its launcher index (the launcher reads it).
RANK_NOTE = "note: launcher's worker %d has rank %d in the job"
_RANK_NOTE = re.compile(r"note: launcher's worker (\d+) has rank (\d+) in the job")
#: Variables of the launcher's environment that a process on another host gets too.
FORWARDED_PREFIXES = ("GLUON_RESNET_", "MXNET_")


class LaunchError(ValueError):
    """The launch command is wrong; the message says how to write it."""


#: Seconds between SIGTERM and SIGKILL when the job is stopped.
GRACE_SECONDS = 5.0
#: After a stop signal, seconds worker 0 gets to save a checkpoint and exit.
INTERRUPT_SECONDS = 60.0
#: After all workers finished, seconds the scheduler and servers get to exit by themselves.
WIND_DOWN_SECONDS = 10.0
#: Exit statuses of ``launch`` other than 0 (success) and 128 + a stop signal's number.
EXIT_FAILED, EXIT_TIMEOUT = 1, 124


def worker_command(command, parse_train):
    """Arguments after ``python`` for each worker, from ``launch``'s ``-- train ...``.

    Parameters
    ----------
    command : list of str
        What follows ``gluon-resnet launch [options]``: ``--``, ``train``, options.
    parse_train : callable
        Parses the options after ``train`` as ``gluon-resnet train`` would
        (a bad option exits there) and returns the namespace; the command
        line passes its own parser, so that this module needs none.

    Checks the device, and adds ``--kvstore dist_sync`` unless a distributed
    kvstore is given.
    """
    command = list(command)
    if not command or command[0] != "--":
        raise LaunchError("put the training command after '--', for example: gluon-resnet launch "
                          "--workers 2 -- train --no-resize --epochs 1")
    command = command[1:]
    if not command or command[0] != "train":
        raise LaunchError("only the train command can run on several workers; write "
                          "-- train [options], got -- %s" % " ".join(command))
    args = parse_train(command[1:])
    if args.kvstore is not None and args.kvstore not in DIST_KVSTORES:
        raise LaunchError("a launched job trains with a distributed kvstore (%s); leave out "
                          "--kvstore %s" % (" or ".join(DIST_KVSTORES), args.kvstore))
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
    """One process of the job, on this machine."""

    host = None

    def __init__(self, role, index, argv, env):
        self.role, self.index, self.argv, self.env = role, index, argv, env
        self.launch_index, self.ranked = index, False  # a worker's index becomes its rank
        self.proc, self.reader, self.status = None, None, None
        self.on_line = None  # called with each output line (the job reads rank notes)

    @property
    def label(self):
        name = self.role if self.role == "scheduler" else "%s %d" % (self.role, self.index)
        return name if self.host is None else "%s on %s" % (name, self.host)

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_parent_death_signal())

    def pump(self, out, lock):
        """Copy the process's output to ``out``, each line prefixed with ``[label]``."""
        def run():
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if self.take(line):
                    continue
                if self.on_line is not None:
                    self.on_line(self, line)
                with lock:
                    out.write("[%s] %s\n" % (self.label, line))
                    out.flush()
            self.proc.stdout.close()

        self.reader = threading.Thread(target=run, name="pump-" + self.label, daemon=True)
        self.reader.start()

    def take(self, line):
        """True for a line meant for the launcher, not for the user."""
        return False

    def poll(self):
        if self.status is None and self.proc is not None:
            self.status = self.proc.poll()
        return self.status

    def describe(self):
        """``worker 1 (pid 123) was killed by SIGKILL``."""
        return "%s (pid %s) %s" % (self.label, self.pid, _describe_status(self.status))

    def send_signal(self, signum):
        self.proc.send_signal(signum)

    def signal_group(self, signum):
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self, grace):
        """SIGKILL to the process group, and wait for the process."""
        self.signal_group(signal.SIGKILL)
        self.proc.wait()
        self.poll()


class _RemoteNode(_Node):
    """One process of the job on another host: an ssh process running ``remote.py`` there.

    ``env`` holds what the process gets on its host (the ``DMLC_*`` variables);
    the local ssh process runs with the launcher's environment.
    """

    def __init__(self, role, index, host, ssh, python, argv, env, cwd):
        spec = {"argv": argv, "cwd": cwd, "env": env}
        super().__init__(role, index, ssh_argv(ssh, host, remote_command(python, remote, spec)),
                         env)
        self.host, self.remote_pid, self.remote_status, self.lost = host, None, None, False

    @property
    def pid(self):
        return self.remote_pid if self.remote_pid is not None else "unknown"

    def start(self):
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_parent_death_signal())

    def take(self, line):
        if not line.startswith(remote.MARK):
            return False
        kind, _, value = line[len(remote.MARK):].strip().partition(" ")
        if kind == "pid":
            self.remote_pid = int(value)
        elif kind == "exit":
            self.remote_status = int(value)
        return True

    def poll(self):
        if self.status is None and self.proc is not None and self.proc.poll() is not None:
            if self.reader is not None:
                self.reader.join(timeout=5)  # the exit line may still be on its way
            if self.remote_status is not None:
                self.status = self.remote_status
            else:
                self.lost, self.status = True, self.proc.returncode or 255
        return self.status

    def describe(self):
        if self.lost:
            return "%s lost its ssh connection (ssh exited with status %d)" % (self.label,
                                                                             self.status)
        return super().describe()

    def _tell(self, line):
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):  # ssh is gone, or its input already closed
            pass

    def send_signal(self, signum):
        self._tell("signal %d\n" % signum)

    def signal_group(self, signum):
        self._tell("group %d\n" % signum)

    def kill(self, grace):
        """SIGKILL to the remote group; then the ssh process ends, or is killed after ``grace``."""
        self.signal_group(signal.SIGKILL)
        try:
            self.proc.stdin.close()  # remote.py stops whatever is left when its input ends
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            super().signal_group(signal.SIGKILL)
            self.proc.wait()
        self.poll()


def _job_nodes(worker_args, workers, servers, threads, python, env):
    ports = free_ports(1 + servers + workers)
    base = {k: v for k, v in os.environ.items() if not k.startswith("DMLC_") and k != "PORT"}
    base.update(env, DMLC_PS_ROOT_URI="127.0.0.1", DMLC_PS_ROOT_PORT=str(ports[0]),
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


def _host_nodes(worker_args, hosts, workers, servers, threads, python, ssh, needs, env):
    """The nodes of a job on the hosts of the file ``hosts``, after checking every host."""
    listed = read_hosts(hosts)
    total = sum(h.slots for h in listed)
    if workers is not None and workers != total:
        raise LaunchError("--workers %d does not match the hosts file %s, which places %d "
                          "worker(s); leave out --workers and write host:workers in the file"
                          % (workers, hosts, total))
    servers = len(listed) if servers is None else servers
    cwd = os.getcwd()
    forwarded = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)}
    forwarded.update(env)
    reports = check_hosts(listed, ssh, python, dict(needs or {}, cwd=cwd, env=forwarded))
    base = dict(forwarded, DMLC_PS_ROOT_URI=reports[0]["address"],
                DMLC_PS_ROOT_PORT=str(reports[0]["port"]), DMLC_NUM_SERVER=str(servers),
                DMLC_NUM_WORKER=str(total), PYTHONUNBUFFERED="1")
    plain = [python, "-c", "import mxnet"]

    def node(role, index, at, argv, **more):
        report = reports[at]
        return _RemoteNode(role, index, listed[at].name, ssh, python, argv,
                           dict(base, DMLC_ROLE=role, DMLC_NODE_HOST=report["address"], **more),
                           cwd)

    nodes = [node("scheduler", 0, 0, plain, OMP_NUM_THREADS="1")]
    nodes += [node("server", i, i % len(listed), plain, OMP_NUM_THREADS="1")
              for i in range(servers)]
    index = 0
    for at, host in enumerate(listed):
        per_worker = threads or max(1, reports[at]["cores"] // host.slots)
        for _ in range(host.slots):
            nodes.append(node("worker", index, at, [python, *worker_args],
                              OMP_NUM_THREADS=str(per_worker),
                              **{WORKER_INDEX_VARIABLE: str(index)}))
            index += 1
    return nodes


def launch(worker_args, workers=None, servers=None, timeout=None, threads=None, python=None,
           out=None, err=None, grace=GRACE_SECONDS, hosts=None, ssh="ssh", needs=None,
           step_timeout=None):
    """Run a distributed job on this machine, or on the hosts of a hosts file; its exit status.

    Parameters
    ----------
    worker_args : list of str
        Each worker runs ``python *worker_args`` (see ``worker_command``).
    workers, servers : int, optional
        Worker and server processes; there is always one scheduler.  On
        this machine 2 and 1 by default; with ``hosts`` the workers are
        those of the file and the servers one per host by default.
    timeout : float, optional
        Stop the whole job after this many seconds (exit status 124).
    threads : int, optional
        ``OMP_NUM_THREADS`` of each worker; by default the usable cores (of
        its host) are divided among the workers there (at least one each).
        The scheduler and servers get one.
    python : str, optional
        Interpreter of the processes (default ``sys.executable``, the same
        path on every host).
    out, err : file, optional
        Where the processes' prefixed lines and the launcher's messages go
        (standard output and standard error by default).
    grace : float
        Seconds between SIGTERM and SIGKILL when stopping the job.
    hosts : str, optional
        A hosts file (see ``gluon_resnet.distributed.hosts``): start the job
        on those hosts over ssh, from a folder of the same path as the
        current one, after checking every host.
    ssh : str
        The ssh command and its options, for ``hosts``.
    needs : dict, optional
        What every host must have, for ``hosts``: ``fashion_mnist`` (None,
        or ``{"root": FOLDER or None}``), ``folders`` and ``files`` (lists
        of paths).
    step_timeout : float, optional
        Seconds a worker's step may wait for its peers before the worker
        stops (``GLUON_RESNET_STEP_TIMEOUT``; see ``distributed.peers``).

    Returns
    -------
    int
        0 when every worker exited 0; 1 when a process failed (the message
        names it, and its host); 124 on timeout; 128 + the signal number
        after a stop signal: 130 (Ctrl-C), 143 (SIGTERM), 129 (SIGHUP).

    Raises
    ------
    LaunchError
        A wrong argument, or (with ``hosts``) a host that cannot take part:
        nothing was started.
    """
    try:
        for value, name in ((workers, "--workers"), (servers, "--servers")):
            if value is not None:
                positive_int(value, name)
        if timeout is not None:
            positive_number(timeout, "--timeout (seconds)")
        env = {}
        if step_timeout is not None:
            positive_number(step_timeout, "--step-timeout (seconds)")
            env[STEP_TIMEOUT_VARIABLE] = repr(float(step_timeout))
        out, err = out or sys.stdout, err or sys.stderr
        python = python or sys.executable
        if hosts is None:
            workers = 2 if workers is None else workers
            threads = threads or max(1, usable_cores() // workers)
            nodes = _job_nodes(list(worker_args), workers, 1 if servers is None else servers,
                               threads, python, env)
        else:
            nodes = _host_nodes(list(worker_args), hosts, workers, servers, threads, python,
                                ssh, needs, env)
    except ValueError as exc:
        raise LaunchError(str(exc)) from None
    return _Job(nodes, out, err, grace).run(timeout)


class _Job:
    def __init__(self, nodes, out, err, grace):
        self.nodes, self.out, self.err, self.grace = nodes, out, err, grace
        self.workers = [n for n in nodes if n.role == "worker"]
        self.lock = threading.Lock()
        self.signals = []  # stop signals received, in order
        self.introduced = False
        for node in self.workers:
            node.on_line = self._read_rank

    @staticmethod
    def _read_rank(node, line):
        """A worker's rank note: from now on it is named by its rank."""
        found = _RANK_NOTE.search(line)
        if found and int(found.group(1)) == node.launch_index:
            node.index, node.ranked = int(found.group(2)), True

    def lead(self):
        """Worker 0 of the job, the one that takes stop signals (by rank, once known)."""
        for ranked in (True, False):
            for node in self.workers:
                if node.ranked == ranked and node.index == 0:
                    return node
        return self.workers[0]

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

    def _on_signal(self, signum, frame):
        self.signals.append(signum)

    def run(self, timeout):
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            # A signal inherited as ignored (nohup: SIGHUP) stays ignored, as in train.
            handlers = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS
                        if signal.getsignal(sig) != signal.SIG_IGN}
        try:
            for node in self.nodes:  # all forks first, before any thread exists
                node.start()
            for node in self.nodes:
                node.pump(self.out, self.lock)
            return self._watch(timeout)
        finally:
            self._stop_all()
            for sig, previous in handlers.items():
                signal.signal(sig, previous)

    def _introduce(self):
        """The job's line with every pid, once every process on another host reported its pid."""
        if self.introduced or any(n.pid == "unknown" for n in self.nodes):
            return
        self.introduced = True
        env = self.nodes[0].env
        self.say("scheduler at %s:%s, %d server(s), %d worker(s) with OMP_NUM_THREADS=%s; pids: %s"
                 % (env["DMLC_PS_ROOT_URI"], env["DMLC_PS_ROOT_PORT"],
                    len(self.nodes) - 1 - len(self.workers), len(self.workers),
                    "/".join(sorted({n.env["OMP_NUM_THREADS"] for n in self.workers})),
                    ", ".join("%s %s" % (n.label, n.pid) if n.host is None else
                              "%s %s on %s" % (n.label.rsplit(" on ", 1)[0], n.pid, n.host)
                              for n in self.nodes)))

    def _watch(self, timeout):
        start = time.monotonic()
        interrupted_at = finished_at = None
        while True:
            now = time.monotonic()
            self._introduce()
            if len(self.signals) >= 2:
                self.report("%s again: stopped every process at once"
                            % signal_name(self.signals[1]))
                return 128 + self.signals[0]
            if self.signals and interrupted_at is None:
                interrupted_at = now
                lead = self.lead()
                if lead.poll() is None:
                    lead.send_signal(self.signals[0])
                self.say("%s: asked worker 0 to stop after its current batch and save a "
                         "checkpoint; a second signal stops everything at once"
                         % signal_name(self.signals[0]))
            for node in self.nodes:
                status = node.poll()
                if status not in (None, 0) and interrupted_at is None:
                    self.report("error: %s; stopped the other processes of the job"
                                % node.describe())
                    return EXIT_FAILED
            if interrupted_at is not None:
                if self.lead().poll() is not None or now - interrupted_at > INTERRUPT_SECONDS:
                    self.report("interrupted by %s: stopped every process of the job"
                                % signal_name(self.signals[0]))
                    return 128 + self.signals[0]
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
                node.kill(self.grace)
        for node in self.nodes:
            if node.reader is not None:
                node.reader.join(timeout=self.grace)
