"""Image folders: Fashion-MNIST written out as PNG files reads back exactly, trains,
resumes, shards; colour makes three channels; every bad input is named."""

import gc
import json
import os
import threading

import numpy as np
import pytest
from PIL import Image

from gluon_resnet.checkpoint import read_checkpoint_meta
from gluon_resnet.cli import build_parser, main
from gluon_resnet.config import RunError, TrainConfig
from gluon_resnet.data import (TEXT_LABELS, ArrayLoader, DatasetNotFoundError, FashionMNISTLoader,
                               ImageFolderError, StreamedImages, load_data_image_folder,
                               load_fashion_mnist_arrays)
from gluon_resnet.experiment import run_training

from helpers import DATA_DIR, needs_data, require_data, write_fashion_folder

CLASSES = sorted(TEXT_LABELS)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """300 training and 100 test images of Fashion-MNIST as train/ and test/ PNG folders."""
    require_data()
    root = str(tmp_path_factory.mktemp("fashion"))
    train_idx, test_idx = write_fashion_folder(root)
    return root, train_idx, test_idx


def _expected(x, y, idx):
    """The folder loader's order: classes sorted by name, files by name (= IDX index)."""
    order = sorted(idx, key=lambda i: (TEXT_LABELS[y[i]], i))
    return x[order], np.array([CLASSES.index(TEXT_LABELS[y[i]]) for i in order])


def _quiet(lines):
    return lines.append


def test_the_loader_holds_exactly_the_idx_images(fashion):
    root, train_idx, test_idx = fashion
    train_x, train_y, test_x, test_y = load_fashion_mnist_arrays(DATA_DIR)
    train_iter, test_iter = load_data_image_folder(root, 64, normalize=False, notice=_quiet([]))
    for loader, x, y, idx in ((train_iter, train_x, train_y, train_idx),
                              (test_iter, test_x, test_y, test_idx)):
        images, labels = _expected(x, y, idx)
        assert loader.images.dtype == np.uint8 and loader.images.shape == (len(idx), 28, 28)
        np.testing.assert_array_equal(loader.images, images)
        np.testing.assert_array_equal(loader.labels, labels)
    assert train_iter.classes == CLASSES and train_iter.shuffle and not test_iter.shuffle
    assert train_iter.description().to_dict() == {"classes": CLASSES, "channels": 1,
                                                  "size": [28, 28], "mean": None, "std": None}
    # The batches are those of the Fashion-MNIST loader over the same arrays.
    images, labels = _expected(train_x, train_y, train_idx)
    plain = FashionMNISTLoader(images, labels, 64, shuffle=True, resize=32)
    ours, _ = load_data_image_folder(root, 64, resize=32, normalize=False, notice=_quiet([]))
    for (a, ya), (b, yb) in zip(ours, plain):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
        np.testing.assert_array_equal(ya.asnumpy(), yb.asnumpy())


def test_normalisation_comes_from_the_training_images(fashion):
    root, train_idx, _ = fashion
    train_x = load_fashion_mnist_arrays(DATA_DIR)[0][train_idx] / 255.0
    train_iter, test_iter = load_data_image_folder(root, 400, notice=_quiet([]))
    data = train_iter.description()
    np.testing.assert_allclose(data.mean, [train_x.mean()], rtol=1e-9)
    np.testing.assert_allclose(data.std, [train_x.std()], rtol=1e-6)
    X, _ = next(iter(load_data_image_folder(root, 400, shuffle=False, notice=_quiet([]))[0]))
    assert abs(float(X.mean().asscalar())) < 1e-4 and abs(float(X.asnumpy().std()) - 1) < 1e-3
    given, _ = load_data_image_folder(root, 8, normalize=([0.5], [0.25]), notice=_quiet([]))
    assert given.description().mean == (0.5,) and test_iter.description() == data


def test_limit_is_balanced_and_shards_cover_the_data(fashion):
    root, _, _ = fashion
    small, _ = load_data_image_folder(root, 8, limit=50, normalize=False, notice=_quiet([]))
    assert small.num_examples == 50 and np.bincount(small.labels).tolist() == [5] * 10
    shards = [load_data_image_folder(root, 16, num_parts=3, part_index=i, seed=4,
                                     normalize=False, notice=_quiet([]))[0] for i in range(3)]
    seen = [np.concatenate([s.indices(2)]) for s in shards]
    assert sorted(np.concatenate(seen).tolist()) == list(range(300))
    assert [len(s) for s in seen] == [100, 100, 100]


@needs_data
def test_a_single_tree_splits_the_same_way_every_time(tmp_path):
    root = str(tmp_path / "tree")
    write_fashion_folder(root, train=200, layout="tree")
    first = load_data_image_folder(root, 8, val_fraction=0.25, normalize=False,
                                   notice=_quiet([]))
    again = load_data_image_folder(root, 8, val_fraction=0.25, normalize=False,
                                   notice=_quiet([]))
    train_iter, test_iter = first
    assert (train_iter.num_examples, test_iter.num_examples) == (150, 50)
    assert np.bincount(test_iter.labels).tolist() == [5] * 10  # stratified
    np.testing.assert_array_equal(train_iter.images, again[0].images)
    np.testing.assert_array_equal(test_iter.images, again[1].images)
    rows = {bytes(r) for r in train_iter.images.reshape(150, -1)}
    assert not rows & {bytes(r) for r in test_iter.images.reshape(50, -1)}


def test_streamed_images_give_the_same_batches(fashion):
    root, _, _ = fashion
    lines = []
    memory = load_data_image_folder(root, 64, resize=20, augment=True, seed=3, notice=lines.append)
    streamed = load_data_image_folder(root, 64, resize=20, augment=True, seed=3, memory_budget=1,
                                      notice=lines.append)
    assert isinstance(streamed[0].images, StreamedImages) and not lines
    assert streamed[0].description() == memory[0].description()
    for a, b in zip(memory, streamed):
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(xa.asnumpy(), xb.asnumpy())
            np.testing.assert_array_equal(ya.asnumpy(), yb.asnumpy())


@pytest.mark.slow
def test_train_through_run_training_and_resume_exactly(fashion, tmp_path):
    root, _, _ = fashion
    config = TrainConfig(data=root, model="compact_resnet8_w32", resize=None, epochs=2,
                         batch_size=64, lr=0.1, precision="fp32", augment=True)
    straight, out = run_training(config, out=str(tmp_path / "straight"), quiet=True,
                                 progress=False)
    first, out = run_training(TrainConfig(**dict(config.to_dict(), epochs=1)),
                              out=str(tmp_path / "resumed"), quiet=True, progress=False)
    ckpt = os.path.join(out, "checkpoint.ckpt")
    meta = read_checkpoint_meta(ckpt)
    with open(os.path.join(out, "config.json")) as f:
        stored = json.load(f)
    assert meta["data"] == stored["data"] and set(meta["data"]) == {
        "classes", "channels", "size", "mean", "std"}
    assert meta["data"]["classes"] == CLASSES and meta["data"]["channels"] == 1
    assert meta["data"]["size"] == [28, 28] and len(meta["data"]["mean"]) == 1
    assert meta["config"]["data"] == root and meta["config"]["num_classes"] == 10
    with pytest.raises(RunError, match=r"cannot change data when resuming"):
        run_training(resume=ckpt, overrides={"data": root + "-other", "epochs": 2}, quiet=True,
                     progress=False)
    resumed, _ = run_training(resume=ckpt, overrides={"epochs": 2}, quiet=True, progress=False)
    for a, b in zip(straight, resumed):
        assert (a["loss"], a["train_acc"], a["test_acc"]) == (b["loss"], b["train_acc"],
                                                              b["test_acc"])


@needs_data
def test_fashion_mnist_runs_store_their_data_too(tmp_path):
    config = TrainConfig(model="compact_resnet8_w32", resize=None, epochs=1, limit=100,
                         batch_size=50, precision="fp32", data_root=DATA_DIR)
    _, out = run_training(config, out=str(tmp_path / "run"), quiet=True, progress=False)
    assert read_checkpoint_meta(os.path.join(out, "checkpoint.ckpt"))["data"] == {
        "classes": list(TEXT_LABELS), "channels": 1, "size": [28, 28], "mean": None,
        "std": None}


def test_the_command_line_takes_the_folder_options(tmp_path, capsys):
    args = build_parser().parse_args(["train", "--data", "imgs", "--val-fraction", "0.2",
                                      "--skip-bad-images"])
    assert (args.data, args.val_fraction, args.skip_bad_images) == ("imgs", 0.2, True)
    missing = str(tmp_path / "nowhere")
    assert main(["train", "--data", missing, "--out", str(tmp_path / "run"),
                 "--precision", "fp32", "--no-progress"]) == 2
    assert "image folder %s does not exist" % missing in capsys.readouterr().err
    with pytest.raises(RunError, match=r"give data \(--data PATH\) too"):
        TrainConfig(val_fraction=0.2).validate()
    with pytest.raises(RunError, match=r"val_fraction must be a number in \[0, 1\), got 1.0"):
        TrainConfig(data="imgs", val_fraction=1.0).validate()
    with pytest.raises(SystemExit):
        main(["train", "--data", "imgs", "--val-fraction", "1"])
    assert "argument --val-fraction: must be a number in [0, 1)" in capsys.readouterr().err


def test_the_loader_checks_its_statistics():
    images, labels = np.zeros((4, 5, 5, 3), np.uint8), np.arange(4) % 2
    loader = FashionMNISTLoader(images, labels, 4, mean=[0.5, 0.5, 0.5], std=[0.5, 0.25, 1.0])
    X, _ = next(iter(loader))
    assert X.shape == (4, 3, 5, 5) and X[0, :, 0, 0].asnumpy().tolist() == [-1.0, -2.0, -0.5]
    with pytest.raises(ValueError, match=r"FashionMNISTLoader: mean and std must be given "
                       r"together"):
        FashionMNISTLoader(images, labels, 2, mean=[0.5] * 3)
    with pytest.raises(ValueError, match=r"one value per channel \(3\), got \[0.5\]"):
        FashionMNISTLoader(images, labels, 2, mean=[0.5], std=[0.2])
    with pytest.raises(ValueError, match=r"std must be positive"):
        FashionMNISTLoader(images, labels, 2, mean=[0.5] * 3, std=[0.2, 0, 0.2])


# ---------------------------------------------------------------------------
# Synthetic folders: colour, sizes, and every bad input
# ---------------------------------------------------------------------------

def _image(path, value=0, size=(8, 8), mode="L"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.RandomState(value)
    shape = size + ((3,) if mode == "RGB" else ())
    Image.fromarray(rng.randint(0, 256, size=shape).astype(np.uint8), mode).save(path)


def _two_classes(root, n=3, split=True, **kwargs):
    for s in (("train", "test") if split else ("",)):
        for c in ("cat", "dog"):
            for i in range(n):
                _image(os.path.join(root, s, c, "%d.png" % i), value=i + 10 * (c == "dog"),
                       **kwargs)
    return root


def test_one_colour_image_makes_three_channels(tmp_path):
    root = _two_classes(str(tmp_path / "d"))
    _image(os.path.join(root, "train", "dog", "colour.jpg"), value=7, mode="RGB")
    train_iter, test_iter = load_data_image_folder(root, 4, normalize=False, notice=_quiet([]))
    assert train_iter.images.shape == (7, 8, 8, 3) and test_iter.images.shape == (6, 8, 8, 3)
    gray = np.asarray(Image.open(os.path.join(root, "train", "cat", "0.png")))
    np.testing.assert_array_equal(train_iter.images[0], np.stack([gray] * 3, axis=-1))
    X, _ = next(iter(train_iter))
    assert X.shape == (4, 3, 8, 8)
    normalised, _ = load_data_image_folder(root, 4, notice=_quiet([]))
    data = normalised.description()
    assert data.channels == 3 and len(data.mean) == len(data.std) == 3


def test_bmp_files_read_and_val_is_the_test_set(tmp_path):
    root = str(tmp_path / "d")
    for c in ("a", "b"):
        _image(os.path.join(root, "train", c, "x.bmp"), value=1)
        _image(os.path.join(root, "val", c, "y.BMP"), value=2)
    train_iter, test_iter = load_data_image_folder(root, 2, normalize=False, notice=_quiet([]))
    assert (train_iter.num_examples, test_iter.num_examples) == (2, 2)
    assert train_iter.classes == ["a", "b"]


def test_sizes_must_agree_unless_resized(tmp_path):
    root = _two_classes(str(tmp_path / "d"))
    odd = os.path.join(root, "train", "dog", "odd.png")
    _image(odd, size=(10, 12))
    with pytest.raises(ImageFolderError, match=r"%s is 12x10 but .* is 8x8: images of "
                       r"different sizes need resize" % odd):
        load_data_image_folder(root, 4, notice=_quiet([]))
    train_iter, _ = load_data_image_folder(root, 4, resize=6, notice=_quiet([]))
    assert train_iter.images.shape == (7, 6, 6) and train_iter.resize is None
    assert train_iter.description().size == (6, 6)


def test_files_without_an_image_extension_get_one_notice(tmp_path):
    root = _two_classes(str(tmp_path / "d"))
    for name in ("README.txt", os.path.join("train", "cat", ".DS_Store"),
                 os.path.join("test", "dog", "notes.md")):
        with open(os.path.join(root, name), "w") as f:
            f.write("not an image")
    lines = []
    load_data_image_folder(root, 4, notice=lines.append)
    assert lines == ["ignored 3 files without an image extension (.png, .jpg, .jpeg, .bmp) "
                     "in %s" % root]


@pytest.mark.parametrize("content", [b"not a png at all",
                                     None])  # None: a real PNG cut in half
def test_an_image_that_cannot_be_decoded_is_named_or_skipped(tmp_path, content):
    root = _two_classes(str(tmp_path / "d"), size=(64, 64))
    bad = os.path.join(root, "train", "cat", "broken.png")
    if content is None:
        with open(os.path.join(root, "train", "cat", "0.png"), "rb") as f:
            data = f.read()
        content = data[:len(data) // 2]
    with open(bad, "wb") as f:
        f.write(content)
    with pytest.raises(ImageFolderError, match=r"^1 image file cannot be decoded; remove or "
                       r"replace it, or skip such files.*:\n  %s cannot be read as an image \("
                       % bad):
        load_data_image_folder(root, 4, notice=_quiet([]))
    lines = []
    train_iter, _ = load_data_image_folder(root, 4, skip_bad_images=True, notice=lines.append)
    assert train_iter.num_examples == 6
    assert lines == ["skipped 1 image file that cannot be decoded: %s" % bad]


def _break_images(root, count):
    """``count`` broken files in ``root``'s training classes, alternately garbage (the header
    fails) and a real PNG cut in half (the header reads, decoding fails); their paths."""
    with open(os.path.join(root, "train", "cat", "0.png"), "rb") as f:
        half = f.read()[:100]
    paths = []
    for i in range(count):
        path = os.path.join(root, "train", ("cat", "dog")[i % 2], "broken%02d.png" % i)
        with open(path, "wb") as f:
            f.write(b"not a png at all" if i % 4 < 2 else half)
        paths.append(path)
    return sorted(paths)


def test_every_undecodable_image_is_named_at_once(tmp_path):
    root = _two_classes(str(tmp_path / "d"), size=(64, 64))
    broken = _break_images(root, 2)
    with pytest.raises(ImageFolderError) as info:
        load_data_image_folder(root, 4, notice=_quiet([]))
    lines = str(info.value).splitlines()
    assert lines[0].startswith("2 image files cannot be decoded; remove or replace them")
    assert sorted(line.split(" cannot be read")[0].strip() for line in lines[1:]) == broken


def test_many_undecodable_images_are_named_up_to_a_limit(tmp_path):
    root = _two_classes(str(tmp_path / "d"), size=(64, 64))
    broken = _break_images(root, 23)
    with pytest.raises(ImageFolderError) as info:
        load_data_image_folder(root, 4, notice=_quiet([]))
    lines = str(info.value).splitlines()
    assert lines[0].startswith("23 image files cannot be decoded")
    assert len(lines) == 1 + 20 + 1 and lines[-1] == "  and 3 more"
    assert all(line.split(" cannot be read")[0].strip() in broken for line in lines[1:-1])
    notices = []
    load_data_image_folder(root, 4, skip_bad_images=True, notice=notices.append)
    assert notices[-1].startswith("skipped 23 image files that cannot be decoded: ")
    assert notices[-1].endswith(", and 3 more") and notices[-1].count("broken") == 20


def test_an_empty_class_folder_is_named(tmp_path):
    root = _two_classes(str(tmp_path / "d"))
    os.makedirs(os.path.join(root, "train", "empty"))
    with open(os.path.join(root, "train", "empty", "README.txt"), "w") as f:
        f.write("nothing here")
    with pytest.raises(ImageFolderError, match=r"class folder %s holds no images"
                       % os.path.join(root, "train", "empty")):
        load_data_image_folder(root, 4, notice=_quiet([]))


def test_a_test_class_that_is_not_a_training_class_is_named(tmp_path):
    root = _two_classes(str(tmp_path / "d"))
    _image(os.path.join(root, "test", "zebra", "z.png"))
    with pytest.raises(ImageFolderError, match=r"test class folder %s is not a training class; "
                       r"the training classes in .* are: cat, dog"
                       % os.path.join(root, "test", "zebra")):
        load_data_image_folder(root, 4, notice=_quiet([]))


def test_a_single_class_is_refused(tmp_path):
    root = str(tmp_path / "d")
    _image(os.path.join(root, "cat", "0.png"))
    _image(os.path.join(root, "cat", "1.png"))
    with pytest.raises(ImageFolderError, match=r"%s holds a single class \(cat\): a classifier "
                       r"needs at least two class folders" % root):
        load_data_image_folder(root, 4, val_fraction=0.5, notice=_quiet([]))


def test_an_empty_tree_is_refused(tmp_path):
    root = str(tmp_path / "d")
    os.makedirs(os.path.join(root, "train"))
    os.makedirs(os.path.join(root, "test"))
    with pytest.raises(ImageFolderError, match=r"%s holds no class folders"
                       % os.path.join(root, "train")):
        load_data_image_folder(root, 4, notice=_quiet([]))


def test_a_missing_folder_or_test_set_is_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"image folder .*nowhere does not exist"):
        load_data_image_folder(str(tmp_path / "nowhere"), 4)
    root = _two_classes(str(tmp_path / "tree"), split=False)
    with pytest.raises(ImageFolderError, match=r"has no train/ and test/ folders: pass "
                       r"val_fraction"):
        load_data_image_folder(root, 4)
    with pytest.raises(ValueError, match=r"val_fraction must be a positive number, got 0"):
        load_data_image_folder(root, 4, val_fraction=0)


def test_sixteen_bit_grayscale_keeps_its_top_bits(tmp_path):
    root = _two_classes(str(tmp_path / "d"))
    deep = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    Image.fromarray(deep).save(os.path.join(root, "train", "cat", "deep.png"))
    assert Image.open(os.path.join(root, "train", "cat", "deep.png")).mode.startswith("I")
    train_iter, _ = load_data_image_folder(root, 4, normalize=False, notice=_quiet([]))
    np.testing.assert_array_equal(train_iter.images[3], np.round(deep / 257.0).astype(np.uint8))


# ---------------------------------------------------------------------------
# Streamed images own their thread pool; folders are served by the generic loader
# ---------------------------------------------------------------------------

def _streamed(tmp_path):
    root = _two_classes(str(tmp_path / "d"))
    return load_data_image_folder(root, 4, memory_budget=1, normalize=False, notice=_quiet([]))


def _threads_started_by(read):
    """The threads whose names say they are a ``StreamedImages`` pool's, started by ``read()``."""
    before = set(threading.enumerate())
    read()
    return [t for t in set(threading.enumerate()) - before
            if t.name.startswith("StreamedImages")]


def test_closing_a_streamed_loader_ends_its_pool_threads(tmp_path):
    train_iter, test_iter = _streamed(tmp_path)
    assert type(train_iter) is ArrayLoader and repr(train_iter).startswith("ArrayLoader(")
    source = train_iter.images
    with train_iter:
        threads = _threads_started_by(lambda: next(iter(train_iter)))
        assert threads and all(t.is_alive() for t in threads)
    assert not any(t.is_alive() for t in threads)  # close() waits for them to end
    with pytest.raises(RuntimeError, match="shutdown"):
        source.pool.submit(int)
    with pytest.raises(ValueError, match=r"StreamedImages\(6 files, size=\(8, 8\), channels=1\) "
                       r"is closed: its images can no longer be read"):
        next(iter(train_iter))
    train_iter.close()  # twice: nothing more happens
    test_threads = _threads_started_by(lambda: next(iter(test_iter)))
    test_iter.close()
    assert test_threads and not any(t.is_alive() for t in test_threads)


def test_a_streamed_loader_that_is_dropped_shuts_its_pool_down(tmp_path):
    train_iter, _ = _streamed(tmp_path)
    next(iter(train_iter))
    pool = train_iter.images.pool
    pool.submit(int).result()  # open while the loader lives
    del train_iter
    gc.collect()
    with pytest.raises(RuntimeError, match="shutdown"):
        pool.submit(int)


def test_loader_options_are_checked_before_any_file_is_decoded(tmp_path):
    root = _two_classes(str(tmp_path / "d"))
    with open(os.path.join(root, "train", "cat", "broken.png"), "wb") as f:
        f.write(b"not a png")
    for option, words in ((dict(erase=2), r"erase must be a number in \[0, 1\], got 2"),
                          (dict(seed=-1), r"seed must be a non-negative integer, got -1"),
                          (dict(max_shift=-1), r"max_shift must be a non-negative integer")):
        with pytest.raises(ValueError, match=r"^load_data_image_folder: " + words):
            load_data_image_folder(root, 4, notice=_quiet([]), **option)


def test_the_generic_loader_names_classes_by_label_unless_told():
    images, labels = np.zeros((4, 5, 5), np.uint8), np.array([0, 2, 1, 2])
    assert ArrayLoader(images, labels, 2).classes == ["0", "1", "2"]
    assert ArrayLoader(images, labels, 2, classes=["a", "b", "c"]).classes == ["a", "b", "c"]
    fashion = FashionMNISTLoader(images, labels, 2)
    assert isinstance(fashion, ArrayLoader) and fashion.classes == list(TEXT_LABELS)
    assert repr(fashion).startswith("FashionMNISTLoader(")
    with fashion:  # arrays in memory: nothing to close
        next(iter(fashion))


def test_an_undecodable_training_set_names_the_folder_not_a_file(tmp_path):
    root = tmp_path / "shoes"
    for split, name in (("train", "a"), ("train", "b"), ("test", "a"), ("test", "b")):
        (root / split / name).mkdir(parents=True)
        if split == "train":
            (root / split / name / "broken.png").write_bytes(b"not a picture")
        else:
            Image.new("L", (8, 8)).save(root / split / name / "fine.png")
    with pytest.raises(ImageFolderError) as info:
        load_data_image_folder(str(root), 2, skip_bad_images=True, notice=lambda line: None)
    assert str(info.value) == "%s: none of its training images could be decoded" % root
