"""A worker never waits forever for a peer that went quiet.

In ``dist_sync`` every step waits for the gradients of all workers, and
ps-lite has no time limit: when a worker's process or host dies, the others
wait forever.  ``StepWatch`` bounds that wait.  Each worker of a job

- answers on a TCP port of its own (``serve``) with its rank, its pid,
  whether it computed lately and how long ago its last step ended; the
  workers learn each other's address, port, pid and host name when they join
  (``join_job`` exchanges them through the kvstore);
- counts *quiet* time: time in which no step (nor any other event of the
  training loop, see ``WatchSteps``) ended and the process itself did not
  compute (it used less than ``BUSY_SHARE`` of a core; a worker that
  evaluates or loads data computes, a worker blocked on its peers does not);
- once quiet for ``limit`` seconds, asks every peer.  A peer that does not
  answer within ``PROBE_SECONDS`` went quiet: the worker prints a message
  naming its rank, host and pid, and exits with status ``EXIT_PEER_QUIET``
  (69).  If all answer and one of them computes or ended a step within the
  limit, the worker waits another ``limit``; otherwise a server or the
  scheduler went quiet, and the worker exits with a message that says so.

Joining (``mx.kv.create`` waits until every process of the job registered
with the scheduler) gets ``max(limit, JOIN_SECONDS)``, so that the machines
of a job started by hand have time to come up.  The limit is
``GLUON_RESNET_STEP_TIMEOUT`` seconds (``DEFAULT_STEP_TIMEOUT``, 300, by
default).  The worker exits with ``os._exit``: its main thread is blocked
inside MXNet and cannot be woken; the checkpoint on disk is whole (it is
replaced atomically), so the run resumes from it.
"""

import json
import os
import socket
import sys
import threading
import time

from ..events import EVENTS, Callback
from .launcher import STEP_TIMEOUT_VARIABLE

__all__ = ["StepWatch", "WatchSteps", "step_timeout", "DEFAULT_STEP_TIMEOUT", "JOIN_SECONDS",
           "EXIT_PEER_QUIET", "node_address"]

#: Seconds a step may wait for its peers when ``GLUON_RESNET_STEP_TIMEOUT`` is not set.
DEFAULT_STEP_TIMEOUT = 300.0
#: Joining the job may take at least this long (the other machines may start later).
JOIN_SECONDS = 60.0
#: Exit status of a worker that stopped because a peer went quiet (sysexits' EX_UNAVAILABLE).
EXIT_PEER_QUIET = 69
#: Seconds a peer gets to answer.
PROBE_SECONDS = 3.0
#: Share of one core above which a process counts as computing: a worker blocked on
#: its peers uses none (measured: 0 clock ticks in 10 s), one that trains or evaluates
#: a core or more, even on a crowded machine.
BUSY_SHARE = 0.05


def step_timeout(environ=None):
    """The limit in seconds from ``GLUON_RESNET_STEP_TIMEOUT``, or ``DEFAULT_STEP_TIMEOUT``."""
    text = (os.environ if environ is None else environ).get(STEP_TIMEOUT_VARIABLE)
    if text is None or not text.strip():
        return DEFAULT_STEP_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError("%s must be a positive number of seconds, got %r"
                         % (STEP_TIMEOUT_VARIABLE, text))
    return value


def node_address(environ=None):
    """This worker's IPv4 address for its peers: ``DMLC_NODE_HOST``, or the way to the scheduler."""
    environ = os.environ if environ is None else environ
    if environ.get("DMLC_NODE_HOST"):
        return socket.gethostbyname(environ["DMLC_NODE_HOST"])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # connecting a UDP socket sends nothing; it only picks the route
        s.connect((socket.gethostbyname(environ.get("DMLC_PS_ROOT_URI", "127.0.0.1")), 9))
        return s.getsockname()[0]
    finally:
        s.close()


def _seconds(value):
    return "%g s" % round(value, 1)


class StepWatch:
    """Stop this worker when its step has waited ``limit`` seconds for a peer that went quiet.

    Parameters
    ----------
    limit : float
        Seconds of quiet (no step ended, no computing) before the peers are asked.
    scheduler : (str, int)
        The scheduler's address and port, named when joining fails.
    expected : str
        The processes of the job, for the message when joining fails
        (``'2 workers and 2 servers'``).
    out : file, default ``sys.stderr``
    exit : callable, default ``os._exit``
        Called with ``EXIT_PEER_QUIET``.

    Use: ``start()`` before joining, ``serve(address)`` and ``joined(rank,
    peers)`` once joined, ``beat()`` whenever the training loop moves,
    ``stop()`` after leaving the job.
    """

    def __init__(self, limit, scheduler, expected, out=None, exit=os._exit):
        self.limit, self.scheduler, self.expected = limit, scheduler, expected
        self.out, self.exit = out or sys.stderr, exit
        self.rank, self.peers, self.me = None, [], None
        self.tick = min(1.0, limit / 5)
        self._started = self._last = time.monotonic()
        self._cpu = [(self._started, time.process_time())]
        self._done = threading.Event()
        self._server = None

    # -- this worker ---------------------------------------------------------
    def start(self):
        threading.Thread(target=self._run, name="step-watch", daemon=True).start()
        return self

    def beat(self):
        """The training loop moved."""
        self._last = time.monotonic()

    def stop(self):
        self._done.set()
        if self._server is not None:
            try:  # wakes the thread in accept(); close() alone would leave the port listening
                self._server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._server.close()

    def busy(self):
        """Whether this process used more than ``BUSY_SHARE`` of a core lately."""
        (t0, c0), (t1, c1) = self._cpu[0], self._cpu[-1]
        return t1 > t0 and (c1 - c0) / (t1 - t0) > BUSY_SHARE

    def _sample(self, now):
        self._cpu.append((now, time.process_time()))
        while len(self._cpu) > 2 and now - self._cpu[1][0] >= min(self.limit, 5.0):
            self._cpu.pop(0)

    # -- the peers -----------------------------------------------------------
    def serve(self, address):
        """Answer the peers on ``address``; returns the port."""
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((address, 0))
        self._server.listen(16)
        threading.Thread(target=self._answer, name="step-watch-answer", daemon=True).start()
        return self._server.getsockname()[1]

    def _answer(self):
        while not self._done.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed by stop()
                return
            with conn:
                state = {"rank": self.rank, "pid": os.getpid(), "busy": self.busy(),
                         "since_step": time.monotonic() - self._last}
                try:
                    conn.sendall((json.dumps(state) + "\n").encode())
                except OSError:
                    pass

    def joined(self, rank, peers):
        """This worker has ``rank``; ``peers`` are all workers (rank, address, port, pid, host)."""
        self.rank = rank
        self.me = next(p for p in peers if p["rank"] == rank)
        self.peers = [p for p in peers if p["rank"] != rank]
        self._last = time.monotonic()

    @staticmethod
    def ask(peer):
        """The peer's state (dict), or why it does not answer (str)."""
        try:
            with socket.create_connection((peer["address"], peer["port"]),
                                          timeout=PROBE_SECONDS) as conn:
                conn.settimeout(PROBE_SECONDS)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        return "it closed the connection without answering"
                    data += chunk
            return json.loads(data)
        except socket.timeout:
            return "no answer within %s" % _seconds(PROBE_SECONDS)
        except OSError as exc:
            return exc.strerror or str(exc)

    def _scheduler_state(self):
        try:
            socket.create_connection(self.scheduler, timeout=PROBE_SECONDS).close()
            return "answers"
        except OSError as exc:
            return "does not answer (%s)" % (exc.strerror or exc)

    # -- the watch -----------------------------------------------------------
    def _run(self):
        while not self._done.wait(self.tick):
            now = time.monotonic()
            self._sample(now)
            if self.busy():
                self._last = now
            if self.me is None:
                if now - self._started >= max(self.limit, JOIN_SECONDS):
                    self._give_up_joining(now - self._started)
                    return
            elif now - self._last >= self.limit:
                if self._check_peers(now - self._last):
                    return

    def _check_peers(self, waited):
        """Ask every peer; stop this worker if one is quiet, or all are idle.  True if stopped."""
        answers = [(p, self.ask(p)) for p in self.peers]
        quiet = [(p, a) for p, a in answers if isinstance(a, str)]
        if self._done.is_set():
            return True
        if quiet:
            self._stop("%s went quiet: this worker's step waited %s for %s, and %s"
                       % (" and ".join("worker rank %d on %s (host %s, pid %d)"
                                       % (p["rank"], p["address"], p["host"], p["pid"])
                                       for p, _ in quiet),
                          _seconds(waited), "it" if len(quiet) == 1 else "them",
                          "; ".join("rank %d does not answer (%s)" % (p["rank"], why)
                                    for p, why in quiet)))
            return True
        if any(a["busy"] or a["since_step"] < self.limit for _, a in answers):
            self._last = time.monotonic()  # a peer computes or moved: give it another limit
            return False
        self._stop("no worker has computed for %s although all %d answer, so a server or the "
                   "scheduler (%s:%d, which %s) went quiet"
                   % (_seconds(waited), len(self.peers) + 1, self.scheduler[0], self.scheduler[1],
                      self._scheduler_state()))
        return True

    def _give_up_joining(self, waited):
        state = self._scheduler_state()
        if state == "answers":
            advice = ("answers, but not all %s of the job have joined; start them, or give them "
                      "more time with %s" % (self.expected, STEP_TIMEOUT_VARIABLE))
        else:
            advice = "%s; start it, or check DMLC_PS_ROOT_URI and DMLC_PS_ROOT_PORT" % state
        self._stop("could not join the distributed job within %s: the scheduler at %s:%d %s"
                   % (_seconds(waited), self.scheduler[0], self.scheduler[1], advice))

    def _stop(self, reason):
        me = ("" if self.me is None else
              " (rank %d on %s, pid %d)" % (self.rank, self.me["address"], os.getpid()))
        self.out.write("gluon-resnet train: error: %s. Stopped this worker%s with status %d; "
                       "the last checkpoint is kept and the job resumes from it with --resume "
                       "on any number of workers.\n" % (reason, me, EXIT_PEER_QUIET))
        self.out.flush()
        self.exit(EXIT_PEER_QUIET)


class WatchSteps(Callback):
    """Tell a ``StepWatch`` whenever the training loop moves (every event of ``Learner.fit``)."""

    def __init__(self, watch):
        self.watch = watch


def _beat(self, learner):
    self.watch.beat()


for _event in EVENTS:
    setattr(WatchSteps, _event, _beat)
del _event
