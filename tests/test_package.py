"""Importing the package: thread setting, messages when MXNet is missing, declared dependencies,
imports that run one way (no circle, the layers import downwards only)."""

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


# ---------------------------------------------------------------------------
# Imports run one way
# ---------------------------------------------------------------------------

PACKAGE = os.path.dirname(gluon_resnet.__file__)


def _modules():
    """``{module name: (path, is package)}`` of every module of gluon_resnet."""
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                parts = os.path.relpath(path[:-3], os.path.dirname(PACKAGE)).split(os.sep)
                is_package = parts[-1] == "__init__"
                found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _own_imports(module, path, is_package, modules):
    """``[(imported module, function it sits in or None)]`` of relative imports."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    result = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                else function
            if isinstance(child, ast.ImportFrom) and child.level:
                target = ".".join(base[:len(base) - child.level + 1]
                                  + ([child.module] if child.module else []))
                for alias in child.names:
                    full = target + "." + alias.name
                    result.append((full if full in modules else target, inner))
            visit(child, inner)

    visit(ast.parse(open(path).read()), None)
    return result


def test_no_import_circle_and_no_imports_inside_functions():
    modules = _modules()
    graph, local = {}, []
    for module, (path, is_package) in modules.items():
        edges = _own_imports(module, path, is_package, modules)
        # A package's __init__ importing its own submodules is not an edge of the graph.
        graph[module] = {m for m, _ in edges if not m.startswith(module + ".")}
        local += ["%s.%s imports %s" % (module, f, m) for m, f in edges if f is not None]
    assert local == []
    state = {}

    def walk(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                raise AssertionError("import circle: " + " -> ".join(stack + [nxt]))
            if nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])


def test_the_layers_import_downwards_only():
    modules = _modules()
    deps = {m: {d for d, _ in _own_imports(m, *modules[m], modules)} for m in modules}
    below_training = ("gluon_resnet.events", "gluon_resnet.signals", "gluon_resnet.callbacks")
    assert not any(d.startswith(("gluon_resnet.training", "gluon_resnet.experiment",
                                 "gluon_resnet.cli")) for m in below_training for d in deps[m])
    # a run's int8 file is read below load_trained; making one (quantize) sits above it
    assert not any(d.startswith(("gluon_resnet.trained", "gluon_resnet.quantize"))
                   for d in deps["gluon_resnet.int8"])
    assert "gluon_resnet.quantize" not in deps["gluon_resnet.trained"]
    launcher = deps["gluon_resnet.distributed.launcher"]
    assert not any(d.startswith(("gluon_resnet.cli", "gluon_resnet._mxnet")) for d in launcher)
