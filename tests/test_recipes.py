"""The recipes: the command line knows each, each is valid and trains, and its choices reach
the network and the loader (the parts themselves: test_callbacks, test_training, test_data)."""

import os

import numpy as np
import pytest

from gluon_resnet.cli import build_parser
from gluon_resnet.experiment import RECIPES, RunError, recipe_config, run_training

from helpers import DATA_DIR


def test_cli_knows_every_recipe():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    recipe = next(a for a in train._actions if a.dest == "recipe")
    assert tuple(recipe.choices) == tuple(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
@pytest.mark.slow
def test_recipe_is_valid_and_trains_a_few_batches(name, tmp_path):
    if not os.path.isdir(DATA_DIR):
        pytest.skip("Fashion-MNIST is not installed")
    # fp32: bf16 AMP would switch this whole test process to bf16 (see test_precision.py).
    config = recipe_config(name, limit=200, epochs=1, batch_size=50,
                           precision="fp32").validate()
    assert config.recipe == name
    history, out = run_training(config, out=str(tmp_path / name), quiet=True)
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    assert os.path.exists(os.path.join(out, "checkpoint.ckpt"))


def test_unknown_recipe():
    with pytest.raises(RunError, match="fast"):
        recipe_config("fastest")


def test_best_recipe_reaches_the_loader_with_its_shift():
    if not os.path.isdir(DATA_DIR):
        pytest.skip("Fashion-MNIST is not installed")
    from gluon_resnet.experiment import build_data

    config = recipe_config("best", limit=100)
    train_iter, test_iter = build_data(config)
    assert train_iter.augment and train_iter.max_shift == config.max_shift == RECIPES["best"][
        "max_shift"]
    assert not test_iter.augment


def test_the_fast_recipe_uses_the_amx_friendly_compact_network():
    assert RECIPES["fast"]["model"] == "compact_resnet8_w32"


def test_erase_option_reaches_the_loader():
    if not os.path.isdir(DATA_DIR):
        pytest.skip("Fashion-MNIST is not installed")
    from gluon_resnet.experiment import build_data

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    args = train.parse_args(["--erase", "0.25", "--limit", "100"])
    assert args.erase == 0.25
    train_iter, test_iter = build_data(recipe_config("fast", erase=0.25, limit=100))
    assert train_iter.erase == 0.25 and test_iter.erase == 0
    with pytest.raises(SystemExit):
        train.parse_args(["--erase", "2"])
