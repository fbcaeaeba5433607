"""The command line: options made from TrainConfig's fields, argument checks, eval's refusals."""

import dataclasses
import os
import subprocess
import sys

import pytest

import mxnet as mx

from gluon_resnet.cli import build_parser, main
from gluon_resnet.config import TrainConfig
from gluon_resnet.models import get_model
from gluon_resnet.precision import PRECISIONS

from helpers import DATA_DIR


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


def test_the_commands_that_run_a_trained_network_take_the_same_precision_option():
    commands = build_parser()._subparsers._group_actions[0].choices
    eval_options, predict_options = ({a.dest: a for a in commands[name]._actions}
                                     for name in ("eval", "predict"))
    for options in (eval_options, predict_options):
        assert options["precision"].default == "auto"
        assert list(options["precision"].choices) == list(PRECISIONS)
    assert eval_options["precision"].help == predict_options["precision"].help
    args = build_parser().parse_args(["eval", "--params", "x.ckpt", "--precision", "bf16"])
    assert args.func.__name__ == "_cmd_eval" and args.precision == "bf16"


def test_abbreviated_options_are_refused(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--data-ro", "somewhere"])  # not an abbreviation of --data-root
    assert info.value.code == 2 and "unrecognized arguments: --data-ro" in capsys.readouterr().err


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


@pytest.mark.slow
def test_a_closed_pipe_ends_a_command_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line, as after head -2
    try:
        done = subprocess.run([sys.executable, "-m", "gluon_resnet", "models"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == "", done.stderr
