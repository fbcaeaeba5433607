"""``--precision auto``: the decision from timings, its cache, the printed reason, real
measurements.

Every test here has a cache of its own under ``tmp_path`` (``XDG_CACHE_HOME``).  The timings
of most tests are given (``Children`` stands in for the two measuring processes, with a clock
of its own), so their decisions are deterministic; the slow tests measure a small network for
real, in child processes, one of them with every core kept busy.
"""

import datetime
import json
import os
import subprocess
import sys
import time
import types

import pytest

import mxnet as mx

from gluon_resnet import autoprecision
from gluon_resnet.autoprecision import Case, Decision, choose, decide
from gluon_resnet.cli import main
from gluon_resnet.models import get_model
from gluon_resnet.precision import (Precision, bf16_available, bf16_kernels,
                                    describe_precision, resolve_precision)

from helpers import needs_data

TODAY = datetime.date.today().isoformat()
CASE = Case("chapter_resnet18", 1, (96, 96), 256, "cpu(0)", "train", 10000)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """This test's own empty cache, measuring allowed, and the one-notice memory cleared."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(autoprecision.MEASURE_ENV, raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(autoprecision, "_noticed", [])
    return tmp_path / "cache" / "gluon_resnet" / "precision.json"


class Children:
    """Stands in for the two measuring processes, on a clock of its own.

    A step of ``batch`` images takes ``batch / speed`` seconds times ``load(n)``, ``n``
    counting the steps asked of either child so far: a machine whose load changes.
    ``fail``: a precision whose steps fail as a child that died would.
    """

    def __init__(self, fp32, bf16, infer=(300.0, 600.0), load=None, fail=None):
        self.speed = {"fp32": (fp32, infer[0]), "bf16": (bf16, infer[1])}
        self.load = load or (lambda n: 1.0)
        self.fail = fail
        self.now = 1000.0
        self.starts, self.steps, self.train_end = [], [], None

    def __call__(self, spec):
        self.starts.append(spec)
        return {p: _Child(self, spec, p) for p in ("fp32", "bf16")}

    def monotonic(self):
        return self.now


class _Child:
    def __init__(self, owner, spec, precision):
        self.owner, self.spec, self.precision = owner, spec, precision

    def ready(self, deadline):
        pass

    def ask(self, kind, deadline):
        owner = self.owner
        if self.precision == owner.fail:
            raise RuntimeError("the measuring process failed: MXNetError: no bf16 here")
        train, infer = owner.speed[self.precision]
        batch = self.spec["batch"] if kind == "train" else self.spec["infer_batch"]
        seconds = batch / (train if kind == "train" else infer) * owner.load(len(owner.steps))
        owner.steps.append((self.precision, kind))
        owner.now += seconds
        if owner.now > deadline:
            raise autoprecision._OverBudget
        if kind == "train":
            owner.train_end = owner.now
        return seconds

    def close(self):
        pass


def _given(monkeypatch, fp32, bf16, **kwargs):
    children = Children(fp32, bf16, **kwargs)
    monkeypatch.setattr(autoprecision, "_start_children", children)
    monkeypatch.setattr(autoprecision, "time", types.SimpleNamespace(
        monotonic=children.monotonic, perf_counter=time.perf_counter))
    return children


def test_bf16_is_chosen_from_five_percent_faster():
    assert choose(100.0, 105.0) == "bf16"
    assert choose(100.0, 104.9) == "fp32"
    assert choose(100.0, 95.0) == "fp32"
    assert choose(108.0, 150.0) == "bf16"


@pytest.mark.parametrize("fp32, bf16, expected, reason", [
    (108.0, 150.0, "bf16", "150 img/s against 108 in fp32"),
    (100.0, 105.0, "bf16", "105 img/s against 100 in fp32"),
    (100.0, 104.0, "fp32", "100 img/s against 104 in bf16"),
    (120.0, 100.0, "fp32", "120 img/s against 100 in bf16")])
def test_auto_decides_from_the_timings_and_says_why(monkeypatch, cache, fp32, bf16, expected,
                                                    reason):
    children = _given(monkeypatch, fp32, bf16)
    notes = []
    decision = decide(CASE, notes.append)
    assert (decision.precision, decision.source, decision.sure) == (expected, "measured", True)
    assert (decision.fp32, decision.bf16, decision.measured) == (fp32, bf16, TODAY)
    assert decision.describe() == "auto: %s on this CPU, measured %s" % (reason, TODAY)
    assert len(children.starts) == 1 and notes == []
    # The answer is kept for training and for inference (eval, predict: batch 256).
    stored = json.loads(cache.read_text())["decisions"]
    assert [(e["mode"], e["precision"], e["batch"], e["sure"]) for e in stored] == [
        ("train", expected, 256, True), ("infer", "bf16", 256, True)]


def test_the_precisions_take_turns_step_by_step(monkeypatch):
    """Each round is one step of each precision, the first of a round alternating."""
    children = _given(monkeypatch, 100.0, 150.0)
    decide(CASE)
    train = [p for p, kind in children.steps if kind == "train"]
    rounds = [tuple(train[i:i + 2]) for i in range(0, len(train), 2)]
    assert len(rounds) == 1 + autoprecision.MIN_ROUNDS  # a warm-up round, then until sure
    assert all(set(r) == {"fp32", "bf16"} for r in rounds), rounds
    assert [r[0] for r in rounds[1:]] == ["bf16", "fp32", "bf16"]


@pytest.mark.parametrize("load", [
    lambda n: 1.0 if n < 9 else 4.0,  # a program starts while measuring
    lambda n: 1.0 if n < 9 else 0.25,  # and one ends
    lambda n: 3.0 if (n // 2) % 2 else 1.0])  # busy every other round
def test_a_load_that_changes_while_measuring_hits_both_alike(monkeypatch, load):
    """bf16 1.5 times as fast: measured one after the other (fp32's steps, then bf16's) the
    first two loads would give the wrong answer; in turns every round's ratio is 1.5."""
    _given(monkeypatch, 100.0, 150.0, load=load)
    decision = decide(CASE)
    assert (decision.precision, decision.sure) == ("bf16", True)
    assert decision.bf16 / decision.fp32 == pytest.approx(1.5, rel=0.01)


def _disagreeing(n):
    """Every other round's fp32 step 1.2 times as slow: half the rounds say bf16 (ratio 1.2),
    half say fp32 (ratio 1.0); never sure."""
    return 1.2 if n % 4 == 0 else 1.0


def test_measuring_takes_a_share_of_the_run_not_a_flat_limit(monkeypatch):
    """Until sure, rounds go on while they fit in MAX_SHARE of the run's length at the faster
    precision: the limit grows with the run, past 30 s for a long one."""
    share = autoprecision.MAX_SHARE
    for steps in (500, 1000):
        children = _given(monkeypatch, 100.0, 100.0, load=_disagreeing)
        decide(CASE._replace(steps=steps))
        budget = share * steps * 256 / 100.0  # a step takes 2.56 s in either precision
        spent = children.train_end - 1000.0
        one_round = 2 * 2.56 * 1.2
        assert budget - one_round <= spent <= budget + one_round, (steps, spent, budget)
    assert spent > 30
    # A very long run stops at MAX_ROUNDS: unsure, and remembered as such.
    children = _given(monkeypatch, 100.0, 100.0, load=_disagreeing)
    decision = decide(CASE._replace(size=(64, 64), steps=10 ** 6))
    train = [p for p, kind in children.steps if kind == "train"]
    assert len(train) == 2 * (1 + autoprecision.MAX_ROUNDS)
    assert (decision.precision, decision.sure) == ("fp32", False)
    assert "not sure yet" in decision.describe()


def test_an_unsure_answer_is_kept_and_measured_again_by_a_longer_run(monkeypatch):
    children = _given(monkeypatch, 100.0, 100.0, load=_disagreeing)
    first = decide(CASE)
    assert first.source == "measured" and not first.sure and len(children.starts) == 1
    again = decide(CASE)  # a restart or a resume: the same length, no new measuring
    assert (again.source, again.precision, again.sure) == ("cached", first.precision, False)
    assert len(children.starts) == 1
    children.load = lambda n: 1.0  # the machine is quiet now
    longer = decide(CASE._replace(steps=CASE.steps * autoprecision.RETRY_FACTOR))
    assert (longer.source, longer.sure) == ("measured", True) and len(children.starts) == 2
    assert decide(CASE).source == "cached" and len(children.starts) == 2


def test_a_failed_measurement_is_remembered_with_its_reason(monkeypatch, cache):
    children = _given(monkeypatch, 100.0, 150.0, fail="bf16")
    monkeypatch.setattr(autoprecision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    first = decide(CASE)
    assert (first.precision, first.source) == ("bf16", "likely")  # AVX512-BF16: bf16 likely
    assert first.reason.startswith("measuring failed (the measuring process failed: "
                                   "MXNetError: no bf16 here)")
    stored = json.loads(cache.read_text())["decisions"]
    assert [(e["mode"], e["precision"], e["failed"][:15]) for e in stored] == [
        ("train", None, "measuring faile")]
    again = decide(CASE)  # no second try at the same length
    assert len(children.starts) == 1 and again.source == "likely"
    assert "when this case was measured on %s" % TODAY in again.describe()
    # On request (gluon-resnet precision --measure) it measures again.
    decide(CASE, force=True)
    assert len(children.starts) == 2


def test_what_the_kernels_make_likely(monkeypatch):
    flags = {"avx512f", "avx512_bf16"}
    monkeypatch.setattr(autoprecision, "cpu_flags", lambda: flags)
    assert autoprecision.likely()[0] == "bf16"
    for cap, expected in (("AVX512_CORE_BF16", "bf16"), ("avx512_core_amx", "bf16"),
                          ("ALL", "bf16"), ("AVX2", "fp32"), ("AVX512_CORE", "fp32"),
                          ("AVX512_CORE_VNNI", "fp32")):
        monkeypatch.setenv("DNNL_MAX_CPU_ISA", cap)
        assert autoprecision.likely()[0] == expected, cap
    assert "DNNL_MAX_CPU_ISA=AVX2" not in autoprecision.likely()[1]
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert "DNNL_MAX_CPU_ISA=AVX2" in autoprecision.likely()[1]
    monkeypatch.delenv("DNNL_MAX_CPU_ISA")
    flags.clear()
    flags.update({"avx512f", "avx2"})
    assert autoprecision.likely()[0] == "fp32"


def test_the_run_prints_the_reason():
    decision = Decision("bf16", "cached", 108.0, 150.0, "2026-11-30")
    why = "auto: 150 img/s against 108 in fp32 on this CPU, measured 2026-11-30"
    assert describe_precision(Precision("bf16", decision)) == (
        "precision: bf16 on %s kernels (%s)" % (bf16_kernels(), why))
    unavailable = Decision("fp32", "unavailable", reason="x")
    assert describe_precision(Precision("fp32", unavailable)) == "precision: fp32 (auto: x)"
    assert describe_precision(Precision("fp32")) == "precision: fp32"
    assert describe_precision("fp32") == "precision: fp32"
    with pytest.raises(ValueError):
        Decision("fp16", "measured")
    with pytest.raises(ValueError):
        Decision("fp32", "guessed")


def test_quiet_commands_mention_bf16_and_measured_choices_only(monkeypatch):
    # predict_files prints the precision line only when Precision.news: bf16, or fp32 that
    # a measurement chose (this CPU ran bf16 slower), not plain fp32 or fp32 by default.
    _given(monkeypatch, 120.0, 100.0)
    measured = decide(CASE)
    assert measured.precision == "fp32" and Precision("fp32", measured).news
    _given(monkeypatch, 100.0, 150.0)
    assert decide(CASE._replace(batch=128)).news
    nearest = decide(CASE._replace(batch=64, steps=None))  # does not measure
    assert nearest.source == "nearest" and nearest.news
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")  # another machine key, and fp32 likely
    unmeasured = decide(CASE._replace(network="compact_resnet8", steps=None))
    assert (unmeasured.precision, unmeasured.source) == ("fp32", "likely")
    assert not Precision("fp32", unmeasured).news
    # The fields decide, whatever the line says.
    assert not Decision("fp32", "likely", reason="x", basis="1 img/s against 2 in bf16").news
    assert not Precision("fp32").news
    assert not Precision("fp32", Decision("fp32", "unavailable", reason="x")).news
    assert Precision("bf16").news


def _key_changes(monkeypatch):
    """Each changes one part of the key; ``decide`` must measure again after it."""
    real_flags = autoprecision.cpu_flags()
    yield "another CPU model", lambda: monkeypatch.setattr(autoprecision, "cpuinfo",
                                                           lambda key: "Another CPU")
    yield "other CPU flags", lambda: monkeypatch.setattr(autoprecision, "cpu_flags",
                                                         lambda: real_flags | {"amx_bf16"})
    yield "an ISA cap", lambda: monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    yield "an MXNet setting", lambda: monkeypatch.setenv("MXNET_ONEDNN_ENABLED", "0")
    yield "gluon_resnet's kernels", lambda: monkeypatch.setattr(autoprecision, "CODE_REVISION",
                                                                autoprecision.CODE_REVISION + 1)


def test_the_same_case_reuses_the_answer_and_any_change_measures_again(monkeypatch):
    children = _given(monkeypatch, 100.0, 150.0)
    assert decide(CASE).precision == "bf16" and len(children.starts) == 1
    assert decide(CASE).source == "cached" and len(children.starts) == 1
    for case in (CASE._replace(network="compact_resnet8"), CASE._replace(size=(64, 64)),
                 CASE._replace(channels=3), CASE._replace(batch=128),
                 CASE._replace(devices="cpu(0),cpu(1)")):
        before = len(children.starts)
        decide(case)
        assert len(children.starts) == before + 1, case
        decide(case)
        assert len(children.starts) == before + 1, case
    for what, change in _key_changes(monkeypatch):
        before = len(children.starts)
        change()
        decide(CASE)
        assert len(children.starts) == before + 1, what
        decide(CASE)
        assert len(children.starts) == before + 1, what


@pytest.mark.slow  # counting the chapter network's FLOPs
def test_a_short_run_uses_the_nearest_case_or_the_likely_one_without_measuring(monkeypatch):
    children = _given(monkeypatch, 100.0, 150.0)
    monkeypatch.setattr(autoprecision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    short = CASE._replace(batch=64, steps=10)
    net = get_model("chapter_resnet18")
    assert decide(short, net=net).describe() == (
        "auto: the run is too short to measure, and nothing is measured for chapter_resnet18 "
        "on this CPU yet; this CPU's AVX512-BF16 kernels make bf16 likely the faster")
    assert children.starts == []
    decide(CASE._replace(batch=32))  # measured: batch 32 ...
    decide(CASE._replace(size=(28, 28), batch=64))  # ... and 28x28
    decision = decide(short, net=net)  # the nearest: same size, batch 32
    assert decision.precision == "bf16" and decision.describe() == (
        "auto: the run is too short to measure; the nearest case measured here (training, "
        "batch 32 at 96x96) ran 150 img/s against 100 in fp32 on %s" % TODAY)
    assert len(children.starts) == 2


def test_off_distributed_or_without_bf16_auto_does_not_measure(monkeypatch, cache):
    children = _given(monkeypatch, 100.0, 150.0)
    monkeypatch.setenv(autoprecision.MEASURE_ENV, "0")
    assert decide(CASE).reason.startswith("measuring is off (GLUON_RESNET_AUTO_MEASURE=0)")
    monkeypatch.delenv(autoprecision.MEASURE_ENV)
    monkeypatch.setenv("DMLC_ROLE", "worker")
    assert decide(CASE).reason.startswith("workers of a distributed job do not measure")
    monkeypatch.delenv("DMLC_ROLE")
    monkeypatch.setenv("GLUON_RESNET_DISABLE_BF16", "1")
    assert resolve_precision("auto", [mx.cpu()], case=CASE) == "fp32"
    assert resolve_precision("auto", [mx.cpu()], case=CASE).why == (
        "auto: this CPU has no AVX512-BF16")
    assert children.starts == [] and not cache.exists()


def test_an_explicit_request_is_obeyed(monkeypatch):
    children = _given(monkeypatch, 100.0, 50.0)
    assert resolve_precision("fp32", [mx.cpu()], case=CASE) == "fp32"
    expected = "bf16" if bf16_available() else "fp32"
    requested = resolve_precision("bf16", [mx.cpu()], case=CASE, notice=len)
    assert requested == expected and requested.decision.source == "requested"
    assert children.starts == []


def test_a_damaged_cache_is_ignored_and_replaced(monkeypatch, cache):
    children = _given(monkeypatch, 100.0, 150.0)
    cache.parent.mkdir(parents=True)
    for damage in ("{not json", json.dumps({"format": 1, "decisions": [{"network": 3}]}),
                   json.dumps([1, 2])):
        cache.write_text(damage)
        monkeypatch.setattr(autoprecision, "_noticed", [])
        notes = []
        assert decide(CASE, notes.append).precision == "bf16"
        assert len(notes) == 1 and "is damaged; it is ignored and will be replaced" in notes[0]
        assert json.loads(cache.read_text())["decisions"][0]["precision"] == "bf16"
    assert len(children.starts) == 3
    assert [f for f in os.listdir(cache.parent) if f != "precision.json"] == []  # no leftovers


def test_a_cache_that_cannot_be_read_or_written_costs_one_notice(monkeypatch, tmp_path):
    children = _given(monkeypatch, 100.0, 150.0)
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # the cache folder would be inside a file: unwritable, even by root
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    notes = []
    assert decide(CASE, notes.append).describe() == (
        "auto: 150 img/s against 100 in fp32 on this CPU, measured %s" % TODAY)
    assert decide(CASE, notes.append).precision == "bf16"  # measured again, no second notice
    assert len(notes) == 1 and "cannot write the precision cache" in notes[0], notes
    assert len(children.starts) == 2
    # A cache file that is a folder cannot be read: again a notice, once, and no error.
    (tmp_path / "c" / "gluon_resnet" / "precision.json").mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    monkeypatch.setattr(autoprecision, "_noticed", [])
    notes = []
    assert decide(CASE, notes.append).precision == "bf16"
    assert len(notes) == 1 and "cannot read the precision cache" in notes[0], notes


def test_the_precision_command_shows_and_measures(monkeypatch, capsys):
    children = _given(monkeypatch, 100.0, 150.0)
    assert main(["precision"]) == 0
    assert "no decisions measured on this machine" in capsys.readouterr().out
    assert main(["precision", "--measure", "--model", "compact_resnet8", "--size", "28",
                 "--batch-size", "64"]) == 0
    out = capsys.readouterr().out.splitlines()
    if not bf16_available():
        assert out[0].startswith("this CPU has no AVX512-BF16") and children.starts == []
        return
    assert out[0] == ("compact_resnet8 28x28 batch 64: bf16 (auto: 150 img/s against 100 in "
                      "fp32 on this CPU, measured %s)" % TODAY)
    rows = [line.split() for line in out if line.startswith("compact_resnet8")][1:]
    assert rows == [["compact_resnet8", "train", "1x28x28", "64", "bf16", "100.0", "150.0", TODAY],
                    ["compact_resnet8", "infer", "1x28x28", "256", "bf16", "300.0", "600.0",
                     TODAY]]
    # Asked again, it measures again (the cache is not enough).
    assert main(["precision", "--measure", "--model", "compact_resnet8", "--size", "28",
                 "--batch-size", "64"]) == 0
    assert len(children.starts) == 2


def test_the_precision_command_lists_unsure_and_failed_cases():
    here = autoprecision.machine()
    base = dict(machine=here, network="compact_resnet8", devices="cpu(0)", channels=1,
                size=[28, 28], measured="2026-11-30", mode="train", steps=100)
    autoprecision._store([dict(base, batch=64, fp32=100.0, bf16=103.0, precision="fp32",
                               sure=False),
                          dict(base, batch=32, fp32=None, bf16=None, precision=None,
                               failed="measuring failed (no memory)")], print)
    lines = []
    assert autoprecision.read_cache() != []
    from gluon_resnet.precision import show_decisions
    show_decisions(out=lines.append)
    rows = [line.split(None, 7) for line in lines if line.startswith("compact_resnet8")]
    assert rows == [["compact_resnet8", "train", "1x28x28", "64", "fp32?", "100.0", "103.0",
                     "2026-11-30"],
                    ["compact_resnet8", "train", "1x28x28", "32", "-", "-", "-",
                     "2026-11-30 (measuring failed (no memory))"]]


@needs_data
@pytest.mark.slow
def test_train_eval_and_predict_print_how_auto_decided(monkeypatch, tmp_path, capsys):
    """fp32 cached as faster (bf16 here would turn AMP on in the test process)."""
    monkeypatch.setenv(autoprecision.MEASURE_ENV, "0")
    here = autoprecision.machine()
    entry = dict(machine=here, network="compact_resnet8_w32", devices="cpu(0)", channels=1,
                 size=[28, 28], fp32=120.0, bf16=100.0, precision="fp32", measured="2026-11-30")
    autoprecision._store([dict(entry, mode="train", batch=50),
                          dict(entry, mode="infer", batch=256, fp32=300.0)], print)
    out = str(tmp_path / "run")
    assert main(["train", "--model", "compact_resnet8_w32", "--no-resize", "--limit", "100",
                 "--batch-size", "50", "--epochs", "1", "--out", out, "--no-progress"]) == 0
    eval_args = ["eval", "--params", out, "--limit", "50"]
    assert main(eval_args) == 0
    image = tmp_path / "shirt.png"
    from PIL import Image
    Image.new("L", (28, 28), 128).save(image)
    assert main(["predict", "--params", out, str(image)]) == 0
    captured = capsys.readouterr()
    if bf16_available():
        train = "auto: 120 img/s against 100 in bf16 on this CPU, measured 2026-11-30"
        infer = "auto: 300 img/s against 100 in bf16 on this CPU, measured 2026-11-30"
    else:
        train = infer = "auto: this CPU has no AVX512-BF16"
    assert "precision: fp32 (%s)\n" % train in captured.out, captured.out
    assert "precision: fp32 (%s), oneDNN operator fusion\n" % infer in captured.out
    if bf16_available():
        assert "precision: fp32 (%s)\n" % infer in captured.err, captured.err
    else:  # predict leaves plain fp32 unsaid
        assert "precision:" not in captured.err, captured.err


@pytest.mark.slow
def test_a_real_measurement_of_a_small_network(monkeypatch, cache):
    """Two child processes time training and inference steps in turns (1x28x28, batch 16).

    On a CPU without bf16 kernels the bf16 child fails at its first step: the failure is
    cached with its reason, and fp32 is what the kernels make likely.  The clock is not part
    of the claim: the limit is raised so that a busy machine cannot turn this into a failure.
    """
    monkeypatch.setattr(autoprecision, "MAX_SHARE", 1.0)
    monkeypatch.setattr(autoprecision, "INFER_BATCH", 16)
    case = Case("compact_resnet8_w32", 1, (28, 28), 16, steps=10 ** 7)
    decision = decide(case)
    stored = json.loads(cache.read_text())["decisions"]
    if not bf16_available():
        assert (decision.precision, decision.source) == ("fp32", "likely")
        assert "the measuring process failed" in decision.reason, decision
        assert [(e["mode"], "failed" in e) for e in stored] == [("train", True)]
        return
    assert decision.source == "measured" and decision.measured == TODAY
    assert [(e["mode"], e["batch"]) for e in stored] == [("train", 16), ("infer", 16)]
    for e in stored:
        assert e["fp32"] > 0 and e["bf16"] > 0 and e["precision"] == choose(e["fp32"], e["bf16"])
    assert stored[0]["precision"] == decision.precision


@pytest.fixture
def busy_cores():
    """A busy-loop process on every core this process may use, ended however the test ends."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(len(os.sched_getaffinity(0)))]
    try:
        yield loops
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


@pytest.mark.slow
@pytest.mark.parametrize("cap", [None, "AVX2"])
def test_auto_decides_under_load(monkeypatch, cache, busy_cores, cap):
    """Every core busy with another program: bf16 where the CPU has bf16 kernels that oneDNN
    may use, fp32 where oneDNN is capped to AVX2 (or the CPU has no bf16 kernels).

    Nothing here depends on the clock: the share of the run is raised so that the
    measurement always gets its rounds.
    """
    if cap:
        monkeypatch.setenv("DNNL_MAX_CPU_ISA", cap)
    monkeypatch.setattr(autoprecision, "MAX_SHARE", 1.0)
    monkeypatch.setattr(autoprecision, "INFER_BATCH", 32)
    case = Case("compact_resnet8_w32", 1, (28, 28), 128, steps=10 ** 7)
    decision = decide(case)
    assert all(loop.poll() is None for loop in busy_cores)  # the load lasted throughout
    expected = "bf16" if bf16_available() and cap is None else "fp32"
    assert decision.precision == expected, decision
