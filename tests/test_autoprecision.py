"""``--precision auto``: the decision from timings, its cache, the printed reason, one real
measurement.

Every test here has a cache of its own under ``tmp_path`` (``XDG_CACHE_HOME``).  The timings
of most tests are given (``_run_child`` replaced), so their decisions are deterministic; one
test measures a small network for real, in child processes.
"""

import datetime
import json
import os
import re

import pytest

import mxnet as mx

from gluon_resnet import autoprecision
from gluon_resnet.autoprecision import Case, choose, decide
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
    monkeypatch.setattr(autoprecision, "_noticed", [])
    return tmp_path / "cache" / "gluon_resnet" / "precision.json"


class Timings:
    """Stands in for the child processes: given images per second for each precision."""

    def __init__(self, fp32, bf16, infer=(300.0, 600.0)):
        self.speed = {"fp32": (fp32, infer[0]), "bf16": (bf16, infer[1])}
        self.children = []

    def __call__(self, spec, deadline, check=None):
        self.children.append(spec)
        train, infer = self.speed[spec["precision"]]
        times = {"train": [], "infer": []}
        for _ in range(spec["train_steps"]):
            times["train"].append(spec["batch"] / train)
            if check is not None:
                check(times, autoprecision.time.monotonic())
        times["infer"] = [spec["infer_batch"] / infer] * spec["infer_steps"]
        return times


def _given(monkeypatch, fp32, bf16, **kwargs):
    timings = Timings(fp32, bf16, **kwargs)
    monkeypatch.setattr(autoprecision, "_run_child", timings)
    return timings


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
    timings = _given(monkeypatch, fp32, bf16)
    notes = []
    precision, why = decide(CASE, notes.append)
    assert (precision, why) == (expected, "auto: %s on this CPU, measured %s" % (reason, TODAY))
    assert [s["precision"] for s in timings.children] == ["fp32", "bf16"] and notes == []
    # The answer is kept for training and for inference (eval, predict: batch 256).
    stored = json.loads(cache.read_text())["decisions"]
    assert [(e["mode"], e["precision"], e["batch"]) for e in stored] == [
        ("train", expected, 256), ("infer", "bf16", 256)]


def test_the_run_prints_the_reason():
    why = "auto: 150 img/s against 108 in fp32 on this CPU, measured 2026-11-30"
    assert describe_precision(Precision("bf16", why)) == (
        "precision: bf16 on %s kernels (%s)" % (bf16_kernels(), why))
    assert describe_precision(Precision("fp32", "auto: x")) == "precision: fp32 (auto: x)"
    assert describe_precision("fp32") == "precision: fp32"


def test_quiet_commands_mention_bf16_and_measured_choices_only(monkeypatch):
    # predict_files prints the precision line only when Precision.news: bf16, or fp32 that
    # a measurement chose (this CPU ran bf16 slower), not plain fp32 or fp32 by default.
    _given(monkeypatch, 120.0, 100.0)
    measured = Precision(*decide(CASE))
    assert measured == "fp32" and measured.news
    _given(monkeypatch, 100.0, 150.0)
    assert Precision(*decide(CASE._replace(batch=128))).news
    nearest = Precision(*decide(CASE._replace(batch=64, steps=None)))  # does not measure
    assert "nearest case" in nearest.why and nearest.news
    unmeasured = Precision(*decide(CASE._replace(network="compact_resnet8", steps=None)))
    assert unmeasured == "fp32" and not unmeasured.news
    assert not Precision("fp32").news and not Precision("fp32", "auto: x").news
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
    timings = _given(monkeypatch, 100.0, 150.0)
    assert decide(CASE)[0] == "bf16" and len(timings.children) == 2
    assert decide(CASE)[0] == "bf16" and len(timings.children) == 2  # from the cache
    for case in (CASE._replace(network="compact_resnet8"), CASE._replace(size=(64, 64)),
                 CASE._replace(channels=3), CASE._replace(batch=128),
                 CASE._replace(devices="cpu(0),cpu(1)")):
        before = len(timings.children)
        decide(case)
        assert len(timings.children) == before + 2, case
        decide(case)
        assert len(timings.children) == before + 2, case
    for what, change in _key_changes(monkeypatch):
        before = len(timings.children)
        change()
        decide(CASE)
        assert len(timings.children) == before + 2, what
        decide(CASE)
        assert len(timings.children) == before + 2, what


@pytest.mark.slow  # counting the chapter network's FLOPs
def test_a_short_run_uses_the_nearest_case_or_fp32_without_measuring(monkeypatch):
    timings = _given(monkeypatch, 100.0, 150.0)
    short = CASE._replace(batch=64, steps=10)
    net = get_model("chapter_resnet18")
    assert decide(short, net=net) == (
        "fp32", "auto: the run is too short to measure, and nothing is measured for "
        "chapter_resnet18 on this CPU yet")
    assert timings.children == []
    decide(CASE._replace(batch=32))  # measured: batch 32 ...
    decide(CASE._replace(size=(28, 28), batch=64))  # ... and 28x28
    precision, why = decide(short, net=net)  # the nearest: same size, batch 32
    assert precision == "bf16" and why == (
        "auto: the run is too short to measure; the nearest case measured here (training, "
        "batch 32 at 96x96) ran 150 img/s against 100 in fp32 on %s" % TODAY)
    assert len(timings.children) == 4


def test_measuring_stops_when_it_would_cost_more_than_five_percent_of_the_run(monkeypatch):
    # 2 s a step, 200 steps: the run lasts 400 s, so measuring may take 20 s; the fp32 step
    # after the first, as many in bf16 and the inference steps take about 8 s: it is measured.
    timings = _given(monkeypatch, 128.0, 256.0)
    assert decide(CASE._replace(steps=200))[0] == "bf16"
    # 60 steps: 6 s allowed, too little.  The first timed step tells; bf16 never starts.
    timings = _given(monkeypatch, 128.0, 256.0)
    precision, why = decide(CASE._replace(steps=60, size=(64, 64)))
    assert [s["precision"] for s in timings.children] == ["fp32"]
    assert why.startswith("auto: measuring would take more than 30 s or 5% of the run; the "
                          "nearest")


def test_off_distributed_or_without_bf16_auto_does_not_measure(monkeypatch, cache):
    timings = _given(monkeypatch, 100.0, 150.0)
    monkeypatch.setenv(autoprecision.MEASURE_ENV, "0")
    assert decide(CASE)[1].startswith("auto: measuring is off (GLUON_RESNET_AUTO_MEASURE=0)")
    monkeypatch.delenv(autoprecision.MEASURE_ENV)
    monkeypatch.setenv("DMLC_ROLE", "worker")
    assert decide(CASE)[1].startswith("auto: workers of a distributed job do not measure")
    monkeypatch.delenv("DMLC_ROLE")
    monkeypatch.setenv("GLUON_RESNET_DISABLE_BF16", "1")
    assert resolve_precision("auto", [mx.cpu()], case=CASE) == "fp32"
    assert resolve_precision("auto", [mx.cpu()], case=CASE).why == (
        "auto: this CPU has no AVX512-BF16")
    assert timings.children == [] and not cache.exists()


def test_an_explicit_request_is_obeyed(monkeypatch):
    timings = _given(monkeypatch, 100.0, 50.0)
    assert resolve_precision("fp32", [mx.cpu()], case=CASE) == "fp32"
    expected = "bf16" if bf16_available() else "fp32"
    assert resolve_precision("bf16", [mx.cpu()], case=CASE, notice=len) == expected
    assert timings.children == []


def test_a_damaged_cache_is_ignored_and_replaced(monkeypatch, cache):
    timings = _given(monkeypatch, 100.0, 150.0)
    cache.parent.mkdir(parents=True)
    for damage in ("{not json", json.dumps({"format": 1, "decisions": [{"network": 3}]}),
                   json.dumps([1, 2])):
        cache.write_text(damage)
        monkeypatch.setattr(autoprecision, "_noticed", [])
        notes = []
        assert decide(CASE, notes.append)[0] == "bf16"
        assert len(notes) == 1 and "is damaged; it is ignored and will be replaced" in notes[0]
        assert json.loads(cache.read_text())["decisions"][0]["precision"] == "bf16"
    assert len(timings.children) == 6
    assert [f for f in os.listdir(cache.parent) if f != "precision.json"] == []  # no leftovers


def test_a_cache_that_cannot_be_read_or_written_costs_one_notice(monkeypatch, tmp_path):
    timings = _given(monkeypatch, 100.0, 150.0)
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # the cache folder would be inside a file: unwritable, even by root
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    notes = []
    assert decide(CASE, notes.append) == (
        "bf16", "auto: 150 img/s against 100 in fp32 on this CPU, measured %s" % TODAY)
    assert decide(CASE, notes.append)[0] == "bf16"  # measured again, no second notice
    assert len(notes) == 1 and "cannot write the precision cache" in notes[0], notes
    assert len(timings.children) == 4
    # A cache file that is a folder cannot be read: again a notice, once, and no error.
    (tmp_path / "c" / "gluon_resnet" / "precision.json").mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    monkeypatch.setattr(autoprecision, "_noticed", [])
    notes = []
    assert decide(CASE, notes.append)[0] == "bf16"
    assert len(notes) == 1 and "cannot read the precision cache" in notes[0], notes


def test_the_precision_command_shows_and_measures(monkeypatch, capsys):
    timings = _given(monkeypatch, 100.0, 150.0)
    assert main(["precision"]) == 0
    assert "no decisions measured on this machine" in capsys.readouterr().out
    assert main(["precision", "--measure", "--model", "compact_resnet8", "--size", "28",
                 "--batch-size", "64"]) == 0
    out = capsys.readouterr().out.splitlines()
    if not bf16_available():
        assert out[0].startswith("this CPU has no AVX512-BF16") and timings.children == []
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
    assert len(timings.children) == 4


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
    """Two child processes time 3 training and 3 inference steps each (1x28x28, batch 16).

    On a CPU without bf16 nothing is measured.  The clock is not part of the claim: the
    30 s limit is raised so that a busy machine cannot turn this into a fallback.
    """
    monkeypatch.setattr(autoprecision, "MAX_SECONDS", 600.0)
    monkeypatch.setattr(autoprecision, "INFER_BATCH", 16)
    case = Case("compact_resnet8_w32", 1, (28, 28), 16, steps=10 ** 7)
    precision = resolve_precision("auto", [mx.cpu()], case=case, notice=print)
    if not bf16_available():
        assert precision == "fp32" and precision.why == "auto: this CPU has no AVX512-BF16"
        assert not cache.exists()
        return
    match = re.fullmatch(r"auto: (\d+) img/s against (\d+) in (fp32|bf16) on this CPU, "
                         r"measured (\S+)", precision.why)
    assert match and match.group(4) == TODAY, precision.why
    assert {precision, match.group(3)} == {"fp32", "bf16"}
    stored = json.loads(cache.read_text())["decisions"]
    assert [(e["mode"], e["batch"]) for e in stored] == [("train", 16), ("infer", 16)]
    for e in stored:
        assert e["fp32"] > 0 and e["bf16"] > 0 and e["precision"] == choose(e["fp32"], e["bf16"])
    assert stored[0]["precision"] == precision


@pytest.mark.slow
def test_a_measurement_that_fails_is_no_error(cache):
    """The child process fails at once (no such network): fp32, and the child's last words."""
    precision, why = decide(Case("no_such_network", 1, (28, 28), 16, steps=10 ** 7))
    assert precision == "fp32" and why.startswith("auto: measuring failed (the measuring "
                                                  "process failed: "), why
    assert "no_such_network" in why and why.endswith(", and nothing is measured for "
                                                     "no_such_network on this CPU yet")
    assert not cache.exists()
