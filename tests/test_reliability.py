"""Nothing is lost: one run per folder, checkpoints that survive SIGKILL and a full disk,
refusals before anything is spent, and the rough edges a user meets.

Run folders here are either trained for real (a tiny network on a Fashion-MNIST subset) or
made by ``made_run`` (helpers.py): a fresh network's checkpoint with the files training
writes, for the checks that refuse or read a run without training it.
"""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import mxnet as mx

from gluon_resnet import experiment
from gluon_resnet.checkpoint import SaveError, read_checkpoint, read_checkpoint_meta
from gluon_resnet.cli import main
from gluon_resnet.config import RunError, TrainConfig
from gluon_resnet.data import DataDescription
from gluon_resnet.events import Callback
from gluon_resnet.experiment import run_training
from gluon_resnet.models import get_model
from gluon_resnet.summary import activation_bytes
from gluon_resnet.pretrained import (WeightMismatchError,
                                     load_torchvision_weights, torchvision_key_map)

from helpers import FASHION, TINY, made_run, needs_data


def _contents(folder):
    """``{name: bytes}`` of the files in ``folder``: proof that nothing changed."""
    return {name: open(os.path.join(folder, name), "rb").read()
            for name in sorted(os.listdir(folder))}


# ---------------------------------------------------------------------------
# A run folder belongs to one run.
# ---------------------------------------------------------------------------

class StartAnotherRun(Callback):
    """At the first batch, start a second training into the same folder; keep what it raised."""

    def __init__(self, folder):
        self.folder, self.refusal = folder, None

    def after_batch(self, learner):
        if self.refusal is None:
            with pytest.raises(RunError) as info:
                run_training(TrainConfig(**dict(TINY, seed=1)), out=self.folder, quiet=True,
                             progress=False)
            self.refusal = str(info.value)


@needs_data
@pytest.mark.slow
def test_a_second_training_into_a_running_folder_is_refused_naming_the_first(tmp_path):
    out = str(tmp_path / "twin")
    second = StartAnotherRun(out)
    history, _ = run_training(TrainConfig(**TINY), out=out, quiet=True, progress=False,
                              callbacks=[second])
    assert len(history) == 1
    assert "run folder %s is in use by another training (process %d on %s, started " \
        % (out, os.getpid(), socket.gethostname()) in second.refusal
    # The first run's files are its own, and the lock went with it.
    assert read_checkpoint_meta(os.path.join(out, "checkpoint.ckpt"))["config"]["seed"] == 0
    assert "run.lock" not in os.listdir(out)


def test_resuming_into_another_runs_folder_is_refused_and_changes_nothing(tmp_path, capsys):
    chapter, fast = str(tmp_path / "chapter"), str(tmp_path / "fast")
    made_run(chapter, model="cifar_resnet20_v1")
    made_run(fast)
    before = _contents(chapter)
    assert main(["train", "--resume", os.path.join(fast, "checkpoint.ckpt"), "--epochs", "2",
                 "--out", chapter]) == 2
    err = capsys.readouterr().err
    assert "%s holds another run" % chapter in err and "leave out --out" in err
    assert _contents(chapter) == before
    # Its own folder, however spelt, and a new folder are fine.
    own = os.path.join(fast, ".", "")
    assert experiment.prepare_folder(own, fast, "compact_resnet8_w32") == own
    new = str(tmp_path / "new")
    assert experiment.prepare_folder(new, fast, "compact_resnet8_w32") == new


@pytest.mark.parametrize("epochs", [None, "1", "2"])
def test_resuming_a_run_without_epochs_left_says_so_and_changes_nothing(tmp_path, capsys, epochs):
    run = str(tmp_path / "fast")
    made_run(run, epochs_done=2)
    before = _contents(run)
    checkpoint = os.path.join(run, "checkpoint.ckpt")
    assert main(["train", "--resume", checkpoint] + (["--epochs", epochs] if epochs else [])) == 2
    err = capsys.readouterr().err
    said = "it has finished" if epochs is None else "--epochs %s would train none" % epochs
    assert "%s has already trained 2 epochs, so %s: give --epochs 3 or more to train longer " \
           "(nothing was changed)" % (checkpoint, said) in err
    assert _contents(run) == before


# ---------------------------------------------------------------------------
# Refuse before spending.
# ---------------------------------------------------------------------------

@needs_data
def test_a_batch_larger_than_the_training_set_is_refused_with_both_numbers(tmp_path):
    out = str(tmp_path / "run")
    with pytest.raises(RunError, match=r"the batch size 150 is larger than the training set "
                                       r"\(100 images\); give --batch-size 100 or less"):
        run_training(TrainConfig(**dict(TINY, batch_size=150)), out=out, quiet=True,
                     progress=False)
    assert not os.path.exists(out)  # refused before config.json: no folder left behind


@needs_data
def test_a_batch_that_cannot_fit_in_memory_is_refused_before_the_first_step(tmp_path,
                                                                          monkeypatch):
    out = str(tmp_path / "run")
    monkeypatch.setattr(experiment, "available_memory", lambda: 10 ** 6)  # 1 MB left
    with pytest.raises(RunError, match=r"a batch of 50 images of 28x28 needs at least \d+ MB for "
                                       r"the outputs of compact_resnet8_w32's convolutions, but "
                                       r"only 1 MB of memory is available"):
        run_training(TrainConfig(**TINY), out=out, quiet=True, progress=False)
    assert not os.path.exists(out)


def test_the_memory_estimate_is_a_lower_bound_of_what_training_took():
    # Measured (build_network's memory plan, benchmarks/RESULTS.md): the chapter's recipe, batch
    # 256 at 96x96 in fp32, peaked at 1.96 GiB of resident memory; so that much must pass.
    config = TrainConfig(batch_size=256)
    data = DataDescription.from_dict(dict(FASHION, size=[96, 96]))
    measured = int(1.96 * 2 ** 30)
    per_image = activation_bytes(get_model("chapter_resnet18"), (1, 1, 96, 96))
    # More than the first convolution's output alone (64 x 48 x 48 in the shape table).
    assert 64 * 48 * 48 * 4 < per_image < measured / 256
    experiment.check_memory(config, data, "fp32", [mx.cpu()], available=measured)
    # Sixteen times the batch cannot fit in what one batch took.
    config = dataclasses.replace(config, batch_size=16 * 256)
    with pytest.raises(RunError, match=r"a batch of 4096 images of 96x96 needs at least \d+\.\d "
                                       r"GB .*; give a smaller --batch-size or --resize"):
        experiment.check_memory(config, data, "fp32", [mx.cpu()], available=measured)


# ---------------------------------------------------------------------------
# A disk that fills up.
# ---------------------------------------------------------------------------

class FailDisk(Callback):
    """After batch 1 of epoch 2 (before the Checkpointer), fill the disk of ``mount`` or make
    the run folder ``out`` read-only (a read-only bind mount of it over itself: the files
    open for writing are on the mount below, so the remount is not refused as busy)."""

    def __init__(self, mount, out, how):
        self.mount, self.out, self.how, self.done = mount, out, how, False

    def after_batch(self, learner):
        if (learner.epoch, learner.batch) != (1, 1) or self.done:
            return
        self.done = True
        if self.how == "full":
            with open(os.path.join(self.mount, "filler"), "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
        else:
            subprocess.run(["mount", "--bind", self.out, self.out], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", self.out], check=True)


@needs_data
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
@pytest.mark.parametrize("how, reason", [("full", "No space left on device"),
                                         ("read-only", "Read-only file system")])
def test_a_full_or_read_only_disk_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, how,
                                                                             reason):
    mount = str(tmp_path / "disk")
    out = os.path.join(mount, "run")
    os.mkdir(mount)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mount], check=True)
    try:
        config = TrainConfig(**dict(TINY, epochs=2, limit=40, batch_size=20))
        with pytest.raises(SaveError) as info:
            # Epoch 1 ends with a checkpoint; the disk fails after batch 1 of epoch 2, just
            # before the checkpoint due then.
            run_training(config, out=out, quiet=True, progress=False, checkpoint_batches=1,
                         callbacks=[FailDisk(mount, out, how)])
        assert str(info.value).startswith("cannot write checkpoint.ckpt in %s (%s); the "
                                          "checkpoint.ckpt there before" % (out, reason))
        meta = read_checkpoint(out).meta  # read whole: not damaged
        assert (meta["epoch"], meta["batch"], len(meta["history"])) == (1, 0, 1)
        assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]
    finally:
        if how == "read-only":
            subprocess.run(["umount", out], check=False)
        subprocess.run(["umount", mount], check=True)


# ---------------------------------------------------------------------------
# SIGKILL at twenty-odd moments, resumed each time.
# ---------------------------------------------------------------------------

KILLS = r'''
import json, os, signal, sys, traceback, zipfile

import gluon_resnet  # noqa: F401  (before MXNet: thread settings)
import matplotlib.figure  # noqa: F401  (every child draws the learning curve)
import mxnet as mx
import numpy as np

from gluon_resnet.checkpoint import CheckpointError, read_checkpoint, read_checkpoint_meta
from gluon_resnet.config import TrainConfig
from gluon_resnet.data import load_fashion_mnist_arrays
from gluon_resnet.events import Callback
from gluon_resnet.experiment import run_training

root, plans = sys.argv[1], json.loads(sys.argv[2])
CONFIG = TrainConfig(model="compact_resnet8_w32", resize=None, limit=100, batch_size=20,
                     epochs=2, seed=5, momentum=0.9, precision="fp32")
EVERY = 2  # a checkpoint every two batches stands for --checkpoint-minutes
load_fashion_mnist_arrays()  # parsed once here, inherited by every child


def child(folder, plan, log):
    """Train into ``folder`` (resuming when it holds a checkpoint); SIGKILL at ``plan``."""
    kind, n = plan
    seen, where = {}, [None, None]

    def say(*words):
        log.write(" ".join(map(str, words)) + "\n")
        log.flush()

    def reach(event):
        seen[event] = seen.get(event, 0) + 1
        if event == kind and seen[event] == n:
            say("kill", *where)
            os.kill(os.getpid(), signal.SIGKILL)

    replace = os.replace

    def replacing(src, dst):
        name = os.path.basename(dst)
        reach({"checkpoint.ckpt": "ckpt-written", "history.json": "history",
               "learning_curve.png": "figure", "config.json": "config"}.get(name, name))
        replace(src, dst)
        if name == "checkpoint.ckpt":
            meta = read_checkpoint_meta(dst)
            say("saved", meta["epoch"], meta["batch"])
            reach("ckpt-renamed")  # before the folder is flushed

    write = zipfile.ZipFile.write

    def writing(self, *args, **kwargs):
        reach("ckpt-half")  # meta.json is in the temporary file, the parameters are not
        return write(self, *args, **kwargs)

    os.replace, zipfile.ZipFile.write = replacing, writing

    class Watch(Callback):
        order = 5  # before the Checkpointer: a kill at a batch comes before its checkpoint

        def before_fit(self, learner):
            where[:] = [learner.epoch, learner.batch]
            say("start", *where)
            reach("start")

        def after_batch(self, learner):
            where[:] = [learner.epoch, learner.batch]
            reach("batch")

        def before_validate(self, learner):
            reach("validate")

    resume = folder if os.path.exists(os.path.join(folder, "checkpoint.ckpt")) else None
    run_training(None if resume else CONFIG, out=folder, resume=resume, quiet=True,
                 progress=False, checkpoint_minutes=0, checkpoint_batches=EVERY,
                 callbacks=[Watch()])
    say("finished")


def fork(folder, plan, name):
    log_path, err_path = (os.path.join(root, name + ext) for ext in (".log", ".err"))
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(err, 1)
            os.dup2(err, 2)
            with open(log_path, "w") as log:
                child(folder, plan, log)
        except BaseException:
            traceback.print_exc()
            code = 3
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    with open(log_path) as f, open(err_path) as g:
        lines, err = [l.split() for l in f], g.read()
    return {"plan": plan, "killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9,
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "log": lines, "err": err}


def state(folder):
    """Position of the folder's checkpoint, read whole (None: no checkpoint yet)."""
    path = os.path.join(folder, "checkpoint.ckpt")
    if not os.path.exists(path):
        return None
    try:
        meta = read_checkpoint(path).meta
    except CheckpointError as exc:
        return "damaged: %s" % exc
    return [meta["epoch"], meta["batch"]]


def parameters(folder):
    ckpt = read_checkpoint(os.path.join(folder, "checkpoint.ckpt"))
    path = os.path.join(root, "params")
    with open(path, "wb") as f:
        f.write(ckpt._members["model.params"])
    return {k: v.asnumpy() for k, v in mx.nd.load(path).items()}, ckpt.meta["history"]


straight, run = os.path.join(root, "straight"), os.path.join(root, "run")
report = {"straight": fork(straight, ["never", 0], "straight"), "children": []}
for i in range(80):
    if state(run) == [CONFIG.epochs, 0]:
        break  # killed after the last checkpoint: the run is complete
    entry = fork(run, plans[i % len(plans)], "child-%02d" % i)
    entry["checkpoint"] = state(run)
    entry["leftovers"] = sorted(n for n in os.listdir(run) if n.startswith(".tmp-"))
    report["children"].append(entry)
    if not entry["killed"]:
        break
(a, history_a), (b, history_b) = parameters(straight), parameters(run)
report["histories"] = [history_a, history_b]
report["max_difference"] = max(float(np.abs(a[k] - b[k]).max() / (np.abs(a[k]).max() + 1e-6))
                               for k in a)
report["files"] = sorted(os.listdir(run))
with open(os.path.join(root, "report.json"), "w") as f:
    json.dump(report, f)
'''

#: Where each child is killed: (event, its occurrence in that child).  Events: the child's
#: start (after the lock and config.json), a batch, the evaluation, a checkpoint half written,
#: fully written but not renamed, renamed but its folder not flushed, and the renames of
#: history.json, learning_curve.png and config.json.
PLANS = [["start", 1], ["ckpt-half", 1], ["ckpt-written", 1], ["ckpt-renamed", 1],
         ["batch", 1], ["batch", 3], ["validate", 1], ["history", 1], ["figure", 1],
         ["config", 1], ["ckpt-half", 2], ["ckpt-written", 2]]
PER_EPOCH, EVERY = 5, 2  # 100 images in batches of 20; a checkpoint every two batches


def _batches(position, start):
    """Batches done at ``position`` ([epoch, batch]; None: at the child's start)."""
    epoch, batch = start if position[0] == "None" else map(int, position)
    return epoch * PER_EPOCH + batch


@needs_data
@pytest.mark.slow
def test_sigkill_at_twenty_moments_loses_at_most_the_checkpoint_interval(tmp_path):
    script = tmp_path / "kills.py"
    script.write_text(KILLS)
    env = dict(os.environ, TMPDIR=str(tmp_path), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), json.dumps(PLANS)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=600)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the script and any child it forked
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, output
    report = json.load(open(tmp_path / "report.json"))
    assert report["straight"]["exit"] == 0, report["straight"]["err"]
    children = report["children"]
    killed = [c for c in children if c["killed"]]
    assert len(killed) >= 20, [c["plan"] for c in children]
    assert all(c["killed"] for c in children[:-1]), children[-1]["err"]
    last_save, start = None, [0, 0]
    for i, c in enumerate(children):
        log = c["log"]
        # Each run starts where the last checkpoint written before the kill left it.
        assert log[0] == ["start"] + [str(v) for v in start] or log[-1][0] == "kill", (i, log)
        saves = [[int(w[1]), int(w[2])] for w in log if w[0] == "saved"]
        last_save = saves[-1] if saves else last_save
        assert c["checkpoint"] == last_save, (i, c["plan"], c["checkpoint"], last_save)
        if c["killed"]:
            kill = log[-1]
            assert kill[0] == "kill", (i, log)
            lost = _batches(kill[1:], start) - _batches(last_save or [0, 0], start)
            assert 0 <= lost <= EVERY, (i, c["plan"], kill, last_save)
        start = last_save or [0, 0]
    assert children[-1]["exit"] == 0 or children[-1]["checkpoint"] == [2, 0], children[-1]["err"]
    # Every kill left a lock behind, and the next run took it over with a notice.
    assert all("note: took over the lock of run folder" in c["err"] for c in children[1:])
    # Half-written checkpoints were left as temporary files, and cleared by the next run.
    assert any(c["leftovers"] for c in children)
    assert children[-1]["leftovers"] == [] and "run.lock" not in report["files"]
    # Nothing of a killed save lies outside the run folder (TMPDIR is tmp_path here).
    assert not [n for n in os.listdir(tmp_path) if n.startswith("gluon_resnet-")]
    # The run that was killed again and again ends as the one that never was.
    straight, resumed = report["histories"]
    assert [h["epoch"] for h in resumed] == [1, 2]
    for a, b in zip(straight, resumed):
        for key in ("loss", "train_acc", "test_acc"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), (key, a, b)
    assert report["max_difference"] < 1e-5


# ---------------------------------------------------------------------------
# Rough edges a user meets, one test each.
# ---------------------------------------------------------------------------

@needs_data
@pytest.mark.slow
def test_a_run_folder_is_accepted_wherever_a_checkpoint_is_asked(tmp_path, capsys):
    run = str(tmp_path / "fast")
    made_run(run)
    assert main(["eval", "--params", run, "--limit", "100", "--precision", "fp32"]) == 0
    assert "test acc" in capsys.readouterr().out
    assert main(["export", "--params", run, "--symbol", str(tmp_path / "net")]) == 0
    assert os.path.isfile(tmp_path / "net-symbol.json")
    capsys.readouterr()
    grey = str(tmp_path / "grey.png")
    Image.new("L", (28, 28), 90).save(grey)
    assert main(["predict", "--params", run, grey]) == 0
    assert capsys.readouterr().out.startswith(grey + "\t")
    assert main(["train", "--resume", run, "--epochs", "2", "--no-progress"]) == 0, \
        capsys.readouterr().err
    assert read_checkpoint_meta(os.path.join(run, "checkpoint.ckpt"))["epoch"] == 2
    assert main(["eval", "--params", str(tmp_path)]) == 2
    assert "folder %s holds no checkpoint.ckpt" % tmp_path in capsys.readouterr().err


STOP_AT_FIRST_BATCH = """
    import os
    import signal

    if os.environ.get("STOP_AT_FIRST_BATCH"):
        from gluon_resnet import experiment
        from gluon_resnet.events import Callback

        class Stop(Callback):
            def after_batch(self, learner):
                if learner.batch == 1:
                    signal.raise_signal(signal.SIGTERM)

        build = experiment.build_callbacks
        experiment.build_callbacks = lambda *a, **k: build(*a, **k) + [Stop()]
"""


@needs_data
@pytest.mark.slow
def test_the_printed_resume_command_works_when_pasted(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(STOP_AT_FIRST_BATCH))
    command = os.path.join(os.path.dirname(sys.executable), "gluon-resnet")
    # As after set-up: .venv/bin is not on the PATH.
    env = dict(os.environ, PATH="/usr/bin:/bin", PYTHONPATH=str(hook), STOP_AT_FIRST_BATCH="1")
    stopped = subprocess.run(
        [command, "train", "--no-resize", "--limit", "100", "--batch-size", "50", "--epochs",
         "2", "--model", "compact_resnet8_w32", "--precision", "fp32", "--out", "run",
         "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 143, stopped.stderr
    line = [s for s in stopped.stderr.splitlines() if s.startswith("Resume with: ")]
    assert len(line) == 1, stopped.stderr
    del env["STOP_AT_FIRST_BATCH"]
    pasted = subprocess.run(["bash", "-c", line[0][len("Resume with: "):]], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert pasted.returncode == 0, pasted.stderr
    assert "epoch 1, loss" in pasted.stdout and "epoch 2, loss" in pasted.stdout
    assert read_checkpoint_meta(str(tmp_path / "run" / "checkpoint.ckpt"))["epoch"] == 2


@pytest.mark.parametrize("name", ["resnext50_32x4d", "wide_resnet50_2"])
def test_weight_errors_name_the_network_that_was_built(name):
    stem = {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}
    with pytest.raises(WeightMismatchError, match="<state_dict> does not fit %s: " % name):
        load_torchvision_weights(get_model(name), stem)


def test_a_resnext_file_is_named_as_such_when_it_fits_nothing():
    # resnext50_32x4d's layout: 32 groups of width 4 in the first stage's 3x3 convolution.
    state = {"layer%d.%d.conv%d.weight" % (k, i, j): np.zeros((1, 1, 1, 1), np.float32)
             for k, blocks in enumerate((3, 4, 6, 3), 1) for i in range(blocks)
             for j in (1, 2, 3)}
    state["layer1.0.conv1.weight"] = np.zeros((128, 64, 1, 1), np.float32)
    state["layer1.0.conv2.weight"] = np.zeros((128, 4, 3, 3), np.float32)
    with pytest.raises(WeightMismatchError, match="holds weights for resnext50_32x4d"):
        load_torchvision_weights(get_model("resnet18_v1"), state)


@pytest.mark.slow
def test_the_load_report_names_the_network_that_was_built():
    net = get_model("resnext50_32x4d", num_classes=10)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    state = {k: p.data().asnumpy() for k, p in torchvision_key_map(net).items()}
    report = load_torchvision_weights(net, state)
    assert report.network == "resnext50_32x4d" and "into resnext50_32x4d" in str(report)
