"""predict_files and ``gluon-resnet predict``: image files get the classes the trained
network gives the same images in training's own pipeline."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import mxnet as mx

from gluon_resnet.checkpoint import load_checkpoint
from gluon_resnet.cli import main
from gluon_resnet.config import TrainConfig
from gluon_resnet.data import (TEXT_LABELS, FashionMNISTLoader, load_data_image_folder,
                               load_fashion_mnist_arrays)
from gluon_resnet.evaluation import evaluate_run
from gluon_resnet.experiment import run_training
from gluon_resnet.models import get_model
from gluon_resnet.predict import predict_files

from helpers import DATA_DIR, made_run, needs_data, require_data, write_fashion_folder


def _probabilities(ckpt, loader, model="compact_resnet8_w32", num_classes=10):
    """The checkpoint's network on ``loader``'s batches: softmax outputs, ``(N, classes)``."""
    net = get_model(model, num_classes=num_classes)
    net.initialize()
    X, _ = next(iter(loader))
    net(X[:1])
    load_checkpoint(ckpt, net, restore_random_state=False)
    return np.concatenate([mx.nd.softmax(net(X), axis=1).asnumpy() for X, _ in loader])


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory):
    """A Fashion-MNIST checkpoint trained at 32x32 (one epoch on 300 images), and 12 test
    images written as PNG files."""
    require_data()
    tmp = tmp_path_factory.mktemp("fashion_run")
    config = TrainConfig(model="compact_resnet8_w32", resize=32, epochs=1, limit=300,
                         batch_size=50, lr=0.2, precision="fp32", data_root=DATA_DIR)
    _, out = run_training(config, out=str(tmp / "run"), quiet=True, progress=False)
    test_x = load_fashion_mnist_arrays(DATA_DIR)[2][:12]
    files = []
    for i, image in enumerate(test_x):
        files.append(str(tmp / "images" / ("%02d.png" % i)))
        os.makedirs(os.path.dirname(files[-1]), exist_ok=True)
        Image.fromarray(image).save(files[-1])
    return os.path.join(out, "checkpoint.ckpt"), files, test_x


@pytest.mark.slow
def test_fashion_mnist_checkpoint_predicts_as_its_network(fashion_run):
    ckpt, files, test_x = fashion_run
    expected = _probabilities(ckpt, FashionMNISTLoader(test_x, np.zeros(12, int), 5, resize=32))
    results = predict_files(ckpt, files[:5] + [os.path.dirname(files[0])], top_k=3)
    assert [r["path"] for r in results] == files[:5] + files  # a folder gives its files, sorted
    for r, p in zip(results, np.concatenate([expected[:5], expected])):
        top = np.argsort(-p)[:3]
        assert [t["class"] for t in r["top"]] == [TEXT_LABELS[j] for j in top]
        np.testing.assert_allclose([t["probability"] for t in r["top"]], p[top], rtol=1e-4,
                                   atol=1e-6)


@pytest.mark.slow
def test_the_command_prints_lines_and_json(fashion_run, capsys):
    ckpt, files, _ = fashion_run
    expected = predict_files(ckpt, files[:3], top_k=2)
    assert main(["predict", "--params", ckpt] + files[:3] + ["--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["%s\t%s %.4f\t%s %.4f" % (r["path"], r["top"][0]["class"],
                                               r["top"][0]["probability"],
                                               r["top"][1]["class"],
                                               r["top"][1]["probability"]) for r in expected]
    assert main(["predict", "--params", ckpt, files[0], "--json", "--top-k", "20"]) == 0
    document = json.loads(capsys.readouterr().out)
    top = document["predictions"][0]["top"]
    assert len(top) == 10 and sorted(t["class"] for t in top) == sorted(TEXT_LABELS)
    assert abs(sum(t["probability"] for t in top) - 1) < 1e-5
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top),
                                                     reverse=True)
    notes = os.path.join(os.path.dirname(files[0]), "notes.txt")
    with open(notes, "w") as f:
        f.write("text")
    assert main(["predict", "--params", ckpt, notes]) == 2
    assert "%s is not an image file" % notes in capsys.readouterr().err
    assert main(["predict", "--params", ckpt, notes + ".png"]) == 2
    assert "%s.png does not exist" % notes in capsys.readouterr().err
    os.remove(notes)
    empty = os.path.join(os.path.dirname(os.path.dirname(files[0])), "empty")
    os.makedirs(empty)
    assert main(["predict", "--params", ckpt, empty]) == 2
    assert "folder %s holds no image files" % empty in capsys.readouterr().err
    broken = os.path.join(empty, "broken.png")
    with open(broken, "wb") as f:
        f.write(b"not a png")
    assert main(["predict", "--params", ckpt, broken]) == 2
    assert "%s cannot be read as an image" % broken in capsys.readouterr().err


@needs_data
@pytest.mark.slow
def test_a_folder_run_predicts_with_its_classes_and_normalisation(tmp_path):
    # Three classes of Fashion-MNIST: the network trained on the folder has three outputs.
    root = str(tmp_path / "images")
    write_fashion_folder(root, train=200, test=40)
    classes = sorted(TEXT_LABELS)[:3]
    for split in ("train", "test"):
        for name in sorted(TEXT_LABELS)[3:]:
            shutil.rmtree(os.path.join(root, split, name))
    config = TrainConfig(data=root, model="compact_resnet8_w32", resize=20, epochs=1,
                         batch_size=20, lr=0.2, precision="fp32")
    _, out = run_training(config, out=str(tmp_path / "run"), quiet=True, progress=False)
    ckpt = os.path.join(out, "checkpoint.ckpt")
    _, test_iter = load_data_image_folder(root, 50, resize=20, notice=lambda line: None)
    assert test_iter.mean is not None  # the run normalised: predict must too
    expected = _probabilities(ckpt, test_iter, num_classes=3)
    results = predict_files(ckpt, [os.path.join(root, "test")], top_k=5)
    assert [[t["class"] for t in r["top"]] for r in results] == [
        [classes[j] for j in np.argsort(-p, kind="stable")] for p in expected]
    np.testing.assert_allclose([r["top"][0]["probability"] for r in results],
                               expected.max(1), rtol=1e-4, atol=1e-6)
    # gluon-resnet eval of a folder run: the folder's test set, its class names.
    lines = []
    result = evaluate_run(ckpt, out=lines.append, precision="fp32")
    accuracy = float((expected.argmax(1) == test_iter.labels).mean())
    assert abs(result["accuracy"] - accuracy) <= 1 / 12 and len(result["per_class"]) == 3
    assert "compact_resnet8_w32 on 12 test images (20x20)" in lines[1]
    assert [line.split()[0] for line in lines[2:5]] == ["ankle", "bag", "coat"]
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["num_classes"] == 3


def test_predict_says_once_that_it_converted_colour_to_grey_and_resized(tmp_path, capsys):
    run = str(tmp_path / "run")
    made_run(run)
    colour, grey = str(tmp_path / "red.jpg"), str(tmp_path / "grey.png")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(colour)
    Image.new("L", (28, 28), 90).save(grey)
    checkpoint = os.path.join(run, "checkpoint.ckpt")
    assert main(["predict", "--params", checkpoint, colour, grey]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "note: converted 1 of 2 images to grey and resized 1 of 2 images to 28x28, as the "
        "network was trained on grey 28x28 images"]
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == [colour, grey]
    assert main(["predict", "--params", checkpoint, grey]) == 0
    assert capsys.readouterr().err == ""  # nothing converted: nothing said


@pytest.mark.slow
def test_predict_names_every_undecodable_file_and_can_skip_them(fashion_run, tmp_path, capsys):
    ckpt, files, _ = fashion_run
    garbage, truncated = str(tmp_path / "garbage.png"), str(tmp_path / "truncated.png")
    with open(garbage, "wb") as f:
        f.write(b"not a png")
    with open(files[0], "rb") as f, open(truncated, "wb") as g:
        g.write(f.read()[:60])  # the header reads, the pixels do not
    argv = ["predict", "--params", ckpt, files[0], garbage, files[1], truncated]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "2 image files cannot be decoded" in err and "--skip-bad-images" in err
    assert "%s cannot be read as an image" % garbage in err
    assert "%s cannot be read as an image" % truncated in err
    assert main(argv + ["--skip-bad-images"]) == 0
    captured = capsys.readouterr()
    assert [line.split("\t")[0] for line in captured.out.splitlines()] == files[:2]
    assert "skipped 2 image files that cannot be decoded: %s, %s" % (garbage, truncated) \
        in captured.err
