"""A run's builders: none changes the configuration it is given; each file has one writer."""

import dataclasses
import json
import os
import shutil

import mxnet as mx
import pytest

from gluon_resnet import experiment
from gluon_resnet.config import TrainConfig
from gluon_resnet.data import DataDescription
from gluon_resnet.distributed import Job
from gluon_resnet.experiment import (build_callbacks, build_data, build_loss, build_network,
                                     run_training, settle_config, write_config)
from gluon_resnet.models import get_model

from helpers import TINY, needs_data, write_fashion_folder


@needs_data
def test_the_folder_and_the_job_settle_a_new_config(tmp_path):
    root = str(tmp_path / "images")  # three classes of Fashion-MNIST
    write_fashion_folder(root, train=30, test=10)
    for split in ("train", "test"):
        for name in sorted(os.listdir(os.path.join(root, split)))[3:]:
            shutil.rmtree(os.path.join(root, split, name))
    config = TrainConfig(data=root, model="compact_resnet8", resize=None, batch_size=3,
                         label_smoothing=0.1)
    train_iter, _ = build_data(config, quiet=True)
    settled = settle_config(config, Job(kvstore="local"), train_iter)
    assert (settled.num_classes, settled.kvstore) == (3, "local")
    assert dataclasses.replace(settled, num_classes=10, kvstore="device") == config
    # What is built from the settled config has three classes.
    X, y = next(iter(train_iter))
    assert build_network(settled, mx.cpu())(X).shape == (3, 3)
    assert build_loss(settled).num_classes == 3
    # Fashion-MNIST: the configured number of classes stays.
    assert settle_config(TrainConfig(num_classes=7), Job(), None).num_classes == 7


def test_config_json_is_written_by_write_config_alone(tmp_path):
    stored = {"classes": ["a", "b"], "channels": 1, "size": [8, 8], "mean": None, "std": None}
    config, data = TrainConfig(), DataDescription.from_dict(stored)
    callbacks = build_callbacks(config, Job(), str(tmp_path), "fp32", progress=False,
                                quiet=True, data=data)
    assert callbacks and os.listdir(tmp_path) == []
    write_config(str(tmp_path), config, "bf16", Job(num_workers=2), data)
    assert os.listdir(tmp_path) == ["config.json"]
    with open(tmp_path / "config.json") as f:
        assert json.load(f) == dict(config.to_dict(), precision_used="bf16", workers=2,
                                    data=stored)



@needs_data
@pytest.mark.slow
def test_a_run_builds_its_network_once(tmp_path, monkeypatch):
    built = []

    def counting_get_model(name, **kwargs):
        built.append(name)
        return get_model(name, **kwargs)

    monkeypatch.setattr(experiment, "get_model", counting_get_model)
    history, _ = run_training(TrainConfig(**TINY), out=str(tmp_path / "run"), quiet=True,
                              progress=False)
    assert len(history) == TINY["epochs"]
    # fp32: the memory check and the training share the one network.
    assert built == [TINY["model"]]
