"""benchmarks/results_tables.py: RESULTS.md's tables are the data files' current records."""

import ast
import json
import os
import statistics

import pytest

from helpers import load_benchmark_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


tables = load_benchmark_script("results_tables")


def _write_jsonl(path, records):
    with open(str(path), "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def _recipe(date, seed, acc, wall, precision="bf16", **extra):
    return dict({"date": date, "machine_kind": "Test CPU", "recipe": "fast", "seed": seed,
                 "precision": precision, "precision_from": "auto", "test_acc": acc,
                 "wall_s": wall, "command": "gluon-resnet train --recipe fast"}, **extra)


def _table_row(text, first_cell):
    """The cells of the Markdown table row of ``text`` that starts with ``first_cell``."""
    (line,) = [line for line in text.splitlines() if line.startswith("| %s |" % first_cell)]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_recipes_row_holds_the_latest_runs_their_minimum_and_median(tmp_path):
    latest = [(0, 0.9301, 80.0), (1, 0.9255, 95.5), (2, 0.9422, 70.25)]
    _write_jsonl(tmp_path / "recipes.jsonl",
                 [_recipe("day 1", 0, 0.5, 10.0), _recipe("day 1", 1, 0.6, 11.0)]
                 + [_recipe("day 2", s, a, w) for s, a, w in latest]
                 + [_recipe("day 3", 0, 0.7, 12.0, superseded="an older recipe")]
                 + [_recipe("day 1", 0, 0.8888, 300.0, precision="fp32")])
    text = tables.blocks(str(tmp_path))["recipes"]
    bf16, fp32 = [line for line in text.splitlines() if line.startswith("| `fast` |")]
    accs = [a for _, a, _ in latest]
    median_wall = statistics.median(w for _, _, w in latest)  # 80.0
    assert "| 0, 1, 2 |" in bf16 and "day 2" in bf16
    assert "%.4f / %.4f" % (min(accs), statistics.median(accs)) in bf16  # 0.9255 / 0.9301
    assert "%.1f s" % median_wall in bf16
    for old in ("0.5000", "0.6000", "0.7000"):  # the older date and the superseded run
        assert old not in text
    assert "0.8888" in fp32 and "5.0 min (300.0 s)" in fp32  # fp32 keeps its own latest date


def _bench_row(date, tier, variant, rate, default=False, mode="train", side="ours"):
    return {"date": date, "machine_kind": "Test CPU", "tier": tier, "capped": False,
            "variant": variant, "label": variant, "side": side, "mode": mode,
            "precision": "fp32", "default": default, "images_per_s": rate, "rounds": 3}


def test_the_speed_table_shows_each_tiers_latest_run_and_its_ratios(tmp_path):
    tier = "AVX512_CORE"
    _write_jsonl(tmp_path / "test-cpu.jsonl", [
        _bench_row("day 1", tier, "train_ref", 10.0, side="ref"),
        _bench_row("day 1", tier, "train_fp32", 99.0, default=True),
        _bench_row("day 2", tier, "train_ref", 40.0, side="ref"),
        _bench_row("day 2", tier, "train_torch_fp32", 50.0, side="torch"),
        _bench_row("day 2", tier, "train_torch_bf16", 64.0, side="torch"),
        _bench_row("day 2", tier, "train_fp32", 130.0, default=True),
        _bench_row("day 2", tier, "infer_fused", 300.0, default=True, mode="infer"),
        _bench_row("day 2", tier, "infer_ort", 250.0, mode="infer", side="ort"),
    ])
    text = tables.blocks(str(tmp_path))["speed"]
    assert "### Test CPU" in text
    assert _table_row(text, "measured")[1] == "day 2, 3 rounds"
    assert _table_row(text, "training: train_fp32")[1] == "130.0 (default)"
    assert "99.0" not in text and "10.0" not in text  # the older run is history
    ratios = _table_row(text, tier)
    assert ratios[2] == "%.2fx" % (130.0 / 40.0)  # vs the book
    assert ratios[3] == "%.2fx (train_torch_bf16)" % (130.0 / 64.0)  # PyTorch's fastest
    assert ratios[5] == "%.2fx" % (300.0 / 250.0)  # vs ONNX Runtime


def test_only_the_generated_blocks_are_rewritten(tmp_path):
    start, end = tables.START % "notebooks", tables.END % "notebooks"
    _write_jsonl(tmp_path / "notebooks.jsonl", [
        {"notebook": "a.ipynb", "date": "day 1", "machine_kind": "Test CPU",
         "wall_s": 30.0, "result": "old"},
        {"notebook": "a.ipynb", "date": "day 5", "machine_kind": "Test CPU",
         "wall_s": 42.0, "result": "new"}])
    document = "# Title\n\nfindings before\n\n%s\nstale table\n%s\n\nfindings after\n" % (
        start, end)
    new = tables.render(document, {"notebooks": tables.notebooks_block(str(tmp_path))})
    head, rest = new.split(start)
    body, tail = rest.split(end)
    assert head == "# Title\n\nfindings before\n\n" and tail == "\n\nfindings after\n"
    assert "stale table" not in body and "| new |" in body and "| old |" not in body
    with pytest.raises(ValueError, match="needs exactly one"):
        tables.render("# no markers\n", {"notebooks": ""})


def test_update_writes_a_new_document_and_says_when_nothing_changed(tmp_path):
    _write_jsonl(tmp_path / "recipes.jsonl", [_recipe("day 2", 0, 0.9123, 60.0)])
    document = str(tmp_path / "RESULTS.md")
    assert tables.update(str(tmp_path), document) is True
    with open(document) as f:
        assert "0.9123" in f.read()
    assert tables.update(str(tmp_path), document) is False


def test_the_committed_results_md_is_what_the_committed_data_gives():
    with open(tables.DOCUMENT) as f:
        committed = f.read()
    # If this fails: python benchmarks/results_tables.py, and commit RESULTS.md.
    assert tables.render(committed, tables.blocks(tables.RESULTS_DIR)) == committed
    assert tables.main(["--check"]) == 0


def test_every_test_the_reliability_claims_name_exists():
    claims = tables.read_claims(tables.RESULTS_DIR)
    assert claims
    for claim, tests, _ in claims:
        assert tests, claim
        for path, name in tests:
            with open(os.path.join(ROOT, path)) as f:
                tree = ast.parse(f.read())
            defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
            assert name in defined, "%s names %s::%s, which does not exist" % (claim, path, name)
