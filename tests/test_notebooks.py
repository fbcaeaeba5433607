"""The notebooks: stored outputs come from a full run, and each runs in quick mode.

Quick mode (``GLUON_RESNET_QUICK=1``) trains on small subsets for one epoch;
the cell timeout (3 minutes) bounds each notebook's slowest step.
"""

import ast
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import nbformat
import pytest

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
EXPECTED = ["plain_vs_residual.ipynb", "resnet.ipynb", "resnet_d2l2.ipynb", "resnet_family.ipynb",
            "transfer_learning.ipynb"]
#: Figures each notebook draws (learning curves, confusion matrix, block diagrams, ...).
MIN_FIGURES = {"plain_vs_residual.ipynb": 2, "resnet.ipynb": 3, "resnet_d2l2.ipynb": 1,
               "resnet_family.ipynb": 4, "transfer_learning.ipynb": 2}


def _runner():
    spec = importlib.util.spec_from_file_location("notebook_runner", NOTEBOOK_DIR / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _errors(nb):
    return [(i, out.get("ename"), out.get("evalue"))
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def _images(nb):
    return sum("image/png" in out.get("data", {})
               for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


def test_the_notebooks_exist():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_stored_outputs_are_from_a_full_run_without_errors(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    meta = nb.metadata.get("gluon_resnet", {})
    assert meta.get("mode") == "full", "%s: stored outputs are not from a full run (%r); " \
        "run python notebooks/run.py %s" % (name, meta, name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    unexecuted = [i for i, c in enumerate(code) if c.get("execution_count") is None]
    assert not unexecuted, "%s: code cells %s have no stored execution" % (name, unexecuted)
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        "%s: cells were not run top to bottom in one go" % name
    assert not _errors(nb), "%s: stored outputs contain errors: %s" % (name, _errors(nb))
    assert _images(nb) >= MIN_FIGURES[name], "%s: expected stored figures" % name


def _stored_text(nb):
    return "".join(str(out.get("data", {}).get("text/markdown", "")) + str(out.get("text", ""))
                   for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []))


def test_stored_family_table_lists_every_registered_model():
    from gluon_resnet import list_models

    text = _stored_text(nbformat.read(NOTEBOOK_DIR / "resnet_family.ipynb", as_version=4))
    missing = [name for name in list_models() if "| `%s` |" % name not in text]
    assert not missing, ("resnet_family.ipynb's stored table lacks %s; run python "
                         "notebooks/run.py resnet_family.ipynb" % missing)
    assert "| `compact_resnet9` | 1×28×28 |" in text  # the compact nets at their own size
    assert "| `wrn28_10` | 3×32×32 | 36,479,194 |" in text  # WRNs at CIFAR's size


def test_runner_names_an_unknown_notebook_and_the_existing_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        _runner().main(["resnet_family"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no notebook resnet_family in" in err and "resnet_family.ipynb" in err


def test_the_output_checks_can_fail(tmp_path):
    """Guard: a notebook with an error output or no run is rejected by the checks above."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 / 0")
    cell.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError",
                                           evalue="division by zero", traceback=[])]
    nb.cells = [cell]
    assert _errors(nb) == [(0, "ZeroDivisionError", "division by zero")]
    assert nb.metadata.get("gluon_resnet", {}).get("mode") != "full"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_in_quick_mode(name, tmp_path, monkeypatch):
    # The kernel inherits TMPDIR: the notebooks' temporary folders go under tmp_path.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    for cell in nb.cells:  # start from clean cells: nothing stored can mask a failure
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    source = tmp_path / name
    nbformat.write(nb, str(source))
    seconds = _runner().execute(source, quick=True, timeout=180)
    ran = nbformat.read(source, as_version=4)
    assert ran.metadata["gluon_resnet"]["mode"] == "quick"
    assert not _errors(ran)
    assert all(c.execution_count for c in ran.cells if c.cell_type == "code")
    assert _images(ran) >= MIN_FIGURES[name], "%s: quick run drew too few figures" % name
    left = sorted(p.name for p in (tmp_path / "tmp").iterdir())
    assert not left, "%s left in the temporary folder: %s" % (name, left)  # a reader's /tmp
    print("%s quick run: %.1f s" % (name, seconds))


def test_a_quick_notebook_run_never_touches_the_stored_full_run(tmp_path, monkeypatch):
    import importlib.util

    import nbclient
    import nbformat

    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
    spec = importlib.util.spec_from_file_location("notebook_runner", os.path.join(here, "run.py"))
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    stored = tmp_path / "resnet.ipynb"  # a stored full run, as the runner writes one
    full = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    full.metadata["gluon_resnet"] = {"mode": "full"}
    nbformat.write(full, str(stored))
    before = stored.read_bytes()
    monkeypatch.setattr(runner, "HERE", tmp_path)
    monkeypatch.setattr(nbclient.NotebookClient, "execute", lambda self: None)  # no kernel
    assert runner.main(["--quick", "resnet.ipynb"]) == 0
    assert stored.read_bytes() == before
    quick = json.loads((tmp_path / "quick" / "resnet.ipynb").read_text())
    assert quick["metadata"]["gluon_resnet"]["mode"] == "quick"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_first_cell_runs_without_a_warning(name, tmp_path):
    """Each notebook's first code cell, as written, in a fresh interpreter with Python's default
    warning filters and no ``OMP_NUM_THREADS`` (a reader's first cell): no warning."""
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    first = next(cell.source for cell in nb.cells if cell.cell_type == "code")
    root = NOTEBOOK_DIR.parent
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-"], input=first, capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr


def test_the_notebooks_readme_says_how_to_open_them_with_what_the_extras_install():
    """The commands of notebooks/README.md: an extra of setup.py that brings JupyterLab and the
    kernel, and the jupyter-lab program JupyterLab installs."""
    text = (NOTEBOOK_DIR / "README.md").read_text(encoding="utf-8")
    install = re.search(r"\.venv/bin/pip install -e '\.\[([a-z,]+)\]'", text)
    assert install and ".venv/bin/jupyter-lab notebooks/" in text
    setup_py = (NOTEBOOK_DIR.parent / "setup.py").read_text()
    call = next(node for node in ast.walk(ast.parse(setup_py))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    extras = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "extras_require"))
    wanted = set()
    for extra in install.group(1).split(","):
        wanted |= set(extras[extra])
    assert {"jupyterlab", "ipykernel", "mxnet==1.9.1"} <= wanted
