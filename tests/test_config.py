"""TrainConfig is a value: nothing changes it in place; a change is a new configuration."""

import dataclasses

import pytest

from gluon_resnet import cli
from gluon_resnet.config import TrainConfig, recipe_config


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
