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
from gluon_resnet import config, errors, experiment, runlock

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


# The CPU time each thread of this process spent on a few convolutions, busiest first.
_THREAD_CPU = """
import os
from mxnet import nd

def ticks():
    seconds = {}
    for task in os.listdir("/proc/self/task"):
        fields = open("/proc/self/task/%s/stat" % task).read().rsplit(")", 1)[1].split()
        seconds[task] = int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return seconds

x, w = nd.ones((16, 64, 40, 40)), nd.ones((64, 64, 3, 3))
nd.waitall()
before = ticks()
for _ in range(12):
    y = nd.Convolution(x, w, kernel=(3, 3), pad=(1, 1), num_filter=64, no_bias=True)
y.wait_to_read()
spent = [t - before.get(task, 0) for task, t in ticks().items()]
print(" ".join(map(str, sorted(spent, reverse=True))))
"""


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: nothing to share")
def test_mxnet_imported_first_still_runs_convolutions_on_every_core():
    """The d2l order (``from mxnet import ...`` first) costs no core and prints no warning.

    Counted, not timed: with one OpenMP thread a convolution's CPU time is all
    on the engine's worker thread; with two, oneDNN splits it evenly with a
    second thread, whatever else the machine runs.
    """
    done = _python("import mxnet\nimport gluon_resnet\n" + _THREAD_CPU)
    assert done.returncode == 0, done.stderr
    assert "RuntimeWarning" not in done.stderr
    busiest, second = [int(t) for t in done.stdout.split()][:2]
    assert second >= 0.6 * busiest, done.stdout


@pytest.mark.slow
def test_mxnet_imported_first_with_several_workers_gets_a_warning():
    """With several CPU workers (``MXNET_CPU_WORKER_NTHREADS``) one operation cannot reach
    each of them: the reader is told how to give MXNet every core."""
    done = _python("import mxnet, gluon_resnet", MXNET_CPU_WORKER_NTHREADS="2")
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
    # The run lock sits below the model zoo: its error comes from the bottom layer.
    assert deps["gluon_resnet.runlock"] <= {"gluon_resnet.errors"}, deps["gluon_resnet.runlock"]
    assert deps["gluon_resnet.errors"] == set()
    # The data package (DataDescription included) sits below everything that reads a run.
    for module in (m for m in deps if m.startswith("gluon_resnet.data.")):
        assert deps[module] <= {"gluon_resnet._mxnet", "gluon_resnet.validate",
                                "gluon_resnet.arrays"} | {m for m in deps if m.startswith(
                                    "gluon_resnet.data.")}, (module, deps[module])


def test_the_installed_command_handles_stop_signals_before_importing_the_package():
    """The console script runs gluon_resnet_command, which imports no gluon_resnet at the top."""
    scripts = [e for e in importlib.metadata.entry_points(group="console_scripts")
               if e.name == "gluon-resnet"]
    assert [e.value for e in scripts] == ["gluon_resnet_command:main"]  # as installed
    assert '"gluon-resnet=gluon_resnet_command:main"' in (ROOT / "setup.py").read_text()
    tree = ast.parse((ROOT / "gluon_resnet_command.py").read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(a.name.split(".")[0] in sys.stdlib_module_names
               for n in top for a in n.names) and not any(
        isinstance(n, ast.ImportFrom) for n in top)


def test_run_error_is_one_class_wherever_it_is_imported_from():
    assert config.RunError is errors.RunError is experiment.RunError
    assert issubclass(runlock.FolderInUseError, errors.RunError)


def _setup_plan(*options):
    """What ``scripts/setup.sh --print`` says it installs: {"system": [...], "venv": [...]}."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--print"] + list(options),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    plan = {"system": [], "venv": []}
    for line in done.stdout.splitlines():
        where, _, what = line.partition(": ")
        plan["system" if where.startswith("system-wide") else "venv"] += (
            what.split() if where.startswith("system-wide") else [what])
    return plan


def test_the_main_jobs_setup_installs_only_what_the_main_job_needs():
    main_job, tests = _setup_plan(), _setup_plan("--test")
    assert main_job == {"system": ["dataset-fashion-mnist"],
                        "venv": ["pip install -e '.[cpu]'"]}
    assert set(tests["system"]) == {"dataset-fashion-mnist", "openssh-server", "iproute2"}
    assert tests["venv"] == ["pip install -e '.[cpu,test,bench]'",
                             "pip install --no-deps d2l==1.0.3"]


def test_the_readme_names_what_each_setup_installs_and_ci_runs_its_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.search(r"## Set-up.*?```bash\n(.*?)```", readme, re.S).group(1)
    assert "bash scripts/setup.sh && .venv/bin/gluon-resnet train" in commands
    test_command = ("bash scripts/setup.sh --test && .venv/bin/ruff check . && "
                    ".venv/bin/python -m pytest -q tests")
    assert test_command in commands
    setup_text = readme[readme.index("## Set-up"):readme.index("## How long")]
    for package in _setup_plan("--test")["system"]:
        assert "`%s`" % package in setup_text, package
    assert "pip install -e '.[cpu]'" in setup_text and "--no-deps" in setup_text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/setup.sh --test && .venv/bin/ruff check ." in ci
