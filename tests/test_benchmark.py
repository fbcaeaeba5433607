"""The research scripts in benchmarks/: what they print and write, on tiny inputs.

``bench.py --tiny`` runs once end to end as a subprocess (every worker, each in a
fresh process: the file's slowest part); its arithmetic, the bf16-unavailable path and the
profile tools' parsers are checked in-process on small made-up or real inputs.
"""

import json
import os
import statistics
import subprocess
import sys

import pytest
import mxnet as mx
import numpy as np

from gluon_resnet.data import DatasetNotFoundError, find_fashion_mnist
from gluon_resnet.precision import DISABLE_ENV, bf16_available

from helpers import DATA_DIR, load_benchmark_script, needs_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks", "bench.py")
TRIAL = os.path.join(ROOT, "benchmarks", "recipe_trial.py")


bench = load_benchmark_script("bench")
VARIANT_NAMES = [v.name for v in bench.VARIANTS]
BF16_VARIANTS = ["train_bf16", "infer_bf16"]
TORCH_VARIANTS = [v.name for v in bench.VARIANTS if v.side == "torch"]


def _torch_installed():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    env = dict(os.environ)
    env.pop(DISABLE_ENV, None)
    # The timeout only ends a hung run: the tiny run's work is bounded by --tiny.
    # Two workers at a time: the tiny run checks the workers and the report, not speed.
    proc = subprocess.run([sys.executable, BENCH, "--tiny", "--jobs", "2", "--json", str(out)],
                          env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(str(out)) as f:
        return proc, json.load(f)


def _ort_installed():
    try:
        import onnxruntime  # noqa: F401
        return True
    except ImportError:
        return False


def _cpu_has_bf16(monkeypatch):
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    return bf16_available()


def _data_present():
    try:
        find_fashion_mnist(download=False)
        return True
    except DatasetNotFoundError:
        return False


# ---------------------------------------------------------------------------
# The tiny run: every worker runs, and the JSON and the printed report agree
# ---------------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_run_records_its_context_and_prints_it(tiny):
    proc, result = tiny
    meta, settings = result["meta"], result["settings"]
    assert settings["tiny"] and settings["batch_size"] == 8 and settings["size"] == 32
    assert settings["rounds"] == 1 and settings["steps"] == 1
    assert meta["cores"] >= 1 and meta["cpu_model"]
    assert meta["mxnet_version"] == "1.9.1"
    assert "--tiny" in meta["command"] and meta["date"][:2] == "20"
    assert result["errors"] == []
    for line in (meta["cpu_model"], meta["command"], "training", "inference", "comparisons"):
        assert line in proc.stdout
    # The report states the figures; the goals live in benchmarks/RESULTS.md.
    assert "target" not in proc.stdout and "met" not in proc.stdout.split()
    assert "targets" not in result


@pytest.mark.slow
def test_tiny_run_measures_every_variant(tiny, monkeypatch):
    proc, result = tiny
    has_bf16 = _cpu_has_bf16(monkeypatch)
    assert sorted(result["variants"]) == sorted(VARIANT_NAMES)
    for name, entry in result["variants"].items():
        if entry["precision"] == "bf16" and not has_bf16:  # ours and PyTorch's
            assert entry["available"] is False and "bf16" in entry["unavailable"]
            continue
        if name in TORCH_VARIANTS and not _torch_installed():
            assert entry["available"] is False and "PyTorch" in entry["unavailable"]
            continue
        if name == "infer_ort" and not _ort_installed():
            assert entry["available"] is False and "onnxruntime" in entry["unavailable"]
            continue
        assert entry["available"] is True, (name, entry)
        assert len(entry["runs"]) == result["settings"]["rounds"]
        assert all(r > 0 for r in entry["runs"])
        assert entry["max_rss_mib"] > 50  # a process with MXNet loaded, in MiB
        # The printed row carries the JSON's median.
        assert "%-17s %10.1f" % (entry["label"], entry["images_per_s"]) in proc.stdout
    # Fusion must not change the answer: RESULTS.md records 2.0e-7 (96x96, batch 256); 5x
    # margin on the recorded figure.
    fused = result["variants"]["infer_fused"]
    assert fused["max_abs_diff_vs_unfused"] < 1e-6


@pytest.mark.slow
def test_tiny_run_figures_follow_from_its_runs(tiny):
    _, result = tiny
    variants, peak = result["variants"], result["peak"]
    scale = (32 / 96.0) ** 2
    assert result["gflop_per_image"]["train"] == pytest.approx(1.91 * scale)
    assert result["gflop_per_image"]["infer"] == pytest.approx(0.64 * scale)
    assert peak["dot_fp32"]["gflops"] > 0 and peak["fc_fp32"]["gflops"] > 0
    assert peak["fp32_gflops"] == max(peak["dot_fp32"]["gflops"], peak["fc_fp32"]["gflops"])
    assert peak["int8_gflops"] == peak["fc_int8"]["gflops"] > 0
    for entry in variants.values():
        if not entry["available"]:
            assert entry["ratio"] is None
            continue
        assert entry["images_per_s"] == statistics.median(entry["runs"])
        ref = variants[entry["mode"] + "_ref"]
        assert entry["ratio"] == pytest.approx(entry["images_per_s"] / ref["images_per_s"],
                                               rel=1e-12)
        assert entry["gflops"] == pytest.approx(
            entry["images_per_s"] * result["gflop_per_image"][entry["mode"]], rel=1e-12)
        peak_value = peak["%s_gflops" % entry["precision"]]
        assert entry["share_of_peak"] == pytest.approx(entry["gflops"] / peak_value, rel=1e-12)
    assert variants["train_ref"]["ratio"] == 1.0 and variants["infer_ref"]["ratio"] == 1.0
    loader = result["loader"]
    if _data_present():
        best = max(variants[n]["images_per_s"] for n in ("train_fp32", "train_bf16")
                   if variants[n]["available"])
        assert loader["available"] and loader["images_per_s"] > 0
        assert loader["ratio_to_training"] == pytest.approx(loader["images_per_s"] / best)
    else:
        assert not loader["available"] and "not found" in loader["unavailable"]
    default, default_infer = result["default_training"], result["default_inference"]
    if not variants["train_bf16"]["available"]:
        assert default == "train_fp32" and result["default_why"]["train"] == "no bf16 here"
    assert default in ("train_fp32", "train_bf16")
    assert default_infer in ("infer_fused", "infer_bf16")
    assert result["tier"] and result["capped"] is False  # the CPU's own tier, uncapped
    comparisons = {c["name"]: c["value"] for c in result["comparisons"]}
    assert comparisons["default training vs book"] == variants[default]["ratio"]
    if variants["infer_ort"]["available"]:
        assert comparisons["default inference vs ONNX Runtime"] == pytest.approx(
            variants[default_infer]["images_per_s"] / variants["infer_ort"]["images_per_s"])
    assert comparisons["peak RSS of ours training"] > 0


# ---------------------------------------------------------------------------
# The arithmetic, on made-up worker results (no MXNet work)
# ---------------------------------------------------------------------------

SETTINGS = dict(bench.FULL_SETTINGS, rounds=3, tiny=False)


def _fake_runs(rates, peak=None, loader=(1000.0,)):
    runs = {name: [] for name in bench.WORKERS}
    for name, values in rates.items():
        runs[name] = [v if isinstance(v, dict) else {"images_per_s": v, "max_rss_mib": 100.0 + v}
                      for v in values]
    runs["peak"] = [peak or {"dot_fp32": 100.0, "fc_fp32": 200.0, "fc_bf16": 400.0,
                             "dot_bf16": {"unavailable": "no"}, "fc_int8": 800.0}]
    runs["loader"] = [{"images_per_s": v} for v in loader]
    return runs


def test_collect_uses_medians_and_their_ratio():
    unavailable = {"unavailable": "bf16 unavailable (test)"}
    runs = _fake_runs({
        "train_ref": [10.0, 40.0, 20.0], "train_fp32": [50.0, 40.0, 90.0],
        "train_bf16": [unavailable], "infer_ref": [100.0], "infer_fp32": [250.0],
        "infer_fused": [350.0], "infer_bf16": [unavailable], "infer_int8": [1000.0]})
    summary = bench.collect(runs, SETTINGS, {}, [])
    v = summary["variants"]
    assert v["infer_int8"]["share_of_peak"] == pytest.approx(1000 * 0.64 / 800.0)
    assert v["train_ref"]["images_per_s"] == 20.0 and v["train_fp32"]["images_per_s"] == 50.0
    assert v["train_fp32"]["ratio"] == 2.5
    assert v["train_fp32"]["max_rss_mib"] == 190.0  # the largest of the rounds
    assert v["train_fp32"]["gflops"] == pytest.approx(50 * 1.91)
    assert v["train_fp32"]["share_of_peak"] == pytest.approx(50 * 1.91 / 200.0)
    assert v["infer_fused"]["ratio"] == 3.5
    assert v["train_bf16"]["available"] is False and v["train_bf16"]["ratio"] is None
    assert summary["peak"]["fp32_gflops"] == 200.0 and summary["peak"]["bf16_gflops"] == 400.0
    assert summary["loader"]["ratio_to_training"] == 20.0  # 1000 / 50
    comparisons = {c["name"]: c["value"] for c in summary["comparisons"]}
    assert summary["default_training"] == "train_fp32"  # bf16 unavailable
    assert comparisons["default training vs book"] == 2.5
    assert comparisons["bf16 training vs ours fp32"] is None
    assert comparisons["default training vs PyTorch bf16"] is None  # not measured here
    assert comparisons["inference vs book (best of bf16, fused fp32)"] == 3.5
    assert comparisons["loader vs ours training (fastest)"] == 20.0
    assert comparisons["peak RSS of ours training"] == 190.0
    report = bench.format_report(dict(summary, meta={
        "date": "d", "cpu_model": "c", "cores": 2, "mxnet_version": "1.9.1", "command": "x",
        "load_average_start": [0.0, 0.0, 0.0]}))
    assert "2.50x" in report and "unavailable: bf16 unavailable (test)" in report
    assert "default training (gluon-resnet train's precision here): ours fp32" in report
    assert "bf16 training vs ours fp32" in report and "190 MiB" in report


def test_the_int8_peak_times_a_true_int8_product():
    # uint8 activations whose largest value is 255 go into the product unchanged,
    # so the result must equal the integer matrix product numpy computes.  Weights
    # stay within 7 bits: without VNNI oneDNN's int16 pair sums saturate beyond.
    rng = np.random.RandomState(0)
    n = 48
    m = rng.randint(0, 256, size=(n, n)).astype(np.float32)
    m[0, 0] = 255
    w = rng.randint(-63, 64, size=(n, n)).astype(np.int8)
    product = bench._int8_fully_connected(n, weight=mx.nd.array(w, dtype="int8"))
    out = product(mx.nd.array(m))
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out.asnumpy(), m.astype(np.int64) @ w.T.astype(np.int64))


def test_without_bf16_the_workers_and_the_report_say_so(monkeypatch):
    # The workers themselves, in this process (neither reaches amp.init): with bf16
    # switched off they return "unavailable" instead of a figure.
    monkeypatch.setenv(DISABLE_ENV, "1")
    settings = dict(bench.TINY_SETTINGS, tiny=True)
    bf16_runs = {name: [bench.work_variant(bench.VARIANT_BY_NAME[name], settings)]
                 for name in BF16_VARIANTS}
    peak = bench.work_peak(settings)
    for result in [bf16_runs[name][0] for name in BF16_VARIANTS] + [peak["fc_bf16"],
                                                                     peak["dot_bf16"]]:
        assert "bf16 unavailable" in result["unavailable"] and "images_per_s" not in result
    assert peak["dot_fp32"] > 0 and peak["fc_fp32"] > 0
    runs = _fake_runs(dict({name: [10.0] for name in VARIANT_NAMES}, **bf16_runs), peak=peak)
    summary = bench.collect(runs, SETTINGS, {}, [])
    for name in BF16_VARIANTS:
        entry = summary["variants"][name]
        assert entry["available"] is False and entry["images_per_s"] is None
        assert entry["ratio"] is None and "bf16 unavailable" in entry["unavailable"]
    assert summary["peak"]["bf16_gflops"] is None and summary["peak"]["fp32_gflops"] > 0
    assert summary["default_training"] == "train_fp32"
    report = bench.format_report(dict(summary, meta={
        "date": "d", "cpu_model": "c", "cores": 2, "mxnet_version": "1.9.1", "command": "x",
        "load_average_start": [0.0, 0.0, 0.0]}))
    assert report.count("unavailable: bf16 unavailable") == 2


def test_comparisons_divide_the_right_rows():
    rates = {name: [10.0] for name in VARIANT_NAMES}
    rates.update(train_ref=[20.0], train_fp32=[50.0], train_torch_bf16=[40.0],
                 train_torch_fp32=[25.0], infer_ref=[100.0], infer_fused=[300.0],
                 infer_bf16=[450.0], infer_ort=[150.0], infer_int8=[900.0],
                 infer_ort_int8=[600.0], infer_torch_int8=[450.0])
    runs = _fake_runs(rates, loader=(4000.0,))
    runs["train_bf16"] = [{"images_per_s": 80.0, "max_rss_mib": 120.0, "kernels": "AMX"}]
    summary = bench.collect(runs, SETTINGS, {}, [])
    # Nothing cached: auto's rule on these figures (bf16 1.6x and 1.5x faster).
    assert summary["default_training"] == "train_bf16"
    assert summary["default_inference"] == "infer_bf16"
    comparisons = {c["name"]: c["value"] for c in summary["comparisons"]}
    assert comparisons == {
        "default training vs book": 4.0, "default training vs PyTorch fastest eager": 2.0,
        "default training vs PyTorch bf16": 2.0,
        "default inference vs ONNX Runtime": 3.0,
        "default training vs PyTorch fp32": 3.2, "bf16 training vs ours fp32": 1.6,
        "bf16 inference vs ours fp32 fused": 1.5,
        "inference vs book (best of bf16, fused fp32)": 4.5,
        "loader vs ours training (fastest)": 50.0, "peak RSS of ours training": 150.0,
        "int8 inference vs ours fp32 fused": 3.0, "int8 inference vs ours bf16 fused": 2.0,
        "int8 inference vs ONNX Runtime int8": 1.5, "int8 inference vs PyTorch int8": 2.0}


def test_size_scales_the_flop_count():
    runs = _fake_runs({name: [10.0] for name in VARIANT_NAMES})
    summary = bench.collect(runs, dict(SETTINGS, size=192), {}, [])
    assert summary["gflop_per_image"] == {"train": pytest.approx(4 * 1.91),
                                          "infer": pytest.approx(4 * 0.64)}


def test_a_failed_worker_makes_the_run_fail(monkeypatch, capsys):
    def fake_launch(name, settings, env=None):
        if name == "train_fp32":
            return {"error": "worker train_fp32 exited with 1: boom"}
        if name == "peak":
            return {"dot_fp32": 1.0, "fc_fp32": 2.0, "fc_bf16": 3.0, "dot_bf16": 4.0}
        return {"images_per_s": 5.0, "max_rss_mib": 6.0}

    monkeypatch.setattr(bench, "launch", fake_launch)
    assert bench.main(["--tiny"]) == 1
    out = capsys.readouterr().out
    assert "ERRORS" in out and "boom" in out


# ---------------------------------------------------------------------------
# ISA tiers (benchmarks/tiers.py): planning, caps, the data file
# ---------------------------------------------------------------------------

tiers = bench.tiers
LAPTOP = {"sse4_2", "avx", "avx2", "fma"}
SKYLAKE_X = LAPTOP | {"avx512f", "avx512bw", "avx512dq", "avx512vl"}
ZEN4 = SKYLAKE_X | {"avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN4 | {"amx_bf16", "amx_tile", "amx_int8"}


@pytest.mark.parametrize("flags, expected", [
    ({"sse4_2"}, []),
    (LAPTOP, ["AVX2"]),
    (SKYLAKE_X, ["AVX2", "AVX512_CORE"]),
    (ZEN4, ["AVX2", "AVX512_CORE", "AVX512_CORE_BF16"]),
    (SAPPHIRE_RAPIDS, ["AVX2", "AVX512_CORE", "AVX512_CORE_BF16", "AVX512_CORE_AMX"]),
    (LAPTOP | {"amx_bf16", "amx_tile"}, ["AVX2"]),  # a tier needs every tier below it
])
def test_each_cpu_emulates_its_own_tier_and_those_below(flags, expected):
    assert tiers.supported_tiers(flags) == expected


def test_tiers_option_plans_auto_all_and_lists():
    assert tiers.plan_tiers("auto", ZEN4) == ["AVX512_CORE_BF16"]
    assert tiers.plan_tiers(None, LAPTOP) == ["AVX2"]
    assert tiers.plan_tiers("all", SAPPHIRE_RAPIDS) == list(tiers.TIERS)
    assert tiers.plan_tiers("avx512_core_bf16, AVX2", ZEN4) == ["AVX2", "AVX512_CORE_BF16"]


@pytest.mark.parametrize("text, flags, words", [
    ("AVX3", ZEN4, ["unknown tier 'AVX3'", "AVX512_CORE_AMX"]),
    ("AVX2,AVX512_CORE_AMX", ZEN4, ["cannot run tier AVX512_CORE_AMX", "amx_bf16"]),
    ("AVX512_CORE_BF16", SKYLAKE_X, ["cannot run tier AVX512_CORE_BF16", "avx512_bf16"]),
    ("auto", {"sse4_2"}, ["no AVX2"]),
])
def test_tiers_option_refuses_what_this_cpu_cannot_run(text, flags, words):
    with pytest.raises(SystemExit) as info:
        tiers.plan_tiers(text, flags)
    for word in ["--tiers"] + words:
        assert word in str(info.value)


def test_workers_below_the_top_tier_get_their_sides_caps():
    for flags in (ZEN4, SAPPHIRE_RAPIDS, LAPTOP):
        top = tiers.supported_tiers(flags)[-1]
        for side in ("ref", "ours", "mxnet", "torch", "ort"):
            assert tiers.worker_env(top, side, flags) == {}  # as a reader's process runs
    for side in ("ref", "ours", "mxnet"):
        # gluon_resnet would switch AMX on with no cap; at a lower tier the cap must win.
        assert tiers.worker_env("AVX512_CORE_BF16", side, SAPPHIRE_RAPIDS) == {
            "DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16", "GLUON_RESNET_DISABLE_AMX": "1"}
        assert tiers.worker_env("AVX2", side, ZEN4)["DNNL_MAX_CPU_ISA"] == "AVX2"
    assert tiers.worker_env("AVX2", "torch", ZEN4) == {
        "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert tiers.worker_env("AVX512_CORE", "torch", SAPPHIRE_RAPIDS) == {
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "ATEN_CPU_CAPABILITY": "avx512"}
    assert tiers.worker_env("AVX2", "ort", SAPPHIRE_RAPIDS) == {}  # no cap exists: uncapped
    # A cap the caller set is replaced by the tier's, never added to it.
    monkey_env = dict(bench._CALLER_ENV, ONEDNN_MAX_CPU_ISA="AVX512_CORE")
    try:
        bench._CALLER_ENV, saved = monkey_env, bench._CALLER_ENV
        env = bench._worker_env("train_ref", {"DNNL_MAX_CPU_ISA": "AVX2"})
        assert env["DNNL_MAX_CPU_ISA"] == "AVX2" and "ONEDNN_MAX_CPU_ISA" not in env
    finally:
        bench._CALLER_ENV = saved


def test_bf16_rows_only_at_bf16_tiers_and_the_loader_once():
    plan = ["AVX2", "AVX512_CORE_BF16"]
    low = {name: (env, note) for name, env, note in bench.tier_runs("AVX2", plan, ZEN4, {})}
    high = {name: (env, note) for name, env, note in
            bench.tier_runs("AVX512_CORE_BF16", plan, ZEN4, {})}
    assert sorted(low) == sorted(high) == sorted(bench.WORKERS)
    for name in bench.WORKERS:
        is_bf16 = name in BF16_VARIANTS + ["train_torch_bf16", "infer_torch_bf16"]
        if is_bf16:
            assert low[name] == (None, "tier AVX2 has no bf16")
        elif name == "loader":
            assert low[name][0] is None and "AVX512_CORE_BF16 only" in low[name][1]
        else:
            assert low[name][0] is not None and low[name][1] is None
        assert high[name] == ({}, None)  # the top tier of ZEN4: everything, uncapped


@pytest.mark.parametrize("model, flags, label, slug", [
    ("AMD EPYC 9R14 96-Core Processor", ZEN4, "AMD EPYC (Zen 4)", "amd-epyc-zen-4"),
    ("Intel(R) Xeon(R) Platinum 8488C", SAPPHIRE_RAPIDS, "Intel Xeon (AMX)", "intel-xeon-amx"),
    ("Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz", LAPTOP, "Intel Core (AVX2)",
     "intel-core-avx2"),
    ("AMD Ryzen 7 5800X 8-Core Processor", LAPTOP, "AMD Ryzen (AVX2)", "amd-ryzen-avx2"),
])
def test_machine_kind_names_the_data_file(model, flags, label, slug):
    assert tiers.machine_kind(model, flags) == label
    assert tiers.slug(label) == slug


def _tier_summary(tier, capped, train_bf16=60.0, auto=None):
    rates = {name: [10.0] for name in VARIANT_NAMES}
    rates.update(train_ref=[20.0], train_fp32=[50.0],
                 train_bf16=[{"unavailable": "no bf16"} if train_bf16 is None else train_bf16])
    runs = _fake_runs(rates)
    if auto is not None:
        runs["train_fp32"][0]["auto"] = auto
    return bench.collect(runs, SETTINGS, {}, [], tier, capped)


def test_default_is_autoprecisions_cached_decision_else_its_rule():
    cached = {"precision": "bf16", "exact": True, "measured": "2026-11-30", "fp32": 108.0,
              "bf16": 150.0, "batch": 256, "size": [96, 96]}
    # The cache decides even where this run's bf16 figure is lower (it measured elsewhen).
    summary = _tier_summary("AVX512_CORE_BF16", False, train_bf16=40.0,
                            auto={"train": cached, "infer": None})
    assert summary["default_training"] == "train_bf16"
    assert "cached train decision (this case" in summary["default_why"]["train"]
    assert "150 bf16" in summary["default_why"]["train"]
    assert summary["default_inference"] == "infer_fused"  # 10 against 10: the rule says fp32
    assert "auto's rule" in summary["default_why"]["infer"]
    # Without a cache, auto's threshold: bf16 must be at least 5% faster.
    assert _tier_summary("X", True, train_bf16=52.4)["default_training"] == "train_fp32"
    assert _tier_summary("X", True, train_bf16=52.6)["default_training"] == "train_bf16"


def test_saved_rows_are_json_lines_appended_per_machine_kind(tmp_path):
    meta = {"date": "2026-11-30T20:00:00", "cpu_model": "AMD EPYC 9R14 96-Core Processor",
            "cores": 2}
    summaries = [_tier_summary("AVX2", True, train_bf16=None),
                 _tier_summary("AVX512_CORE_BF16", False)]
    versions = {"mxnet": "1.9.1", "torch": "2.13.0", "onnxruntime": "1.32.0"}
    rows = tiers.data_rows(summaries, meta, SETTINGS, versions, ZEN4)
    assert len(rows) == 2 * len(VARIANT_NAMES) - 1  # the unavailable row is left out
    path = tiers.append_rows(rows, str(tmp_path / "results"), tiers.machine_kind(
        meta["cpu_model"], ZEN4))
    tiers.append_rows(rows[:3], str(tmp_path / "results"), "AMD EPYC (Zen 4)")
    assert path == str(tmp_path / "results" / "amd-epyc-zen-4.jsonl")
    with open(path) as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == len(rows) + 3  # a second run appends
    by_key = {(r["tier"], r["variant"]): r for r in lines}
    row = by_key[("AVX2", "train_fp32")]
    assert row["images_per_s"] == 50.0 and row["runs"] == [50.0] and row["rounds"] == 3
    assert row["capped"] is True and row["default"] is True and row["side"] == "ours"
    assert row["machine_kind"] == "AMD EPYC (Zen 4)" and row["versions"] == versions
    assert row["cpu_flags"] == {"avx2": True, "avx512f": True, "avx512_bf16": True,
                                "amx_bf16": False}
    assert row["settings"] == {"batch_size": 256, "size": 96, "steps": 4, "warmup": 2}
    assert by_key[("AVX2", "infer_ort")]["capped"] is False  # ORT has no cap to set
    assert by_key[("AVX512_CORE_BF16", "train_fp32")]["capped"] is False
    assert ("AVX2", "train_bf16") not in by_key


def test_main_runs_each_tier_with_its_caps_and_saves_its_rows(monkeypatch, tmp_path, capsys):
    from gluon_resnet._cpu import cpu_flags

    flags = set(cpu_flags())
    top = tiers.supported_tiers(flags)[-1]
    launched = []

    def fake_launch(name, settings, env=None):
        launched.append((name, env))
        if name == "peak":
            return {"dot_fp32": 1.0, "fc_fp32": 2.0, "fc_bf16": 3.0, "dot_bf16": 4.0}
        return {"images_per_s": 5.0, "max_rss_mib": 6.0}

    monkeypatch.setattr(bench, "launch", fake_launch)
    out = tmp_path / "all.json"
    assert bench.main(["--tiny", "--tiers", "AVX2,%s" % top, "--save", "--results-dir",
                       str(tmp_path / "results"), "--json", str(out)]) == 0
    plan = sorted({"AVX2", top}, key=tiers.TIERS.index)
    assert len(launched) == sum(
        1 for tier in plan for _, env, _ in bench.tier_runs(tier, plan, flags, {})
        if env is not None)
    for name, env in launched:
        side = bench.side_of(name)
        if env:  # AVX2 below this CPU's top tier
            assert env == tiers.worker_env("AVX2", side, flags) and side != "ort"
            assert "AVX2" in (env.get("DNNL_MAX_CPU_ISA"), env.get("ONEDNN_MAX_CPU_ISA"))
    assert [name for name, _ in launched].count("loader") == 1
    report = capsys.readouterr().out
    for tier in plan:
        assert "tier %s: " % tier in report
    if len(plan) == 2:
        no_bf16 = [n for n in bench.WORKERS if n != "loader" and bench.side_of(n) != "ort"
                   and not (n in bench.VARIANT_BY_NAME
                            and bench.VARIANT_BY_NAME[n].precision == "bf16")]
        assert [name for name, env in launched if env] == no_bf16  # every AVX2 worker capped
        assert "tier AVX2: capped: MXNet DNNL_MAX_CPU_ISA=AVX2" in report
        with open(str(out)) as f:
            assert [s["tier"] for s in json.load(f)["tiers"]] == plan
    (saved,) = list((tmp_path / "results").glob("*.jsonl"))
    with open(str(saved)) as f:
        rows = [json.loads(line) for line in f]
    assert sorted({r["tier"] for r in rows}) == sorted(plan)
    assert all(r["rounds"] == 1 and r["images_per_s"] == 5.0 for r in rows)
    # --save also writes RESULTS.md's tables, beside the results folder, from those rows.
    with open(str(tmp_path / "RESULTS.md")) as f:
        document = f.read()
    assert "### %s" % rows[0]["machine_kind"] in document
    assert "| training: ref (book) | %s |" % " | ".join(["5.0"] * len(plan)) in document


def test_save_beside_a_document_without_markers_keeps_the_rows_and_the_document(
        monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "launch", lambda name, settings, env=None: (
        {"dot_fp32": 1.0, "fc_fp32": 2.0, "fc_bf16": 3.0, "dot_bf16": 4.0} if name == "peak"
        else {"images_per_s": 5.0, "max_rss_mib": 6.0}))
    document = tmp_path / "RESULTS.md"
    document.write_text("# my own notes\n")
    assert bench.main(["--tiny", "--save", "--results-dir", str(tmp_path / "results")]) == 1
    assert "the rows are saved, but %s was not rewritten" % document in capsys.readouterr().err
    assert document.read_text() == "# my own notes\n"
    (saved,) = list((tmp_path / "results").glob("*.jsonl"))
    assert saved.read_text().count("\n") > 0


@pytest.mark.slow
def test_a_capped_worker_runs_on_avx2_kernels():
    from gluon_resnet._cpu import cpu_flags

    flags = set(cpu_flags())
    env = bench._worker_env("infer_fp32", tiers.worker_env("AVX2", "ours", flags))
    env["DNNL_VERBOSE"] = "1"
    settings = dict(bench.TINY_SETTINGS, tiny=True)
    proc = subprocess.run([sys.executable, BENCH, "--worker", "infer_fp32", "--settings",
                           json.dumps(settings)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    convs = [line for line in proc.stdout.splitlines()
             if line.startswith("dnnl_verbose,exec,cpu,convolution,")]
    assert convs  # oneDNN names each kernel's ISA in its exec lines
    assert all(":avx2," in line for line in convs) and "avx512" not in proc.stdout
    # The peak worker at that tier has no bf16 figure, whatever the CPU has, and its int8
    # figure comes from oneDNN's u8 x s8 inner product.
    env["DNNL_MAX_CPU_ISA"] = "AVX2"  # also where AVX2 is this CPU's own tier
    proc = subprocess.run([sys.executable, BENCH, "--worker", "peak", "--settings",
                           json.dumps(settings)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith(bench.RESULT_PREFIX)]
    peak = json.loads(line[len(bench.RESULT_PREFIX):])
    assert peak["fc_fp32"] > 0 and "bf16 unavailable" in peak["fc_bf16"]["unavailable"]
    products = [line for line in proc.stdout.splitlines()
                if line.startswith("dnnl_verbose,exec,cpu,inner_product,")]
    assert peak["fc_int8"] > 0 and any("src_u8" in line and "wei_s8" in line and "dst_s32"
                                       in line for line in products), products


# ---------------------------------------------------------------------------
# benchmarks/profile_ops.py
# ---------------------------------------------------------------------------

def test_profile_table_parser_reads_mxnets_aggregate_table():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from profile_ops import parse_table

    table = ("Profile Statistics:\n"
             "Name                          Total Count        Time (ms)    Min Time (ms)    "
             "Max Time (ms)    Avg Time (ms)\n"
             "----                          -----------        ---------    -------------    "
             "-------------    -------------\n"
             "Convolution                            60         138.2000           6.0000     "
             "      9.0000           2.3033\n"
             "_backward_Convolution                  60         688.7000          30.0000     "
             "     50.0000          11.4783\n")
    assert parse_table(table, 5) == [("_backward_Convolution", 60, 688.7),
                                     ("Convolution", 60, 138.2)]


# ---------------------------------------------------------------------------
# benchmarks/recipe_trial.py
# ---------------------------------------------------------------------------

def test_recipe_trial_parses_settings_as_the_train_command_does():
    trial = load_benchmark_script("recipe_trial")  # defines functions only
    settings = trial.parse_settings(["epochs=28", "precision=bf16", "tta=false", "lr=0.1",
                                     "augment=Yes"])
    assert settings == {"epochs": 28, "precision": "bf16", "tta": False, "lr": 0.1,
                        "augment": True}
    assert trial.parse_layers("2,2,2") == (2, 2, 2)


@pytest.mark.parametrize("pair, named", [
    ("epochs", "expected FIELD=VALUE"),
    ("epoch=3", "no field 'epoch'"),
    ("epochs=-1", "epochs=-1"),
    ("tta=maybe", "tta is true or false"),
    ("optimizer=lion", "optimizer must be one of sgd, nag, adam"),
    ("model=resnet18_v1", "give the network with --model or --layers"),
])
def test_recipe_trial_refuses_bad_settings_by_name(pair, named):
    trial = load_benchmark_script("recipe_trial")  # defines functions only
    with pytest.raises(trial.RunError, match=named):
        trial.parse_settings([pair])


@pytest.mark.parametrize("text", ["", "2,x", "2,0"])
def test_recipe_trial_refuses_bad_layers(text):
    trial = load_benchmark_script("recipe_trial")  # defines functions only
    with pytest.raises(Exception, match="--layers must be positive integers"):
        trial.parse_layers(text)


@needs_data
@pytest.mark.slow
def test_recipe_trial_trains_a_candidate_and_reports_it(tmp_path):
    out = str(tmp_path / "run")
    proc = subprocess.run([sys.executable, TRIAL, out, "--layers", "1,1", "--width", "16",
                           "--set", "epochs=1", "--set", "limit=512", "--set", "tta=false",
                           "--set", "precision=fp32", "--set", "data_root=%s" % DATA_DIR],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("RESULT ")
    result = json.loads(last[len("RESULT "):])
    history = json.load(open(os.path.join(out, "history.json")))
    assert result["model"] == "trial_net" and result["epochs"] == 1 == len(history)
    assert result["test_acc"] == history[-1]["test_acc"] and 0.1 < result["test_acc"] <= 1
    assert result["seconds"] > history[-1]["time"]  # the wall time includes the epoch
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["model"] == "trial_net" and config["recipe"] == "best"
    assert config["epochs"] == 1 and config["tta"] is False


@pytest.mark.parametrize("args, message", [
    ([], "give either --model NAME or --layers"),
    (["--layers", "2", "--width", "0"], "--width must be a positive integer; got 0"),
])
def test_recipe_trial_needs_a_model_or_layers(tmp_path, capsys, args, message):
    trial = load_benchmark_script("recipe_trial")  # defines functions only
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit) as stop:
        trial.main([out] + args)
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert os.listdir(str(tmp_path)) == []  # refused before writing anything


# ---------------------------------------------------------------------------
# benchmarks/dnnl_summary.py
# ---------------------------------------------------------------------------

DNNL_SUMMARY = os.path.join(ROOT, "benchmarks", "dnnl_summary.py")
VERBOSE_LINES = [
    "dnnl_verbose,info,oneDNN v2.4.4 (commit ...)\n",
    "training on cpu(0)\n",
    # 2 steps: a 4x4 convolution of 256 images, 128 -> 128 channels (604 M MACs a call)
    "dnnl_verbose,exec,cpu,convolution,jit:avx512_core_amx_bf16,backward_weights,src_bf16::"
    "blocked:aBcd16b:f0 wei_bf16::blocked:ABcd16b16a2b:f0,,alg:convolution_direct,"
    "mb256_ic128oc128_ih4oh4kh3sh1dh0ph1_iw4ow4kw3sw1dw0pw1,12\n",
    "dnnl_verbose,exec,cpu,convolution,jit:avx512_core_amx_bf16,backward_weights,src_bf16::"
    "blocked:aBcd16b:f0,,alg:convolution_direct,"
    "mb256_ic128oc128_ih4oh4kh3sh1dh0ph1_iw4ow4kw3sw1dw0pw1,12\n",
    "dnnl_verbose,exec,cpu,batch_normalization,ncsp_bnorm:any,forward_training,data_bf16::"
    "blocked:abcd:f0,,flags:3,mb256ic32ih14iw14,15\n",
    "dnnl_verbose,exec,cpu,batch_normalization,ncsp_bnorm:any,forward_training,data_bf16::"
    "blocked:abcd:f0,,flags:3,mb256ic32ih14iw14,1\n",
]


def _load_summary():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import dnnl_summary
    return dnnl_summary


def test_dnnl_summary_counts_convolution_work_from_the_shape():
    summary = _load_summary()
    assert summary.conv_macs("mb256_ic128oc128_ih4oh4kh3sh1dh0ph1_iw4ow4kw3sw1dw0pw1") == \
        256 * 128 * 128 * 4 * 4 * 3 * 3
    # groups divide the input channels; width and height may differ
    assert summary.conv_macs("mb2_g4ic8oc16_ih10oh5kh3sh2dh0ph1_iw12ow6kw1sw2dw0pw0") == \
        2 * 16 * 2 * 5 * 6 * 3 * 1
    assert summary.conv_macs("256x32x14x14") is None


def test_dnnl_summary_reports_time_per_step_and_macs_per_second():
    summary = _load_summary()
    total, kinds, kernels = summary.summarise(summary.read_calls(VERBOSE_LINES))
    assert total == 40
    assert kinds["conv backward_weights"] == [24.0, 2 * 256 * 128 * 128 * 16 * 9]
    assert kinds["batch_normalization"][0] == 16
    assert kernels[("batch_normalization", "ncsp_bnorm:any", "forward_training",
                    "mb256ic32ih14iw14")] == [2, 16.0]
    import io
    out = io.StringIO()
    summary.report(total, kinds, kernels, steps=2, top=1, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "oneDNN time per step: 20.0 ms (over 2 steps)"
    conv = lines[2].split()
    # 2 calls x 604 M MACs in 24 ms: 50 GMAC/s; 12 ms per step, 60% of the time
    assert conv[:2] == ["conv", "backward_weights"] and conv[2:] == ["12.0", "60%", "50"]
    assert lines[3].split()[:3] == ["batch_normalization", "8.0", "40%"]
    assert lines[-1].split()[:2] == ["24.0", "2"] and len(lines) == 7  # --top 1


def test_dnnl_summary_names_input_without_verbose_lines(tmp_path):
    empty = tmp_path / "log.txt"
    empty.write_text("training on cpu(0)\n")
    proc = subprocess.run([sys.executable, DNNL_SUMMARY, str(empty)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert proc.returncode != 0 and "run the program with DNNL_VERBOSE=1" in proc.stderr
    proc = subprocess.run([sys.executable, DNNL_SUMMARY, str(tmp_path / "missing.txt")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert proc.returncode == 2 and "cannot read" in proc.stderr and "missing.txt" in proc.stderr
    proc = subprocess.run([sys.executable, DNNL_SUMMARY, "--steps", "0", str(empty)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert proc.returncode == 2 and "--steps must be a positive integer; got 0" in proc.stderr


@pytest.mark.slow
def test_profile_ops_and_dnnl_summary_read_this_mxnets_output():
    # One step of a tiny network through profile_ops.py with oneDNN's verbose lines on:
    # the profiler's table is parsed, and dnnl_summary.py reads the same output.
    script = os.path.join(ROOT, "benchmarks", "profile_ops.py")
    env = dict(os.environ, DNNL_VERBOSE="1")
    profile = subprocess.run([sys.executable, script, "--model", "compact_resnet8_w32", "--size",
                              "28", "--batch-size", "8", "--steps", "1", "--warmup", "1",
                              "--top", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=300, env=env)
    assert profile.returncode == 0, profile.stderr
    lines = [line for line in profile.stdout.splitlines()
             if not line.startswith("dnnl_verbose")]
    assert lines[0].startswith("compact_resnet8_w32, fp32, random batch 8, 28x28")
    assert "s per step" in lines[0]
    rows = lines[2:]
    assert len(rows) == 5 and lines[1].split()[:2] == ["operator", "calls"]
    assert "Convolution" in " ".join(rows)  # convolutions are among the top five
    totals = [float(r.split()[-2]) for r in rows]
    assert totals == sorted(totals, reverse=True) and totals[0] > 0

    proc = subprocess.run([sys.executable, DNNL_SUMMARY, "--steps", "2", "--top", "3"],
                          input=profile.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = {" ".join(line.split()[:2]): line.split() for line in proc.stdout.splitlines()[2:]}
    for kind in ("conv forward_training", "conv backward_data", "conv backward_weights"):
        # ms per step, share and a rate: the shapes were read (no rate without MACs)
        assert kind in rows and len(rows[kind]) == 5 and float(rows[kind][2]) > 0


@pytest.mark.slow
def test_stem_check_prints_both_variants_and_their_ratio():
    script = os.path.join(ROOT, "benchmarks", "stem_check.py")
    done = subprocess.run([sys.executable, script, "--models", "compact_resnet8_w32:28",
                           "--rounds", "1", "--warmup", "1", "--steps", "1"],
                          capture_output=True, text=True, timeout=300)
    if not bf16_available():
        assert done.returncode != 0 and "runs no bf16" in done.stderr, done.stderr
        return
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()[-2:]
    assert header.split() == ["network", "stem", "fp32", "stem", "bf16", "ratio"]
    name, at, size, fp32_stem, bf16_stem, ratio = row.split()
    assert (name, size) == ("compact_resnet8_w32", "28")
    assert float(fp32_stem) > 0 and float(bf16_stem) > 0
    assert ratio.endswith("x")  # of the unrounded medians: allow the rounding of the figures
    assert abs(float(ratio[:-1]) - float(fp32_stem) / float(bf16_stem)) <= 0.006


def test_only_runs_the_named_workers_and_reports_the_rest_as_not_selected(monkeypatch, capsys):
    launched = []

    def fake_launch(name, settings, env=None):
        launched.append(name)
        return {"images_per_s": {"infer_fused": 300.0, "infer_ort": 400.0}[name],
                "max_rss_mib": 6.0}

    monkeypatch.setattr(bench, "launch", fake_launch)
    assert bench.main(["--tiny", "--only", " infer_ort, infer_fused"]) == 0
    assert sorted(launched) == ["infer_fused", "infer_ort"]
    report = capsys.readouterr().out
    assert "ours fp32 fused        300.0        -" in report  # no book row to divide by
    assert "PyTorch fp32      unavailable: not selected (--only)" in report
    assert "default inference vs ONNX Runtime                   0.75x" in report
    # --only is checked before the tier's bf16, so this holds on a CPU without bf16 too
    assert "inference default: bf16 not measured (not selected (--only))" in report


@pytest.mark.parametrize("args, words", [
    (["--only", "infer_fusd"], ["'infer_fusd'", "infer_fused"]),
    (["--only", ","], ["(none given)"]),
    (["--only", "peak", "--save"], ["--save", "without --only"]),
])
def test_only_refuses_unknown_names_and_save(monkeypatch, args, words):
    monkeypatch.setattr(bench, "launch", lambda *a, **k: pytest.fail("nothing may run"))
    with pytest.raises(SystemExit) as exc:
        bench.main(["--tiny"] + args)
    assert all(w in str(exc.value) for w in words), exc.value


@pytest.mark.parametrize("args", [["--jobs", "2"], ["--tiny", "--jobs", "0"]])
def test_workers_side_by_side_only_in_the_tiny_run(monkeypatch, args):
    monkeypatch.setattr(bench, "launch", lambda *a, **k: pytest.fail("nothing may run"))
    with pytest.raises(SystemExit) as exc:
        bench.main(args)
    assert "--jobs" in str(exc.value) and "only with --tiny" in str(exc.value), exc.value


# ---------------------------------------------------------------------------
# predict_check.py: predict on a folder, fp32 against int8

def test_predict_check_refuses_a_run_that_was_never_quantized(tmp_path):
    check = load_benchmark_script("predict_check")
    with pytest.raises(SystemExit, match="has no int8 network: run gluon-resnet quantize"):
        check.main(["--params", str(tmp_path)])


@needs_data
def test_predict_check_names_each_file_after_its_test_label(tmp_path):
    """The accuracy it prints reads the label from the file name: each file must hold the
    test image of its number, and its name that image's label."""
    from PIL import Image

    from gluon_resnet.data import load_fashion_mnist_arrays

    check = load_benchmark_script("predict_check")
    labels = check.write_images(str(tmp_path), 12)
    _, _, images, truth = load_fashion_mnist_arrays()
    assert list(labels) == list(truth[:12])
    for i in range(12):
        path = tmp_path / ("%05d-%d.png" % (i, truth[i]))
        np.testing.assert_array_equal(np.asarray(Image.open(path)), images[i])
    assert len(list(tmp_path.iterdir())) == 12
