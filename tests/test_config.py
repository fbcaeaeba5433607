"""TrainConfig is a value: nothing changes it in place; a change is a new configuration.
Every check of a field names the field."""

import dataclasses

import numpy as np
import pytest

from gluon_resnet import cli
from gluon_resnet.config import RunError, TrainConfig, recipe_config
from gluon_resnet.data import FashionMNISTLoader


def test_a_config_cannot_be_changed_in_place():
    config = recipe_config("fast")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_classes = 3
    changed = dataclasses.replace(config, num_classes=3)
    assert (config.num_classes, changed.num_classes) == (10, 3)
    assert changed == TrainConfig.from_dict(dict(config.to_dict(), num_classes=3))


def test_no_resize_gives_the_recipe_at_28_pixels(monkeypatch):
    given = []
    monkeypatch.setattr(cli, "run_training",
                        lambda config, **kwargs: given.append(config) or ([], None))
    assert cli.main(["train", "--no-resize"]) == 0
    assert given == [dataclasses.replace(TrainConfig(), resize=None)]


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
    ("model", "resnet19", "unknown model 'resnet19'; did you mean resnet18"),
])
def test_every_config_check_names_the_field(field, value, words):
    with pytest.raises(RunError) as info:
        TrainConfig(**{field: value}).validate()
    assert words in str(info.value)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_max_shift_must_be_a_non_negative_integer(bad):
    with pytest.raises(ValueError, match="max_shift"):
        FashionMNISTLoader(np.zeros((4, 8, 8), np.uint8), np.zeros(4, int), 2, augment=True,
                           max_shift=bad)
    with pytest.raises(RunError, match="max_shift"):
        recipe_config("best", max_shift=bad).validate()


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half"])
def test_erase_must_be_a_probability(bad):
    for value in (bad, None):
        with pytest.raises(ValueError, match=r"FashionMNISTLoader: erase must be a number in "
                                             r"\[0, 1\]"):
            FashionMNISTLoader(np.zeros((4, 8, 8), np.uint8), np.zeros(4, int), 2, erase=value)
    with pytest.raises(RunError, match="erase"):
        recipe_config("fast", erase=bad).validate()
