"""The command line: options made from TrainConfig's fields, argument checks, eval's refusals."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest

import mxnet as mx

import gluon_resnet.cli as cli
from gluon_resnet.cli import build_parser, main
from gluon_resnet.config import TrainConfig
from gluon_resnet.events import TrainingInterrupted
from gluon_resnet.models import get_model
from gluon_resnet.precision import INFERENCE_PRECISIONS

from helpers import DATA_DIR, made_run


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
        assert list(options["precision"].choices) == list(INFERENCE_PRECISIONS)
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


def test_an_argument_error_prints_one_usage_line_and_the_error(capsys):
    """Not the usage block of every option: one line pointing at --help, then the error."""
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "x"])
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 2
    assert err == ["usage: gluon-resnet train ... (gluon-resnet train --help lists the options)",
                   "gluon-resnet train: error: argument --epochs: 'x' is not an integer"]


def test_help_still_prints_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert all(flag in out for flag in ("--data-root", "--batch-size", "--checkpoint-minutes"))


@pytest.mark.parametrize("argv", [["train", "--model", "resnt18"],
                                  ["shapes", "--model", "resnt18"],
                                  ["precision", "--measure", "--model", "resnt18"]])
def test_a_mistyped_model_name_gets_a_guess_not_the_whole_list(argv, capsys):
    """One line with the closest names; the list of all models is 'gluon-resnet models'.
    ``precision --measure`` refuses it too (status 2), without suggesting to run itself."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "did you mean resnet18" in err and "'gluon-resnet models'" in err
    assert "wrn40_4" not in err  # a model name far from the typo: the list is not printed
    assert "precision --measure" not in err and "measuring failed" not in err


def test_the_data_root_refusal_names_the_flag(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    assert main(["train", "--data-root", missing, "--limit", "10", "--precision", "fp32"]) == 2
    err = capsys.readouterr().err
    assert "--data-root %s does not hold Fashion-MNIST" % missing in err
    assert "pass --data-root FOLDER" in err and "root=" not in err


def test_an_option_for_own_images_without_data_names_the_flags(capsys):
    assert main(["train", "--skip-bad-images", "--limit", "10"]) == 2
    err = capsys.readouterr().err
    assert "--skip-bad-images apply to your own images: give --data PATH too" in err
    assert "skip_bad_images" not in err


def test_the_resume_refusal_names_the_flags(tmp_path, capsys):
    made_run(str(tmp_path / "run"), epochs_done=1)  # trained with --no-resize
    assert main(["train", "--resume", str(tmp_path / "run"), "--resize", "32", "--epochs",
                 "2"]) == 2
    err = capsys.readouterr().err
    assert "cannot change --resize when resuming" in err
    assert "it was trained with --no-resize" in err
    assert "only --epochs, --lr, --ctx, --data-root, --precision, --kvstore may change" in err
    assert "resize=" not in err and "data_root" not in err


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_eval_and_predict_take_ctx_as_train_does(command, monkeypatch, tmp_path, capsys):
    """``--ctx`` reaches the function that runs the network; a device that is not there is
    refused in train's words."""
    seen = {}
    target = "evaluate_run" if command == "eval" else "predict_files"
    monkeypatch.setattr(cli, target, lambda *a, **kw: seen.update(kw) or [])
    monkeypatch.setattr(cli, "format_predictions", lambda *a, **kw: "")
    argv = [command, "--params", str(tmp_path)] + (["x.png"] if command == "predict" else [])
    assert main(argv + ["--ctx", "cpu:1"]) == 0
    assert seen["ctx"] == mx.cpu(1)
    assert main(argv + ["--ctx", "gpu:%d" % (mx.context.num_gpus() + 7)]) == 2
    assert "is not available on this machine" in capsys.readouterr().err


def test_resume_hints_print_one_form_of_path(tmp_path, monkeypatch, capsys):
    """A first run (folder given relative) and a resumed one (folder worked out absolute) print
    the same path: relative to the current folder inside it, absolute outside it."""
    monkeypatch.chdir(tmp_path)
    inside = os.path.join("runs", "a", "checkpoint.ckpt")
    outside = os.path.join(os.path.dirname(str(tmp_path)), "elsewhere", "checkpoint.ckpt")
    printed = {}
    for given in (inside, os.path.abspath(inside), outside, os.path.relpath(outside)):
        def stopped(*args, **kwargs):
            raise TrainingInterrupted("training interrupted", checkpoint=given)
        monkeypatch.setattr(cli, "run_training", stopped)
        assert main(["train", "--limit", "10"]) == 130
        err = capsys.readouterr().err
        saved = re.search(r"saved in (\S+)\.$", err, re.M).group(1)
        resume = re.search(r"--resume (\S+)$", err, re.M).group(1)
        printed[given] = (saved, resume)
    assert printed[inside] == printed[os.path.abspath(inside)] == (inside, inside)
    assert printed[outside] == printed[os.path.relpath(outside)] == (outside, outside)
