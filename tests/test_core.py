"""The training core's structure and its error paths.

Imports run one way (the loop's phases and events: test_events.py);
``TrainConfig`` as the one source of the options; the argument checks'
wording; checkpoint, configuration and evaluation errors a user can meet.
"""

import ast
import dataclasses
import json
import os
import zipfile

import pytest

import mxnet as mx
from mxnet.gluon import nn

import gluon_resnet
from gluon_resnet import validate
from gluon_resnet.checkpoint import (FORMAT, CheckpointError, load_checkpoint, read_checkpoint,
                                     save_checkpoint)
from gluon_resnet.cli import build_parser, main
from gluon_resnet.config import RunError, TrainConfig
from gluon_resnet.distributed import Job
from gluon_resnet import models
from gluon_resnet.models import get_model, register_model

from helpers import DATA_DIR

PACKAGE = os.path.dirname(gluon_resnet.__file__)


# ---------------------------------------------------------------------------
# Imports run one way
# ---------------------------------------------------------------------------

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
    launcher = deps["gluon_resnet.distributed.launcher"]
    assert not any(d.startswith(("gluon_resnet.cli", "gluon_resnet._mxnet")) for d in launcher)


# ---------------------------------------------------------------------------
# TrainConfig: the one source of the options
# ---------------------------------------------------------------------------

def test_every_train_option_comes_from_a_config_field():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    options = {a.dest: a for a in train._actions}
    for field in dataclasses.fields(TrainConfig):
        action = options[field.name]
        assert action.option_strings == ["--" + field.name.replace("_", "-")] or (
            field.metadata["parse"] is bool), field.name
        assert action.help.startswith(field.metadata["help"])
        assert action.default is None  # not given: as the recipe or checkpoint has it
    extra = set(options) - {f.name for f in dataclasses.fields(TrainConfig)}
    assert extra == {"help", "no_resize", "out", "resume", "checkpoint_minutes", "no_progress"}


def test_abbreviated_options_are_refused(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--data-ro", "somewhere"])  # not an abbreviation of --data-root
    assert info.value.code == 2 and "unrecognized arguments: --data-ro" in capsys.readouterr().err


def test_unknown_configuration_keys_are_named():
    with pytest.raises(RunError, match=r"unknown training options colour, speed; the options "
                       r"are: recipe, model"):
        TrainConfig.from_dict(dict(TrainConfig().to_dict(), speed=2, colour="red"))


@pytest.mark.parametrize("field, value, words", [
    ("epochs", 0, "epochs must be a positive integer, got 0"),
    ("epochs", 2.5, "epochs must be a positive integer, got 2.5"),
    ("batch_size", True, "batch_size must be a positive integer, got True"),
    ("num_classes", -1, "num_classes must be a positive integer"),
    ("resize", 0, "resize must be a positive integer"),
    ("limit", "10", "limit must be a positive integer"),
    ("seed", -1, "seed must be a non-negative integer"),
    ("max_shift", -2, "max_shift must be a non-negative integer"),
    ("lr", 0.0, "lr must be a positive number"),
    ("lr", float("nan"), "lr must be a positive number"),
    ("momentum", -0.1, "momentum must be a non-negative number"),
    ("wd", float("inf"), "wd must be a non-negative number"),
    ("label_smoothing", 1.0, "label_smoothing must be a number in [0, 1)"),
    ("optimizer", "lbfgs", "optimizer must be one of sgd, nag, adam"),
    ("precision", "fp16", "precision must be one of fp32, bf16, auto"),
    ("schedule", "cosine", "schedule must be one of constant, onecycle"),
    ("kvstore", "nccl", "kvstore must be one of device, local"),
    ("recipe", "fastest", "recipe must be one of chapter, fast, best"),
    ("augment", "yes", "augment must be one of False, True"),
    ("model", "resnet19", "unknown model 'resnet19'; the registered models are"),
])
def test_every_config_check_names_the_field(field, value, words):
    with pytest.raises(RunError) as info:
        TrainConfig(**{field: value}).validate()
    assert words in str(info.value)


@pytest.mark.parametrize("argv, words", [
    (["train", "--epochs", "0"], "argument --epochs: must be a positive integer, got 0"),
    (["train", "--lr", "-1"], "argument --lr: must be a positive number, got -1.0"),
    (["train", "--seed", "x"], "argument --seed: 'x' is not an integer"),
    (["train", "--label-smoothing", "1"], "argument --label-smoothing: must be a number in"),
    (["shapes", "--size", "0"], "argument --size: must be a positive integer, got 0"),
])
def test_command_line_checks_use_the_same_words(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and words in capsys.readouterr().err


def test_validators_share_one_wording():
    with pytest.raises(ValueError, match=r"^Residual: strides must be a positive integer, "
                                         r"got 0\.$"):
        gluon_resnet.Residual(8, strides=0)
    with pytest.raises(ValueError, match=r"^load_data_fashion_mnist: batch_size must be a "
                                         r"positive integer, got 0\.$"):
        gluon_resnet.load_data_fashion_mnist(0)
    assert validate.shard(3, 2) == (3, 2)
    with pytest.raises(ValueError, match=r"part_index must be an integer from 0 to "
                                         r"num_parts - 1 = 2, got 3"):
        validate.shard(3, 3)


# ---------------------------------------------------------------------------
# Models, jobs
# ---------------------------------------------------------------------------

def _broken(num_classes=10):
    return len(num_classes)  # TypeError: a bug, not a bad argument


def test_get_model_does_not_hide_bugs_as_bad_arguments(monkeypatch):
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))  # registered for this test
    register_model("test_core_broken", "a factory with a bug inside")(_broken)
    with pytest.raises(ValueError, match=r"model 'resnet18' does not accept these arguments"):
        get_model("resnet18", colour="red")
    with pytest.raises(ValueError, match=r"model 'cifar_resnet20_v1' does not accept these "
                                         r"arguments.*colour"):
        get_model("cifar_resnet20_v1", colour=True)  # its factory passes **kwargs on
    with pytest.raises(TypeError, match="has no len"):
        get_model("test_core_broken")
    assert "test_core_broken" in models.list_models()


def test_no_test_model_leaks_into_the_registry():
    assert not [m for m in models.list_models() if m.startswith("test_core")]


def test_a_single_process_job_and_the_global_batch():
    job = Job()
    assert job.lead and not job.distributed and job.local_batch(256) == 256
    two = Job(rank=1, num_workers=2, kvstore="dist_sync")
    assert not two.lead and two.local_batch(50) == 25
    assert two.describe(50) == "distributed: 2 workers, kvstore dist_sync, global batch 50 = 2 x 25"


# ---------------------------------------------------------------------------
# Checkpoints and evaluation: files that are not what they should be
# ---------------------------------------------------------------------------

def _saved(tmp_path, name="ckpt.ckpt"):
    net = nn.HybridSequential()
    net.add(nn.Dense(4, in_units=3), nn.Dense(2, in_units=4))
    net.initialize()
    path = str(tmp_path / name)
    save_checkpoint(path, net, None, {"epoch": 1, "config": {"model": "tiny"}})
    return path, net


def test_a_file_that_is_not_a_zip_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.ckpt"
    path.write_bytes(b"just some bytes")
    with pytest.raises(CheckpointError, match=r"x\.ckpt is not a gluon_resnet checkpoint"):
        read_checkpoint(str(path))


def test_a_wrong_format_tag_is_named(tmp_path):
    path = tmp_path / "other.ckpt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.json", json.dumps({"format": "someone-else-2"}))
        z.writestr("model.params", b"")
    with pytest.raises(CheckpointError, match=r"has format 'someone-else-2', expected %r"
                       % FORMAT):
        read_checkpoint(str(path))


def test_a_checkpoint_without_parameters_is_refused(tmp_path):
    path = tmp_path / "half.ckpt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.json", json.dumps({"format": FORMAT}))
    with pytest.raises(CheckpointError, match="has no model.params"):
        read_checkpoint(str(path))


def test_a_shape_mismatch_names_the_parameter(tmp_path):
    path, _ = _saved(tmp_path)
    other = nn.HybridSequential()
    other.add(nn.Dense(5, in_units=3), nn.Dense(2, in_units=5))
    other.initialize()
    with pytest.raises(CheckpointError, match=r"'0\.bias' has shape \(4,\) there and "
                                              r"\(5,\) here"):
        load_checkpoint(path, other)
    fewer = nn.HybridSequential()
    fewer.add(nn.Dense(2, in_units=3))
    fewer.initialize()
    with pytest.raises(CheckpointError, match=r"of tiny, which do not fit this network \(4 "
                                              r"parameters there, 2 here; '1\.bias' is not a "
                                              r"parameter here\)"):
        load_checkpoint(path, fewer)


@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason="Fashion-MNIST is not installed")
def test_eval_refuses_the_parameters_of_another_network(tmp_path, capsys):
    net = get_model("resnet18", num_classes=10)
    net.initialize()
    net(mx.nd.zeros((1, 1, 28, 28)))
    path = str(tmp_path / "resnet18.params")
    net.save_parameters(path)
    assert main(["eval", "--params", path, "--model", "chapter_resnet18", "--resize", "28",
                 "--limit", "10", "--precision", "fp32"]) == 2
    err = capsys.readouterr().err
    assert "does not hold the parameters of chapter_resnet18" in err
    assert main(["eval", "--params", path]) == 2
    assert "add --model NAME" in capsys.readouterr().err
