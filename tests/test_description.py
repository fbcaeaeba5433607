"""DataDescription: what a network was trained on, as the loader reports it and checkpoints
store it.

The stored format is a plain dict: a checkpoint that holds one
(``tests/data/resume_186705e.ckpt``) and one that holds none (a Fashion-MNIST
run) both read back.
"""

import dataclasses
import json
import os

import numpy as np
import pytest

from gluon_resnet.checkpoint import read_checkpoint_meta
from gluon_resnet.data import ArrayLoader, DataDescription, FashionMNISTLoader

#: Fashion-MNIST's class names in label order as d2l's ``get_fashion_mnist_labels`` writes them.
FASHION_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                 "bag", "ankle boot"]

STORED = os.path.join(os.path.dirname(__file__), "data", "resume_186705e.ckpt")


def test_a_run_stored_without_a_description_is_fashion_mnist_at_its_resize():
    old = DataDescription.from_dict(None, resize=96)
    assert old.to_dict() == {"classes": FASHION_NAMES, "channels": 1, "size": [96, 96],
                             "mean": None, "std": None}
    assert DataDescription.from_dict(None).size == (28, 28)  # resize None: the files' 28 pixels
    assert old.input_shape == (1, 96, 96)


def test_a_stored_checkpoints_description_reads_back_as_it_was_written():
    stored = read_checkpoint_meta(STORED)["data"]
    data = DataDescription.from_dict(stored)
    assert data.classes == tuple(FASHION_NAMES) and (data.channels, data.size) == (1, (28, 28))
    assert data.mean is None and data.std is None
    assert data.to_dict() == stored


def test_mean_and_std_may_be_left_out_of_a_stored_description():
    data = DataDescription.from_dict({"classes": ["a"], "channels": 1, "size": [4, 6]})
    assert (data.size, data.mean, data.std) == ((4, 6), None, None)


def test_the_record_survives_json_and_is_frozen():
    data = DataDescription(["cat", "dog"], 3, [32, 24], [0.5, 0.4, 0.3], [0.2, 0.25, 1])
    text = json.dumps(data.to_dict())
    assert json.loads(text) == {"classes": ["cat", "dog"], "channels": 3, "size": [32, 24],
                                "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 1.0]}
    back = DataDescription.from_dict(json.loads(text))
    assert back == data and hash(back) == hash(data)
    assert back.size == (32, 24) and back.input_shape == (3, 32, 24)
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.channels = 1


def test_the_loader_describes_its_batches():
    images = np.zeros((4, 10, 12, 3), np.uint8)
    loader = ArrayLoader(images, np.array([0, 1, 2, 1]), 2, resize=8, mean=[0.1, 0.2, 0.3],
                         std=[1, 2, 3], classes=["x", "y", "z"])
    assert loader.description() == DataDescription(("x", "y", "z"), 3, (8, 8), (0.1, 0.2, 0.3),
                                                   (1.0, 2.0, 3.0))
    X, _ = next(iter(loader))
    assert X.shape[1:] == loader.description().input_shape  # what the record says is what comes
    grey = FashionMNISTLoader(np.zeros((2, 5, 7), np.uint8), np.array([0, 9]), 2)
    assert grey.description() == DataDescription.from_dict(
        {"classes": FASHION_NAMES, "channels": 1, "size": [5, 7]})


GOOD = {"classes": ["a", "b", "c"], "channels": 3, "size": [28, 28], "mean": [0.5] * 3,
        "std": [0.25] * 3}


@pytest.mark.parametrize("changes, message", [
    ({"classes": []}, r"data classes must be a non-empty list of names, got \[\]"),
    ({"classes": ["a", 2]}, r"data classes must be a non-empty list of names, got \['a', 2\]"),
    ({"classes": "abc"}, r"data classes must be a non-empty list of names, got 'abc'"),
    ({"channels": 0}, r"data channels must be a positive integer, got 0"),
    ({"channels": 3.0}, r"data channels must be a positive integer, got 3\.0"),
    ({"channels": True}, r"data channels must be a positive integer, got True"),
    ({"size": [28]}, r"data size must be \[height, width\], two positive integers, got \[28\]"),
    ({"size": [28, 0]}, r"data size must be \[height, width\], two positive integers"),
    ({"size": [28, 28.5]}, r"data size must be \[height, width\], two positive integers"),
    ({"std": None}, r"data description has mean without std"),
    ({"mean": None}, r"data description has std without mean"),
    ({"mean": [0.5]}, r"data mean must be 3 numbers \(one per channel\), got \[0\.5\]"),
    ({"std": [0.2, 0.2, float("nan")]}, r"data std must be 3 numbers \(one per channel\)"),
    ({"mean": [0.5, "0.5", 0.5]}, r"data mean must be 3 numbers \(one per channel\)"),
    ({"std": [0.2, 0, 0.2]}, r"data std must be positive, got \[0\.2, 0, 0\.2\]"),
])
def test_each_bad_field_is_refused_with_a_sentence_naming_it(changes, message):
    with pytest.raises(ValueError, match="^" + message):
        DataDescription.from_dict(dict(GOOD, **changes))


@pytest.mark.parametrize("stored", [{"channels": 1, "size": [28, 28]}, ["a"], "data"])
def test_a_description_without_its_fields_is_refused(stored):
    with pytest.raises(ValueError, match=r"data description .* lacks classes, channels or size"):
        DataDescription.from_dict(stored)
