"""Importing the package: thread setting, messages when MXNet is missing, declared dependencies."""

import ast
import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys

import pytest

import gluon_resnet

ROOT = pathlib.Path(gluon_resnet.__file__).resolve().parent.parent


def _python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.mark.slow
def test_import_uses_every_core():
    done = _python("import os, gluon_resnet; print(os.environ['OMP_NUM_THREADS'])")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(os.sched_getaffinity(0))


@pytest.mark.slow
def test_an_explicit_thread_setting_is_kept():
    done = _python("import os, gluon_resnet; print(os.environ['OMP_NUM_THREADS'])",
                   OMP_NUM_THREADS="1")
    assert done.stdout.strip() == "1"


@pytest.mark.slow
def test_mxnet_imported_first_gets_a_warning():
    done = _python("import mxnet, gluon_resnet")
    assert done.returncode == 0, done.stderr
    if len(os.sched_getaffinity(0)) > 1:
        assert "import gluon_resnet first" in done.stderr


def test_missing_mxnet_says_what_to_install():
    done = _python("import sys; sys.modules['mxnet'] = None; import gluon_resnet")
    assert done.returncode != 0
    assert "MXNet is not installed" in done.stderr and "gluon-resnet[cpu]" in done.stderr
    assert "mxnet-cu112" in done.stderr


def _declared(setup_py):
    """``(install_requires, extras_require)`` of ``setup.py``'s ``setup()`` call, as written."""
    call = next(node for node in ast.walk(ast.parse(setup_py.read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords
              if k.arg in ("install_requires", "extras_require")}
    return kwargs["install_requires"], kwargs["extras_require"]


def _name(requirement):
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower()


#: Imported but not required, each for a reason.
OPTIONAL = {"onnx": "only by gluon-resnet export, which says how to install it when missing",
            "IPython": "only inside a running notebook, which has it"}


def test_every_package_the_code_imports_is_declared():
    """Outside packages imported anywhere in gluon_resnet (deferred imports too) are in
    install_requires; MXNet is the one in an extra ("cpu"), so a CUDA build is not replaced."""
    requires, extras = _declared(ROOT / "setup.py")
    declared = {_name(r) for r in requires} | {_name(r) for r in extras["cpu"]}
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for path in sorted((ROOT / "gluon_resnet").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module]
            else:
                continue
            for top in {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names):
                names = {d.lower() for d in distributions.get(top, [top])}
                if top not in OPTIONAL and top != "gluon_resnet" and not names & declared:
                    missing.append("%s (%s) in %s" % (top, ", ".join(sorted(names)),
                                                      path.relative_to(ROOT)))
    assert "pillow" in declared and not missing, missing
