"""Several devices in one process, and several processes (``gluon-resnet launch``).

What is equivalent, and what these tests check:

- Two devices in one process split each batch in two and add the gradients up
  through the kvstore.  Without batch normalisation that is exactly one device
  with the whole batch.  With BN each device normalises with the statistics
  of its own half, so two devices equal one device that runs the two halves
  as separate forward passes ("ghost batches"), not one device with the
  whole batch.  Both statements are tested.
- N worker processes with the global batch B train on interleaved shards, so
  the N local batches of a step are the single-process batch of that step:
  without BN, N workers compute what one process computes (tested with a
  BN-free network registered by a worker script).  With BN (a registered
  ResNet) the workers end with identical parameters, BN running statistics
  included, since they are averaged every epoch; the average is what one
  process computes over the same batches (tested with BN on the input image).
"""

import io
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import mxnet as mx
from mxnet import autograd, gluon
from mxnet.gluon import nn

from gluon_resnet.checkpoint import read_checkpoint_meta
from gluon_resnet.cli import main
from gluon_resnet.data import FashionMNISTLoader
from gluon_resnet.distributed import process_kvstore
from gluon_resnet.experiment import TrainConfig, build_trainer
from gluon_resnet.training import Learner

from helpers import DATA_DIR, needs_data

PIDS = re.compile(r"(scheduler|server \d+|worker \d+) (\d+)")


# ---------------------------------------------------------------------------
# Shards
# ---------------------------------------------------------------------------

def _images(n, seed=0):
    rng = np.random.RandomState(seed)
    return (rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8),
            rng.randint(0, 10, size=n).astype(np.int32))


@pytest.mark.parametrize("workers", [2, 3])
def test_equal_parts_give_equal_interleaved_shards(workers):
    images, labels = _images(103)
    local = 4
    shards = [FashionMNISTLoader(images, labels, local, shuffle=True, seed=5, num_parts=workers,
                                 part_index=r, equal_parts=True) for r in range(workers)]
    assert {s.num_examples for s in shards} == {103 // workers}
    assert {len(s) for s in shards} == {len(shards[0])}
    whole = FashionMNISTLoader(images, labels, local * workers, shuffle=True, seed=5)
    order = whole.indices(0)
    kept = order[:103 - 103 % workers]
    picked = [s.indices(0) for s in shards]
    assert sorted(np.concatenate(picked)) == sorted(kept)  # disjoint, and all but the rest
    for i in range(len(shards[0])):  # the local batches of step i are the global batch i
        step = np.concatenate([p[i * local:(i + 1) * local] for p in picked])
        assert sorted(step) == sorted(kept[i * local * workers:(i + 1) * local * workers])
    # The default keeps the old behaviour: sizes differ by one, nothing is dropped.
    plain = [FashionMNISTLoader(images, labels, local, num_parts=workers, part_index=r)
             for r in range(workers)]
    assert sum(s.num_examples for s in plain) == 103


def test_kvstore_of_a_process(monkeypatch):
    monkeypatch.delenv("DMLC_ROLE", raising=False)
    assert process_kvstore("device") == "device"
    assert process_kvstore("local") == "local"
    with pytest.raises(ValueError, match="gluon-resnet launch"):
        process_kvstore("dist_sync")
    assert process_kvstore("dist_sync", explicit=False) == "device"  # resuming in one process
    monkeypatch.setenv("DMLC_ROLE", "worker")
    assert process_kvstore("device") == "dist_sync"
    assert process_kvstore("dist_device_sync") == "dist_device_sync"


def testbuild_trainer_gets_the_configured_kvstore():
    net = nn.Dense(2, in_units=3)
    net.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
    for kind in ("device", "local"):
        trainer = build_trainer(TrainConfig(kvstore=kind), net)
        assert trainer._kvstore_params["kvstore"] == kind
    with pytest.raises(ValueError, match="kvstore must be one of"):
        TrainConfig(kvstore="nccl2").validate()


# ---------------------------------------------------------------------------
# Several devices in one process
# ---------------------------------------------------------------------------

def _small_net(bn):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, in_channels=1))
    if bn:
        net.add(nn.BatchNorm(in_channels=8))
    net.add(nn.Activation("relu"), nn.MaxPool2D(2),
            nn.Conv2D(16, 3, padding=1, in_channels=8, activation="relu"),
            nn.GlobalAvgPool2D(), nn.Dense(10, in_units=16))
    return net


def _nets(bn, ctx_lists):
    """One network per context list, all with the same initial parameters."""
    nets = []
    for ctxs in ctx_lists:
        mx.random.seed(7)
        net = _small_net(bn)
        net.initialize(mx.init.Xavier(), ctx=ctxs)
        nets.append(net)
    first = nets[0].collect_params().values()
    for net in nets[1:]:
        for a, b in zip(first, net.collect_params().values()):
            b.set_data(a.data(a.list_ctx()[0]))
    return nets


def _loader():
    images, labels = _images(600, seed=1)  # 9 batches of 64 and a last one of 24
    return FashionMNISTLoader(images, labels, 64, shuffle=True, seed=2)


def _sgd(net, kvstore="device"):
    return gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9},
                         kvstore=kvstore)


def _trainable(net):
    return {name[len(net.prefix):]: p.data(p.list_ctx()[0]).asnumpy()
            for name, p in net.collect_params().items() if p.grad_req != "null"}


def _max_difference(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


@pytest.mark.parametrize("kvstore", ["device", "local"])
@pytest.mark.slow
def test_two_devices_equal_one_device_without_batch_norm(kvstore):
    one, two = _nets(False, [[mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]])
    t1, t2 = _sgd(one, kvstore), _sgd(two, kvstore)
    h1 = Learner(one, _loader(), None, t1, mx.cpu(0), handle_signals=False).fit(2)
    h2 = Learner(two, _loader(), None, t2, [mx.cpu(0), mx.cpu(1)], handle_signals=False).fit(2)
    assert t1._kvstore is None  # one device: no kvstore, as before
    assert t2._kvstore is not None and t2._kvstore.type == kvstore
    p1, p2 = _trainable(one), _trainable(two)
    for name in p1:
        np.testing.assert_allclose(p2[name], p1[name], rtol=1e-4, atol=1e-5, err_msg=name)
    # Both copies on the two devices are the same.
    for p in two.collect_params().values():
        np.testing.assert_array_equal(p.data(mx.cpu(0)).asnumpy(), p.data(mx.cpu(1)).asnumpy())
    assert [h["loss"] for h in h2] == pytest.approx([h["loss"] for h in h1], rel=1e-4)


@pytest.mark.slow
def test_two_devices_with_batch_norm_equal_ghost_batches_on_one_device():
    ghost, whole, two = _nets(True, [[mx.cpu(0)], [mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]])
    Learner(two, _loader(), None, _sgd(two), [mx.cpu(0), mx.cpu(1)], handle_signals=False).fit(1)
    Learner(whole, _loader(), None, _sgd(whole), mx.cpu(0), handle_signals=False).fit(1)
    loss, trainer = gluon.loss.SoftmaxCrossEntropyLoss(), _sgd(ghost)
    for X, y in _loader():
        halves = gluon.utils.split_data(X, 2, even_split=False)
        labels = gluon.utils.split_data(y, 2, even_split=False)
        with autograd.record():  # each half normalised with its own statistics
            losses = [loss(ghost(x), t).sum() for x, t in zip(halves, labels)]
        autograd.backward(losses)
        trainer.step(X.shape[0])
    p_ghost, p_whole, p_two = _trainable(ghost), _trainable(whole), _trainable(two)
    for name in p_ghost:
        np.testing.assert_allclose(p_two[name], p_ghost[name], rtol=1e-4, atol=1e-5,
                                   err_msg=name)
    assert _max_difference(p_two, p_whole) > 1e-4  # whole-batch statistics train differently


@needs_data
@pytest.mark.slow
def test_run_training_on_two_cpu_contexts_with_the_local_kvstore(tmp_path):
    import json

    from gluon_resnet.experiment import run_training

    config = TrainConfig(model="cifar_resnet20_v1", resize=None, limit=300, batch_size=50,
                         epochs=1, ctx="cpu:0,1", kvstore="local", data_root=DATA_DIR)
    history, out = run_training(config, out=str(tmp_path / "run"), quiet=True, progress=False)
    assert len(history) == 1 and history[0]["test_acc"] >= 0
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["kvstore"] == "local" and saved["ctx"] == "cpu:0,1" and saved["workers"] == 1
    assert os.path.getsize(os.path.join(out, "checkpoint.ckpt")) > 0


# ---------------------------------------------------------------------------
# Bad arguments: one sentence each
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, sentence", [
    (["launch", "--workers", "0", "--", "train"], "argument --workers: must be a positive integer"),
    (["launch", "--workers", "2", "train", "--epochs", "1"], "put the training command after '--'"),
    (["launch", "--workers", "2"], "put the training command after '--'"),
    (["launch", "--", "eval", "--params", "x"], "only the train command"),
    (["launch", "--", "train", "--kvstore", "local"], "leave out --kvstore local"),
    (["launch", "--", "train", "--ctx", "gpu:7"], "gpu(7) is not available on this machine"),
    (["launch", "--", "train", "--ctx", "tpu"], "unknown device 'tpu'"),
    (["train", "--ctx", "gpu:7"], "gpu(7) is not available on this machine"),
    (["train", "--kvstore", "dist_sync"], "start them with gluon-resnet launch"),
])
def test_bad_arguments_give_one_sentence(argv, sentence, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DMLC_ROLE", raising=False)
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse
        status = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith("gluon-resnet %s: error: " % argv[0]), err
    assert sentence in err[-1] and "Traceback" not in "\n".join(err)
    assert os.listdir(tmp_path) == []  # nothing started, nothing written


# ---------------------------------------------------------------------------
# Several processes
# ---------------------------------------------------------------------------

class Job:
    """A launcher subprocess whose output lines are collected as they come.

    Every job started is in ``Job.started_jobs`` until ``kill_started_jobs`` (run by an
    autouse fixture in a ``finally``) has killed what is left of it.
    """

    started_jobs = []

    def __init__(self, argv, cwd, env=None):
        self.proc = subprocess.Popen(argv, cwd=cwd, env=dict(os.environ, **(env or {})),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        Job.started_jobs.append(self)
        self.known_pids = {}  # role -> pid, once the launcher printed them
        self.lines, self.err, self.queue = [], [], queue.Queue()
        self._readers = [threading.Thread(target=self._read, args=(s, sink), daemon=True)
                         for s, sink in ((self.proc.stdout, self.lines),
                                         (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    def _read(self, stream, sink):
        for line in stream:
            sink.append(line.rstrip("\n"))
            self.queue.put(line)

    def wait_for(self, pattern, timeout):
        """The first output line matching ``pattern`` (waits up to ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines + self.err:
                if re.search(pattern, line):
                    return line
            if self.proc.poll() is not None and self.queue.empty():
                for t in self._readers:  # the last lines, up to the end of the output
                    t.join(timeout=10)
                for line in self.lines + self.err:
                    if re.search(pattern, line):
                        return line
                raise AssertionError("launcher exited before printing %r:\n%s"
                                     % (pattern, self.output()))
            try:
                self.queue.get(timeout=max(0.01, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("no line matching %r within %s s:\n%s"
                                     % (pattern, timeout, self.output()))

    def pids(self):
        line = self.wait_for(r"^\[launch\] .* pids: ", 60)
        self.known_pids = {role: int(pid) for role, pid in PIDS.findall(line.split("pids: ")[1])}
        return dict(self.known_pids)

    def kill(self):
        """SIGKILL a launcher still running: its process group and its processes' own groups.

        (A launcher that exited has stopped its processes; a killed one takes them along
        through their parent-death signal.)
        """
        if self.proc.poll() is None:
            for pgid in [self.proc.pid, *self.known_pids.values()]:  # each its own session
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.proc.wait()
        for t in self._readers:
            t.join(timeout=10)

    def finish(self, timeout):
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError("launcher still running after %s s:\n%s"
                                 % (timeout, self.output()))
        for t in self._readers:
            t.join(timeout=10)
        return status

    def output(self):
        return "\n".join(self.lines + ["--- stderr ---"] + self.err)


def _launch(args, cwd, env=None):
    return Job([sys.executable, "-m", "gluon_resnet", "launch", *args], cwd, env)


@pytest.fixture(autouse=True)
def kill_started_jobs():
    """Whatever a test asserts, no launcher, scheduler, server or worker outlives it."""
    try:
        yield
    finally:
        while Job.started_jobs:
            Job.started_jobs.pop().kill()


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open("/proc/%d/stat" % pid) as f:  # a zombie that nobody reaped yet counts as gone
        return f.read().split(")")[-1].split()[0] == "Z"


def _assert_all_gone(pids):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(_gone(p) for p in pids.values()):
        time.sleep(0.1)
    assert all(_gone(p) for p in pids.values()), {r: p for r, p in pids.items() if not _gone(p)}


TRAIN = ["train", "--no-resize", "--data-root", DATA_DIR, "--no-progress", "--seed", "1"]
SMALL = ["--model", "cifar_resnet20_v1", "--limit", "2000", "--batch-size", "50", "--lr", "0.05"]


@needs_data
@pytest.mark.slow
def test_two_workers_train_and_end_identical(tmp_path):
    out = tmp_path / "run"
    dump = str(tmp_path / "params-{rank}.params")
    job = _launch(["--workers", "2", "--servers", "1", "--timeout", "300", "--", *TRAIN, *SMALL,
                   "--epochs", "1", "--out", str(out)], cwd=tmp_path,
                  env={"GLUON_RESNET_DUMP_PARAMS": dump})
    pids = job.pids()
    assert job.finish(300) == 0, job.output()
    text = job.output()
    assert "[worker 0] distributed: 2 workers, kvstore dist_sync, global batch 50 = 2 x 25" in text
    epoch = [line for line in job.lines if "epoch 1, loss" in line]
    assert len(epoch) == 1 and epoch[0].startswith("[worker 0] "), text  # worker 0 only prints
    p0, p1 = (mx.nd.load(dump.format(rank=r)) for r in (0, 1))
    assert sorted(p0) == sorted(p1) and any("running_var" in k for k in p0)
    for name in p0:  # trainable and BN running statistics alike
        np.testing.assert_array_equal(p0[name].asnumpy(), p1[name].asnumpy(), err_msg=name)
    accuracy = float(re.search(r"test acc (\d\.\d+)", epoch[0]).group(1))
    assert accuracy > 0.25, text  # chance is 0.1; one process reaches about 0.49
    # Only worker 0 wrote the run folder; nothing else appeared.
    assert sorted(os.listdir(out)) == ["checkpoint.ckpt", "config.json", "history.csv",
                                       "history.json", "learning_curve.png"]
    assert sorted(os.listdir(tmp_path)) == ["params-0.params", "params-1.params", "run"]
    _assert_all_gone(pids)
    # Resuming with workers: every worker loads worker 0's checkpoint and they stay identical.
    job = _launch(["--workers", "2", "--timeout", "300", "--", "train", "--resume",
                   str(out / "checkpoint.ckpt"), "--epochs", "2", "--no-progress"], cwd=tmp_path,
                  env={"GLUON_RESNET_DUMP_PARAMS": dump})
    assert job.finish(300) == 0, job.output()
    first = [line for line in job.lines if ", loss" in line][0]
    assert first.startswith("[worker 0] epoch 2, loss")
    p0, p1 = (mx.nd.load(dump.format(rank=r)) for r in (0, 1))
    for name in p0:
        np.testing.assert_array_equal(p0[name].asnumpy(), p1[name].asnumpy(), err_msg=name)


WORKER_SCRIPT = """
    import sys

    import gluon_resnet
    from mxnet.gluon import nn
    from gluon_resnet.models import register_model


    @register_model("test_no_bn", "a small network without batch normalisation")
    def test_no_bn(num_classes=10):
        net = nn.HybridSequential()
        net.add(nn.Conv2D(8, 3, padding=1, activation="relu"), nn.MaxPool2D(2),
                nn.Conv2D(16, 3, padding=1, activation="relu"), nn.GlobalAvgPool2D(),
                nn.Dense(num_classes))
        return net


    from gluon_resnet.cli import main

    sys.exit(main())
"""


def _one_process_and_two_workers(tmp_path, worker_script, args):
    """Run ``worker_script`` (``train`` with a test model registered, its parameters dumped)
    once in one process and once as two ``dist_sync`` workers with one server: the one
    process's parameters, each worker's, and the launcher's output."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(worker_script))
    single = subprocess.run(
        [sys.executable, str(script), *args, "--out", str(tmp_path / "single")], cwd=tmp_path,
        env=dict(os.environ, GLUON_RESNET_DUMP_PARAMS=str(tmp_path / "single.params")),
        capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    launcher = ("import sys; from gluon_resnet.distributed import launch; "
                "sys.exit(launch(sys.argv[1:], workers=2, servers=1, timeout=300))")
    job = Job([sys.executable, "-c", launcher, str(script), *args, "--out", str(tmp_path / "dist")],
              tmp_path, env={"GLUON_RESNET_DUMP_PARAMS": str(tmp_path / "dist-{rank}.params")})
    assert job.finish(300) == 0, job.output()
    workers = [mx.nd.load(str(tmp_path / ("dist-%d.params" % rank))) for rank in (0, 1)]
    return mx.nd.load(str(tmp_path / "single.params")), workers, job.output()


@needs_data
@pytest.mark.slow
def test_two_workers_compute_what_one_process_computes_without_batch_norm(tmp_path):
    args = [*TRAIN, "--model", "test_no_bn", "--limit", "640", "--batch-size", "64",
            "--lr", "0.2", "--epochs", "2"]
    ref, workers, output = _one_process_and_two_workers(tmp_path, WORKER_SCRIPT, args)
    assert "global batch 64 = 2 x 32" in output
    for got in workers:
        assert sorted(got) == sorted(ref)
        for name in ref:
            # Two local batches of 32 summed by the kvstore round differently from one
            # batch of 64: over 20 steps at lr 0.2 that moves weights by up to ~2e-5, while
            # a wrong gradient (summed over workers, not averaged) fails by far.
            np.testing.assert_allclose(got[name].asnumpy(), ref[name].asnumpy(), rtol=1e-4,
                                       atol=5e-5, err_msg=name)


LONG = ["--model", "cifar_resnet20_v1", "--limit", "1000", "--batch-size", "50", "--epochs", "50"]

#: A worker that runs ``gluon-resnet train`` with one more callback: after batch
#: ``BATCH`` of epoch ``EPOCH`` (1-based), the worker of launcher index ``INDEX`` does
#: ``ACTION``: ``kill-self`` (SIGKILL itself) or a signal number to send to the launcher,
#: its parent; it then waits until that signal reached it back (the launcher passes it
#: on to worker 0), so that the stop comes after exactly that batch.
SIGNAL_WORKER = """
    import os, signal, sys, time

    from gluon_resnet import experiment
    from gluon_resnet.cli import main
    from gluon_resnet.events import Callback

    INDEX, ACTION, EPOCH, BATCH = sys.argv[1], sys.argv[2], 1, 3
    build = experiment.build_callbacks


    class Act(Callback):
        def after_batch(self, learner):
            if os.environ["GLUON_RESNET_WORKER"] != INDEX:
                return
            if (learner.epoch + 1, learner.batch) != (EPOCH, BATCH):
                return
            if ACTION == "kill-self":
                os.kill(os.getpid(), signal.SIGKILL)
            os.kill(os.getppid(), int(ACTION))
            deadline = time.monotonic() + 60
            while not learner.stop.requested and time.monotonic() < deadline:
                time.sleep(0.01)  # the launcher's forwarded signal is on its way


    experiment.build_callbacks = lambda *a, **k: build(*a, **k) + [Act()]
    sys.exit(main(sys.argv[3:]))
"""


def _signal_job(tmp_path, index, action, out):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(SIGNAL_WORKER))
    launcher = ("import sys; from gluon_resnet.distributed import launch; "
                "sys.exit(launch(sys.argv[1:], workers=2, servers=1, timeout=200))")
    return Job([sys.executable, "-c", launcher, str(script), index, action, *TRAIN, *LONG,
                "--out", str(out)], tmp_path)


@needs_data
@pytest.mark.slow
def test_a_killed_worker_stops_the_whole_job(tmp_path):
    job = _signal_job(tmp_path, "1", "kill-self", tmp_path / "run")
    pids = job.pids()
    status = job.finish(120)
    assert status == 1, job.output()
    message = job.err[-1]
    assert message == ("gluon-resnet launch: error: worker 1 (pid %d) was killed by SIGKILL; "
                       "stopped the other processes of the job" % pids["worker 1"]), job.output()
    _assert_all_gone(pids)


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=lambda s: signal.Signals(s).name)
def test_a_stop_signal_lets_worker_0_save_the_batch_then_stops_the_job(tmp_path, signum):
    out = tmp_path / "run"
    job = _signal_job(tmp_path, "0", str(int(signum)), out)
    pids = job.pids()
    status = job.finish(120)
    assert status == 128 + signum, job.output()
    text = job.output()
    # The job runs in tmp_path: the path is printed relative to it (cli.shown_path).
    assert "[worker 0] Nothing is lost: the state is saved in %s" % os.path.join(
        "run", "checkpoint.ckpt") in text, text
    assert "gluon-resnet launch: interrupted by" in job.err[-1]
    _assert_all_gone(pids)
    meta = read_checkpoint_meta(str(out / "checkpoint.ckpt"))
    assert (meta["epoch"], meta["batch"]) == (0, 3)
    if signum != signal.SIGTERM:
        return
    # A distributed run's checkpoint resumes in one process (kvstore back to 'device').
    done = subprocess.run([sys.executable, "-m", "gluon_resnet", "train", "--resume",
                           str(out / "checkpoint.ckpt"), "--epochs", "1", "--no-progress"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "epoch 1, loss" in done.stdout


@pytest.mark.slow
def test_timeout_stops_the_job(tmp_path):
    job = _launch(["--workers", "2", "--timeout", "4", "--", *TRAIN, *LONG,
                   "--out", str(tmp_path / "run")], cwd=tmp_path)
    pids = job.pids()
    assert job.finish(40) == 124, job.output()
    assert job.err[-1] == ("gluon-resnet launch: error: the job ran longer than --timeout 4 "
                           "seconds; stopped all of its processes")
    assert not [line for line in job.lines if "epoch 50, loss" in line]  # stopped before the end
    _assert_all_gone(pids)


@pytest.mark.slow
def test_a_worker_error_names_the_worker(tmp_path):
    # 51 does not split over 2 workers: both stop before joining, the launcher reports one.
    job = _launch(["--workers", "2", "--timeout", "60", "--", "train", "--batch-size", "51",
                   "--out", str(tmp_path / "run")], cwd=tmp_path)
    pids = job.pids()
    assert job.finish(60) == 1, job.output()
    assert "must be divisible by the 2 workers; try 50" in job.output()
    assert re.match(r"gluon-resnet launch: error: worker [01] \(pid \d+\) exited with status 2; "
                    r"stopped the other processes of the job$", job.err[-1]), job.output()
    _assert_all_gone(pids)
    assert os.listdir(tmp_path) == []


INPUT_BN_SCRIPT = """
    import sys

    import gluon_resnet
    from mxnet.gluon import nn
    from gluon_resnet.models import register_model


    @register_model("test_input_bn", "batch normalisation of the input image, then a small net")
    def test_input_bn(num_classes=10):
        net = nn.HybridSequential()
        net.add(nn.BatchNorm(in_channels=1), nn.Conv2D(8, 3, padding=1, activation="relu"),
                nn.GlobalAvgPool2D(), nn.Dense(num_classes))
        return net


    from gluon_resnet.cli import main

    sys.exit(main())
"""


@needs_data
@pytest.mark.slow
def test_two_workers_average_the_batch_norm_statistics_of_one_process(tmp_path):
    # A BN layer on the input image normalises with statistics of the data alone, whatever
    # the training does to the layers after it.  Each worker's running mean follows the means
    # of its half-batches; their average over the workers is the running mean of the whole
    # batches, which one process computes.  Two effects keep them a few parts in a thousand
    # apart: the variance of a whole batch also holds the spread between its halves' means,
    # and at the first step every worker takes worker 0's parameters, its running statistics
    # included.  Statistics summed over the workers, not averaged, are twice as large.
    args = [*TRAIN, "--model", "test_input_bn", "--limit", "256", "--batch-size", "64",
            "--epochs", "1", "--precision", "fp32"]
    ref, workers, _ = _one_process_and_two_workers(tmp_path, INPUT_BN_SCRIPT, args)
    mean, var = ref["0.running_mean"], ref["0.running_var"]
    assert 0 < abs(float(mean.asscalar())) and 0 < float(var.asscalar())
    for got in workers:
        np.testing.assert_allclose(got["0.running_mean"].asnumpy(), mean.asnumpy(), rtol=1e-2)
        np.testing.assert_allclose(got["0.running_var"].asnumpy(), var.asnumpy(), rtol=1e-2)


class _RecordingWorker:
    """A worker node of ``launcher._Job`` that runs nothing: it records the launcher's stop
    signal dispositions when started and has finished at once."""

    role, proc, reader, launch_index, index, ranked, pid = "worker", None, None, 0, 0, True, 1
    host, label = None, "worker 0"
    env = {"DMLC_PS_ROOT_URI": "127.0.0.1", "DMLC_PS_ROOT_PORT": "9091", "OMP_NUM_THREADS": "1"}

    def start(self):
        self.seen = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM)}

    def pump(self, out, lock):
        pass

    def poll(self):
        return 0


@pytest.mark.parametrize("inherited", [signal.SIG_IGN, signal.SIG_DFL])
def test_the_launcher_leaves_an_ignored_hangup_ignored(inherited):
    from gluon_resnet.distributed import launcher

    saved = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM)}
    signal.signal(signal.SIGHUP, inherited)  # SIG_IGN: as nohup starts the launcher
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        worker = _RecordingWorker()
        job = launcher._Job([worker], io.StringIO(), io.StringIO(), grace=0)
        assert job.run(timeout=None) == 0
        assert (worker.seen[signal.SIGHUP] == signal.SIG_IGN) == (inherited == signal.SIG_IGN)
        assert worker.seen[signal.SIGTERM] not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGHUP) == inherited  # and back as it was
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
