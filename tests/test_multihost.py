"""Several machines: the hosts file, the step watch, and two hosts made of network namespaces.

The first tests need no network.  The others run on two "hosts": Linux
network namespaces joined by a veth pair.  Each namespace has its own network stack with one
address (10.200.0.1 and 10.200.0.2, reachable only from each other) and runs an ``sshd`` of its own
(throwaway host and user keys, its own configuration file, made here), so
``launch --hosts`` logs in over real ssh.  The namespaces share this
machine's file system, so gluon_resnet and the data are on both "hosts";
the checks for another version or missing data are tested with an ssh
server on the second host whose sessions see a different Python path, or
an empty data folder (a mount namespace of its own).

Everything made here (namespaces, the veth pair, every process) is removed
at the end, also when a test fails; names carry the pytest process's pid, and
leftovers of earlier runs (whose pid is gone) are removed first.  Root only:
skipped where network namespaces cannot be made.  The tests send traffic to
127.0.0.1 and to the two namespace addresses only.
"""

import collections
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import gluon_resnet
import mxnet as mx

from gluon_resnet.checkpoint import read_checkpoint_meta
from gluon_resnet.cli import main
from gluon_resnet.distributed import free_ports, peers, remote
from gluon_resnet.distributed.hosts import Host, read_hosts
from gluon_resnet.distributed.peers import EXIT_PEER_QUIET, StepWatch, step_timeout

from helpers import DATA_DIR, write_fashion_folder

# ---------------------------------------------------------------------------
# Without namespaces: the hosts file, the launch options, the step watch
# ---------------------------------------------------------------------------

def test_a_hosts_file_lists_hosts_and_their_workers(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("# the cluster\nnode1\n\n10.0.0.2:3   # three workers\nuser@node3:1\n")
    assert read_hosts(str(path)) == [Host("node1", 1), Host("10.0.0.2", 3), Host("user@node3", 1)]


@pytest.mark.parametrize("text, sentence", [
    ("", "lists no host"),
    ("# only a comment\n", "lists no host"),
    ("a\nb:0\n", "line 2 of the hosts file %s is 'b:0': after ':' comes the number of workers"),
    ("a:two\n", "line 1 of the hosts file %s is 'a:two'"),
    ("a b\n", "line 1 of the hosts file %s is 'a b', not a host"),
    ("a\nb\na:2\n", "host a is listed twice in the hosts file %s (lines 1 and 3)"),
])
def test_a_bad_hosts_file_is_refused_with_the_line(tmp_path, text, sentence):
    path = tmp_path / "hosts"
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        read_hosts(str(path))
    assert (sentence % path if "%s" in sentence else sentence) in str(caught.value)


@pytest.mark.parametrize("argv, sentence", [
    (["--hosts", "missing.txt"], "cannot read the hosts file missing.txt (No such file or "
                                 "directory)"),
    (["--hosts", "hosts", "--workers", "2"], "--workers 2 does not match the hosts file hosts, "
                                             "which places 4 worker(s)"),
    (["--ssh", "ssh -p 2222"], "--ssh is for --hosts"),
    (["--step-timeout", "0"], "argument --step-timeout: must be a positive number"),
])
def test_bad_launch_options_give_one_sentence(argv, sentence, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hosts").write_text("a:3\nb\n")
    try:
        status = main(["launch", *argv, "--", "train"])
    except SystemExit as exc:  # argparse
        status = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err[-1].startswith("gluon-resnet launch: error: "), err
    assert sentence in err[-1]
    assert sorted(os.listdir(tmp_path)) == ["hosts"]  # nothing started, nothing written


@pytest.mark.parametrize("value", ["0", "-3", "soon", "inf", "nan"])
def test_a_bad_step_timeout_variable_is_named(value):
    with pytest.raises(ValueError, match="GLUON_RESNET_STEP_TIMEOUT must be a positive number "
                                         "of seconds, got %r" % value):
        step_timeout({"GLUON_RESNET_STEP_TIMEOUT": value})
    assert step_timeout({}) == 300 and step_timeout({"GLUON_RESNET_STEP_TIMEOUT": "2.5"}) == 2.5


class Stopped:
    """Stands for ``os._exit`` in a ``StepWatch``: records the status and the message."""

    def __init__(self):
        self.out, self.status, self.event = io.StringIO(), None, threading.Event()

    def __call__(self, status):
        self.status = status
        self.event.set()


#: A port nobody listens on (free a moment ago), as the scheduler's.
CLOSED = free_ports(1)[0]


def _watch(limit, stopped):
    return StepWatch(limit, ("127.0.0.1", CLOSED), "2 workers and 1 servers", out=stopped.out,
                     exit=stopped)


def _two_watches(limit=0.3):
    """Watches of ranks 0 and 1 on 127.0.0.1 that know each other, and their recorders."""
    stops = [Stopped(), Stopped()]
    watches = [_watch(limit, s) for s in stops]
    peers = [{"rank": r, "address": "127.0.0.1", "port": w.serve("127.0.0.1"), "pid": os.getpid(),
              "host": "host%d" % r} for r, w in enumerate(watches)]
    for rank, w in enumerate(watches):
        w.joined(rank, peers)
    return watches, stops


def test_a_step_watch_stops_its_worker_when_a_peer_does_not_answer():
    (mine, peer), (stopped, _) = _two_watches()
    peer.stop()  # its port closes: as when its process died
    try:
        mine.start()
        assert stopped.event.wait(30)
    finally:
        mine.stop()
    assert stopped.status == EXIT_PEER_QUIET == 69
    assert re.fullmatch(
        r"gluon-resnet train: error: worker rank 1 on 127\.0\.0\.1 \(host host1, pid %d\) went "
        r"quiet: this worker's step waited [\d.]+ s for it, and rank 1 does not answer "
        r"\(Connection refused\)\. Stopped this worker \(rank 0 on 127\.0\.0\.1, pid %d\) with "
        r"status 69; the last checkpoint is kept and the job resumes from it with --resume on "
        r"any number of workers\.\n" % (os.getpid(), os.getpid()), stopped.out.getvalue())


def test_a_step_watch_waits_while_a_peer_computes_and_blames_the_servers_when_none_does():
    (mine, peer), (stopped, _) = _two_watches(limit=5)
    try:
        answer = mine.ask(mine.peers[0])
        assert answer["rank"] == 1 and answer["pid"] == os.getpid()
        mine.ask = lambda p: dict(answer, busy=True, since_step=60)
        assert mine._check_peers(6) is False and stopped.status is None  # it computes: wait
        mine.ask = lambda p: dict(answer, busy=False, since_step=1)
        assert mine._check_peers(6) is False and stopped.status is None  # it moved: wait
        mine.ask = lambda p: dict(answer, busy=False, since_step=60)
        assert mine._check_peers(6) is True and stopped.status == 69
    finally:
        mine.stop()
        peer.stop()
    assert stopped.out.getvalue().startswith(
        "gluon-resnet train: error: no worker has computed for 6 s although all 2 answer, so a "
        "server or the scheduler (127.0.0.1:%d, which does not answer (Connection refused)) went "
        "quiet. Stopped this worker (rank 0 on 127.0.0.1, pid %d) with status 69"
        % (CLOSED, os.getpid()))


def test_a_step_watch_gives_up_joining_a_job_whose_scheduler_does_not_answer(monkeypatch):
    monkeypatch.setattr(peers, "JOIN_SECONDS", 0.2)
    stopped = Stopped()
    watch = _watch(0.2, stopped).start()
    try:
        assert stopped.event.wait(30)
    finally:
        watch.stop()
    assert stopped.status == 69
    assert re.match(r"gluon-resnet train: error: could not join the distributed job within "
                    r"[\d.]+ s: the scheduler at 127\.0\.0\.1:%d does not answer \(Connection "
                    r"refused\); start it, or check DMLC_PS_ROOT_URI and DMLC_PS_ROOT_PORT\. "
                    r"Stopped this worker with status 69" % CLOSED, stopped.out.getvalue())


#: Blocks SIGUSR1, says so, waits for it, says so, then waits for anything else.
PATIENT = """
import signal
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
print("ready", flush=True)
signal.sigwait([signal.SIGUSR1])
print("got SIGUSR1", flush=True)
signal.pause()
"""


def _next_line(stream, seconds=60):
    ready, _, _ = select.select([stream], [], [], seconds)
    assert ready, "no line within %d s" % seconds
    return stream.readline().decode().rstrip("\n")


def test_remote_passes_signals_on_and_stops_its_process_when_its_input_ends(tmp_path):
    spec = {"argv": [sys.executable, "-c", PATIENT], "cwd": str(tmp_path),
            "env": {"DMLC_ROLE": "worker"}}
    proc = subprocess.Popen([sys.executable, remote.__file__, json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        mark, pid = _next_line(proc.stdout).rsplit(" ", 1)
        assert mark == remote.MARK + " pid"
        assert _next_line(proc.stdout) == "ready"
        proc.stdin.write(b"signal %d\n" % signal.SIGUSR1)
        proc.stdin.flush()
        assert _next_line(proc.stdout) == "got SIGUSR1"
        rest, _ = proc.communicate(timeout=60)  # closes its input: the launcher is gone
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert rest.decode() == "%s exit %d\n" % (remote.MARK, -signal.SIGTERM)
    assert proc.returncode == 0 and not _alive(int(pid))


# ---------------------------------------------------------------------------
# Two hosts in network namespaces
# ---------------------------------------------------------------------------

PREFIX = "grmh"  # gluon_resnet multi-host: namespaces PREFIX<pid>a and PREFIX<pid>b
ADDRESSES = ("10.200.0.1", "10.200.0.2")
SSHD = "/usr/sbin/sshd"


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespace_pids(name):
    found = _ip("netns", "pids", name, check=False).stdout.split()
    return {int(p) for p in found}


def _remove_namespace(name):
    """Kill every process left in namespace ``name`` (all started by these tests), delete it."""
    for pid in _namespace_pids(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _ip("netns", "delete", name, check=False)  # its end of the veth pair goes with it


def _remove_leftovers():
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        found = re.fullmatch(PREFIX + r"(\d+)[ab]", name)
        if found and not _alive(int(found.group(1))):
            _remove_namespace(name)


def _why_not():
    """Why the namespace tests cannot run here, or None."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "network namespaces need root on Linux"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed (scripts/setup.sh --test installs it as root)"
    if not os.path.exists(SSHD) or shutil.which("ssh") is None:
        return "openssh-server is not installed (scripts/setup.sh --test installs it as root)"
    if not os.path.isdir(DATA_DIR):
        return "Debian's dataset-fashion-mnist is not installed"
    return None


class Sshd:
    """An sshd in a namespace, with its own configuration; ``stop()`` ends it."""

    def __init__(self, namespace, address, port, folder, name, set_env=None, hide=None):
        config = os.path.join(folder, "sshd_%s.conf" % name)
        lines = ["ListenAddress %s:%d" % (address, port),
                 "HostKey %s" % os.path.join(folder, "host_key"),
                 "AuthorizedKeysFile %s" % os.path.join(folder, "authorized_keys"),
                 "PidFile none", "StrictModes no", "UsePAM no", "PasswordAuthentication no",
                 "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                 "LogLevel INFO"]
        lines += ["SetEnv %s=%s" % kv for kv in (set_env or {}).items()]
        with open(config, "w") as f:
            f.write("\n".join(lines) + "\n")
        command = "exec %s -D -e -f %s" % (SSHD, config)
        if hide is not None:  # an empty folder over ``hide``, seen by this sshd's sessions only
            command = "mount -t tmpfs -o size=1m,mode=755 grmh-hidden %s && %s" % (hide, command)
        self.proc = subprocess.Popen(["ip", "netns", "exec", namespace, "sh", "-c", command],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.log, listening = [], threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line.rstrip())
                if "Server listening on" in line:
                    listening.set()
            listening.set()

        threading.Thread(target=drain, daemon=True).start()
        listening.wait(30)
        if self.proc.poll() is not None or not any("Server listening" in line for line in self.log):
            self.stop()
            raise RuntimeError("sshd %s did not start:\n%s" % (name, "\n".join(self.log)))

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


Net = collections.namedtuple("Net", "namespaces folder ssh_config ssh sshds")


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """Two namespace hosts, 10.200.0.1 and 10.200.0.2, each with an sshd; removed at the end."""
    why = _why_not()
    if why:
        pytest.skip(why)
    _remove_leftovers()
    tag = PREFIX + str(os.getpid())
    namespaces = (tag + "a", tag + "b")
    folder = str(tmp_path_factory.mktemp("hosts"))
    made, sshds = [], []
    try:
        for name in namespaces:
            done = _ip("netns", "add", name, check=False)
            if done.returncode:
                if made:
                    raise RuntimeError(done.stderr)
                pytest.skip("ip netns is not permitted here: %s" % done.stderr.strip())
            made.append(name)
        _ip("link", "add", tag + "x", "netns", namespaces[0], "type", "veth", "peer", "name",
            tag + "y", "netns", namespaces[1])
        for name, link, address in zip(namespaces, (tag + "x", tag + "y"), ADDRESSES):
            _ip("-n", name, "addr", "add", address + "/24", "dev", link)
            _ip("-n", name, "link", "set", link, "up")
            _ip("-n", name, "link", "set", "lo", "up")
        for key in ("host_key", "user_key", "other_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "grmh",
                            "-f", os.path.join(folder, key)], check=True)
        shutil.copy(os.path.join(folder, "user_key.pub"), os.path.join(folder, "authorized_keys"))
        host_key = open(os.path.join(folder, "host_key.pub")).read().split()[:2]
        with open(os.path.join(folder, "known_hosts"), "w") as f:
            for address in ADDRESSES:
                for port in (22, 2201, 2202, 2203):
                    where = address if port == 22 else "[%s]:%d" % (address, port)
                    f.write("%s %s %s\n" % (where, *host_key))
        ssh_config = os.path.join(folder, "ssh_config")
        with open(ssh_config, "w") as f:
            f.write(textwrap.dedent("""\
                Host nokey
                    HostName 10.200.0.2
                    IdentityFile {0}/other_key
                Host closed
                    HostName 10.200.0.2
                    Port 2
                Host nodata
                    HostName 10.200.0.2
                    Port 2201
                Host otherlib
                    HostName 10.200.0.2
                    Port 2202
                Host othermx
                    HostName 10.200.0.2
                    Port 2203
                Host * !nokey
                    IdentityFile {0}/user_key
                Host *
                    User root
                    IdentitiesOnly yes
                    UserKnownHostsFile {0}/known_hosts
                    StrictHostKeyChecking yes
                    LogLevel ERROR
                """).format(folder))
        # sshd's privilege separation needs this folder; Debian makes it only when the
        # service starts, which never happens here. It stays: the package expects it.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        for name, address in zip(namespaces, ADDRESSES):
            sshds.append(Sshd(name, address, 22, folder, name))
        yield Net(namespaces, folder, ssh_config, "ssh -F %s" % ssh_config, sshds)
    finally:
        for sshd in sshds:
            sshd.stop()
        for name in made:
            _remove_namespace(name)


# ---------------------------------------------------------------------------
# What the jobs train: a small network on a small folder of Fashion-MNIST images
# ---------------------------------------------------------------------------

#: Seconds a worker's step may wait for a quiet peer in these tests (300 by default).
LIMIT = 4

#: ``gluon-resnet train`` with one more callback: the worker on host ``sys.argv[1]``
#: kills itself (SIGKILL) after batch 3 of epoch 2, after the checkpoint of epoch 1.
#: It first prints the step watch's limit it was given.
KILLER = """
    import os, signal, sys

    from gluon_resnet import experiment
    from gluon_resnet.cli import main
    from gluon_resnet.events import Callback

    HOST, EPOCH, BATCH = sys.argv[1], 2, 3
    build = experiment.build_callbacks
    print("step timeout", os.environ.get("GLUON_RESNET_STEP_TIMEOUT"), flush=True)


    class Kill(Callback):
        def after_batch(self, learner):
            if (os.environ["DMLC_NODE_HOST"] == HOST
                    and (learner.epoch + 1, learner.batch) == (EPOCH, BATCH)):
                os.kill(os.getpid(), signal.SIGKILL)


    experiment.build_callbacks = lambda *a, **k: build(*a, **k) + [Kill()]
    sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """200 training and 100 test images of Fashion-MNIST as PNG class folders (4 batches)."""
    if not os.path.isdir(DATA_DIR):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    root = tmp_path_factory.mktemp("images")
    write_fashion_folder(str(root), train=200, test=100)
    return str(root)


def _train(images, *more):
    return ["train", "--data", images, "--no-resize", "--model", "cifar_resnet20_v1",
            "--batch-size", "50", "--lr", "0.1", "--seed", "1", "--epochs", "2",
            "--no-progress", *more]


def _in(net, host, argv):
    """``argv`` run inside the namespace of host 0 or 1."""
    return ["ip", "netns", "exec", net.namespaces[host], *argv]


def _start(argv, env, cwd):
    return subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _end(procs):
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def _only_sshd_left(net):
    """True once nothing but the two sshds runs in the namespaces (sessions end quickly)."""
    sshd = {s.proc.pid for s in net.sshds}
    deadline = time.monotonic() + 15
    while True:
        left = set().union(*(_namespace_pids(n) for n in net.namespaces)) - sshd
        if not left or time.monotonic() > deadline:
            return not left or {p: open("/proc/%d/cmdline" % p).read()[:100] for p in left
                                if os.path.exists("/proc/%d" % p)}
        time.sleep(0.1)


def _clean_env(**more):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DMLC_", "GLUON_RESNET_")) and k != "PORT"}
    env.update(more)
    return env


@pytest.mark.slow
def test_by_hand_a_dead_worker_stops_its_peer_within_the_limit(net, images, tmp_path):
    # The README's commands ("Several machines"), with the tests' addresses and training.
    (tmp_path / "worker.py").write_text(textwrap.dedent(KILLER))
    env = _clean_env(DMLC_PS_ROOT_URI=ADDRESSES[0], DMLC_PS_ROOT_PORT="9091",
                     DMLC_NUM_SERVER="2", DMLC_NUM_WORKER="2", OMP_NUM_THREADS="1",
                     GLUON_RESNET_STEP_TIMEOUT=str(LIMIT))
    plain = [sys.executable, "-c", "import mxnet"]
    train = [sys.executable, "worker.py", ADDRESSES[1], *_train(images, "--out", "run")]
    procs = []
    try:
        procs.append(_start(_in(net, 0, plain), dict(env, DMLC_ROLE="scheduler"), tmp_path))
        for host in (0, 1):
            procs.append(_start(_in(net, host, plain), dict(
                env, DMLC_ROLE="server", DMLC_NODE_HOST=ADDRESSES[host]), tmp_path))
        workers = [_start(_in(net, host, train), dict(
            env, DMLC_ROLE="worker", DMLC_NODE_HOST=ADDRESSES[host]), tmp_path) for host in (0, 1)]
        procs += workers
        survivor, dead = workers
        assert dead.wait(timeout=300) == -signal.SIGKILL
        out, err = survivor.communicate(timeout=120)  # LIMIT, and a little
        assert survivor.returncode == EXIT_PEER_QUIET, out + err
        assert re.search(r"gluon-resnet train: error: worker rank [01] on 10\.200\.0\.2 \(host .+, "
                         r"pid %d\) went quiet: this worker's step waited [\d.]+ s for it, and "
                         r"rank [01] does not answer \(Connection refused\)\. Stopped this "
                         r"worker \(rank [01] on 10\.200\.0\.1, pid %d\) with status 69"
                         % (dead.pid, survivor.pid), err), err
    finally:
        _end(procs)
    assert _only_sshd_left(net) is True
    # Rank 0 wrote the checkpoint of epoch 1 before the kill; it is whole.
    meta = read_checkpoint_meta(str(tmp_path / "run" / "checkpoint.ckpt"))
    assert (meta["epoch"], meta["batch"]) == (1, 0)


def _launch_cli(net, *args, env, cwd):
    return _start(_in(net, 0, [sys.executable, "-m", "gluon_resnet", "launch", *args]), env, cwd)


def _params(pattern):
    return [{k: v.asnumpy() for k, v in mx.nd.load(pattern.format(rank=r)).items()}
            for r in (0, 1)]


@pytest.mark.slow
def test_launch_hosts_a_dead_worker_stops_the_job_which_resumes_as_on_one_machine(
        net, images, tmp_path):
    (tmp_path / "worker.py").write_text(textwrap.dedent(KILLER))
    (tmp_path / "hosts").write_text("%s\n%s  # the second host\n" % ADDRESSES)
    env = _clean_env(GLUON_RESNET_DUMP_PARAMS=str(tmp_path / "hosts-{rank}.params"))
    needs = {"fashion_mnist": None, "folders": [images], "files": []}
    launcher = ("import sys; from gluon_resnet.distributed import launch; sys.exit(launch("
                "sys.argv[2:], hosts='hosts', ssh=sys.argv[1], needs=%r, servers=1, threads=1, "
                "timeout=300, step_timeout=60))" % (needs,))  # the launcher ends it first
    procs = []
    try:
        # A worker on the second host dies in epoch 2: the launcher stops the whole job.
        job = _start(_in(net, 0, [sys.executable, "-c", launcher, net.ssh, "worker.py",
                                  ADDRESSES[1], *_train(images, "--out", "run")]), env, tmp_path)
        procs.append(job)
        out, err = job.communicate(timeout=300)
        assert job.returncode == 1, out + err
        for host in ADDRESSES:  # the option reached the workers on both hosts
            assert re.search(r"^\[worker [01] on %s\] step timeout 60\.0$" % host, out,
                             re.M), out
        assert re.search(r"^gluon-resnet launch: error: worker [01] on 10\.200\.0\.2 \(pid \d+\) "
                         r"was killed by SIGKILL; stopped the other processes of the job$",
                         err, re.M), out + err
        assert _only_sshd_left(net) is True
        meta = read_checkpoint_meta(str(tmp_path / "run" / "checkpoint.ckpt"))
        assert (meta["epoch"], meta["batch"]) == (1, 0)
        # It resumes with gluon-resnet launch --hosts and finishes epoch 2 ...
        job = _launch_cli(net, "--hosts", "hosts", "--ssh", net.ssh, "--threads-per-worker", "1",
                          "--timeout", "300", "--", "train", "--resume", "run/checkpoint.ckpt",
                          "--no-progress", env=env, cwd=tmp_path)
        procs.append(job)
        out, err = job.communicate(timeout=300)
        assert job.returncode == 0, out + err
        assert re.search(r"^\[worker 0 on 10\.200\.0\.[12]\] epoch 2, loss", out, re.M), out
        assert _only_sshd_left(net) is True
        # ... with the parameters of the same job on one machine, run without interruption.
        job = _start([sys.executable, "-m", "gluon_resnet", "launch", "--workers", "2",
                      "--threads-per-worker", "1", "--timeout", "300", "--",
                      *_train(images, "--out", "one")],
                     _clean_env(GLUON_RESNET_DUMP_PARAMS=str(tmp_path / "one-{rank}.params")),
                     tmp_path)
        procs.append(job)
        out, err = job.communicate(timeout=300)
        assert job.returncode == 0, out + err
    finally:
        _end(procs)
    hosts = _params(str(tmp_path / "hosts-{rank}.params"))
    one = _params(str(tmp_path / "one-{rank}.params"))
    assert sorted(hosts[0]) == sorted(one[0]) and any("running_var" in k for k in one[0])
    for name in one[0]:
        np.testing.assert_array_equal(hosts[1][name], hosts[0][name], err_msg=name)
        np.testing.assert_allclose(hosts[0][name], one[0][name], rtol=1e-4, atol=1e-5,
                                   err_msg=name)


@pytest.mark.slow
def test_launch_hosts_refuses_hosts_that_cannot_take_part_and_starts_nothing(net, tmp_path):
    # Three more ssh servers on the second host: one whose sessions see an empty data folder,
    # two whose sessions find another gluon_resnet or another MXNet first on the Python path.
    fake_lib, fake_mx = tmp_path / "fake_lib" / "gluon_resnet", tmp_path / "fake_mx" / "mxnet"
    fake_lib.mkdir(parents=True)
    (fake_lib / "__init__.py").write_text('__version__ = "0.0.1"\n')
    fake_mx.mkdir(parents=True)
    for name in ("__init__.py", "libinfo.py"):
        (fake_mx / name).write_text('__version__ = "1.8.0"\n')
    (tmp_path / "hosts").write_text("10.200.0.1\nclosed\nnokey\nnodata\notherlib\nothermx\n")
    extra = []
    try:
        for name, port, more in (("nodata", 2201, {"hide": DATA_DIR}),
                                 ("otherlib", 2202, {"set_env": {"PYTHONPATH": fake_lib.parent}}),
                                 ("othermx", 2203, {"set_env": {"PYTHONPATH": fake_mx.parent}})):
            extra.append(Sshd(net.namespaces[1], ADDRESSES[1], port, net.folder, name, **more))
        job = _launch_cli(net, "--hosts", "hosts", "--ssh", net.ssh, "--", "train",
                          "--data-root", DATA_DIR, env=_clean_env(), cwd=tmp_path)
        out, err = job.communicate(timeout=300)
    finally:
        for sshd in extra:
            sshd.stop()
    assert job.returncode == 2, out + err
    assert out == "" and len(err.splitlines()) == 1, out + err
    reasons = dict(re.findall(r"host (\S+) (.*?)(?=; host |$)", err.split("not started: ")[1]))
    assert sorted(reasons) == ["closed", "nodata", "nokey", "otherlib", "othermx"], err
    assert reasons["closed"].startswith("cannot be logged in to by ssh without a prompt (ssh: "
                                        "connect to host 10.200.0.2 port 2: Connection refused)")
    assert "check with: %s -o BatchMode=yes closed true" % net.ssh in reasons["closed"]
    assert reasons["nokey"].startswith("cannot be logged in to by ssh without a prompt "
                                       "(root@10.200.0.2: Permission denied (publickey).)")
    assert reasons["nodata"].startswith("has no Fashion-MNIST: root=%r does not hold "
                                        "Fashion-MNIST" % DATA_DIR)
    assert "train-images-idx3-ubyte" in reasons["nodata"]
    assert reasons["otherlib"] == ("has gluon_resnet 0.0.1 (in %s), this machine %s: install "
                                   "the same version on every host"
                                   % (fake_lib, gluon_resnet.__version__))
    assert reasons["othermx"] == ("has MXNet 1.8.0, this machine %s: install the same version "
                                  "on every host" % mx.__version__)
    assert _only_sshd_left(net) is True
    assert sorted(os.listdir(tmp_path)) == ["fake_lib", "fake_mx", "hosts"]  # nothing written
