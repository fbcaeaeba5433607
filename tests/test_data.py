"""Fashion-MNIST: finding, reading and checking the files, batches, labels, pictures.

Bad files are synthetic IDX files written into ``tmp_path``; the tests marked
with ``real`` read Debian's copy in /usr/share/datasets/fashion-mnist and are
skipped when it is absent.
"""

import gzip
import os
import struct

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mxnet as mx  # noqa: E402

from gluon_resnet import data  # noqa: E402
from gluon_resnet.data import (  # noqa: E402
    AUGMENT, SHUFFLE, DatasetError, DatasetNotFoundError, FashionMNISTLoader, FILE_NAMES,
    balanced_subset, epoch_rng,
    find_fashion_mnist, get_fashion_mnist_labels, load_data_fashion_mnist,
    load_fashion_mnist_arrays, read_idx)
from gluon_resnet.plotting import show_fashion_mnist  # noqa: E402
from helpers import DATA_DIR  # noqa: E402

real = pytest.mark.skipif(
    not all(os.path.isfile(os.path.join(DATA_DIR, n + ".gz")) for n in FILE_NAMES.values()),
    reason="Debian's Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


# ---------------------------------------------------------------------------
# Synthetic IDX files
# ---------------------------------------------------------------------------

def idx_bytes(records, magic=None):
    """An IDX file's bytes: magic 2051 for 3-d records, 2049 for 1-d, unless given."""
    records = np.asarray(records, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 | records.ndim
    return (struct.pack(">I", magic) + struct.pack(">%dI" % records.ndim, *records.shape)
            + records.tobytes())


def synthetic(n, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8), np.arange(n) % 10


def write_dataset(folder, n_train=60, n_test=20, compress=True, **replace):
    """Write the four files into ``folder``; ``replace[role]`` = bytes to write instead."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test = synthetic(n_train, 1), synthetic(n_test, 2)
    content = {"train_images": idx_bytes(train[0]), "train_labels": idx_bytes(train[1]),
               "test_images": idx_bytes(test[0]), "test_labels": idx_bytes(test[1])}
    content.update(replace)
    paths = {}
    for role, name in FILE_NAMES.items():
        body = gzip.compress(content[role], 1) if compress else content[role]
        paths[role] = folder / (name + (".gz" if compress else ""))
        paths[role].write_bytes(body)
    return paths


def link_real(folder, names=None):
    """``folder`` with symlinks to Debian's files (``names``: role -> file name to use)."""
    folder.mkdir(parents=True, exist_ok=True)
    for role, name in FILE_NAMES.items():
        target = (names or {}).get(role, name) + ".gz"
        os.symlink(os.path.join(DATA_DIR, target), folder / (name + ".gz"))
    return folder


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No real folder is searched: env vars and the system folder point into tmp_path."""
    monkeypatch.delenv("GLUON_RESNET_DATA", raising=False)
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxnet_home"))
    monkeypatch.setattr(data.files, "SYSTEM_DATA_DIR", str(tmp_path / "system"))
    return tmp_path


# ---------------------------------------------------------------------------
# Bad files
# ---------------------------------------------------------------------------

_images, _labels = synthetic(60)
_good_images = idx_bytes(_images)

BAD_FILES = {
    # case: (role, bytes or compressed bytes, compress?, pattern of the message)
    "truncated IDX": ("train_images", _good_images[:-100], True, r"is truncated.*60 images"),
    "truncated header": ("train_labels", idx_bytes(_labels)[:6], True, r"is truncated.*header"),
    "truncated gzip": ("train_images", gzip.compress(_good_images)[:500], False,
                       r"not a valid gzip file"),
    "bad gzip": ("train_images", b"\x1f\x8b\x08\x00" + b"garbage" * 50, False,
                 r"not a valid gzip file"),
    "wrong magic": ("train_images", idx_bytes(_images, magic=0x0D03), True,
                    r"magic number 3331.*2051"),
    "foreign file": ("test_labels", b"<html>404 Not Found</html>", False, r"not an IDX file"),
    "labels as images": ("train_images", idx_bytes(_labels), True,
                         r"IDX labels file \(magic number 2049\).*swapped"),
    "images as labels": ("train_labels", _good_images, True, r"IDX images file.*swapped"),
    "wrong dimensions": ("test_images", idx_bytes(np.zeros((20, 32, 32))), True,
                         r"32x32 images.*28x28"),
    "label out of range": ("train_labels", idx_bytes(np.r_[_labels[:-1], 10]), True,
                           r"label 10 at record 59.*0\.\.9"),
    "trailing bytes": ("train_labels", idx_bytes(_labels) + b"\0\0\0", True,
                       r"3 bytes after the 60 labels"),
    "count mismatch": ("test_labels", idx_bytes(np.arange(19) % 10), True,
                       r"holds 20 images but .*t10k-labels.* holds 19 labels"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_refused_naming_it(tmp_path, case):
    role, body, compress, pattern = BAD_FILES[case]
    body = gzip.compress(body, 1) if compress else body
    paths = write_dataset(tmp_path, **{role: b""})
    paths[role].write_bytes(body)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_fashion_mnist_arrays(tmp_path, verify=False, download=False)
    assert str(paths[role]) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_good_synthetic_files_load_gzip_and_raw_alike(tmp_path):
    write_dataset(tmp_path / "gz")
    gz = load_fashion_mnist_arrays(tmp_path / "gz", verify=False, download=False)
    write_dataset(tmp_path / "raw", compress=False)
    raw = load_fashion_mnist_arrays(tmp_path / "raw", verify=False, download=False)
    images, labels = synthetic(60, 1)
    for a, b in zip(gz, raw):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(gz[0], images)
    np.testing.assert_array_equal(gz[1], labels)
    assert gz[0].dtype == np.uint8 and gz[0].shape == (60, 28, 28) and gz[3].shape == (20,)


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    path = tmp_path / "labels-without-suffix"
    path.write_bytes(gzip.compress(idx_bytes(_labels)))
    np.testing.assert_array_equal(read_idx(path, "labels"), _labels)
    with pytest.raises(ValueError, match="kind must be 'images' or 'labels'"):
        read_idx(path, "pictures")


def test_verify_refuses_wrong_counts_and_wrong_content(tmp_path):
    # The official counts, but not the official bytes: only the checksum can tell.
    paths = write_dataset(tmp_path, n_train=60000, n_test=10000, compress=False)
    with pytest.raises(DatasetError, match=r"SHA-256.*verify=False") as info:
        load_fashion_mnist_arrays(tmp_path, download=False)
    assert str(paths["train_images"]) in str(info.value)
    # A test-sized file in the training slot: the count tells.
    paths["train_images"].write_bytes(idx_bytes(np.zeros((10000, 28, 28))))
    with pytest.raises(DatasetError, match=r"holds 10000 images.*train set has 60000.*swapped"):
        load_fashion_mnist_arrays(tmp_path, download=False)
    # Custom data sets load with verify=False.
    paths["train_images"].write_bytes(idx_bytes(np.zeros((60000, 28, 28))))
    assert len(load_fashion_mnist_arrays(tmp_path, verify=False, download=False)[0]) == 60000


# ---------------------------------------------------------------------------
# Finding the files
# ---------------------------------------------------------------------------

def test_missing_files_message_lists_folders_files_and_remedy(isolated, monkeypatch):
    env_dir = isolated / "env"
    write_dataset(env_dir)
    os.remove(env_dir / "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setenv("GLUON_RESNET_DATA", str(env_dir))
    with pytest.raises(DatasetNotFoundError) as info:
        find_fashion_mnist(download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for folder in (env_dir, isolated / "mxnet_home" / "datasets" / "fashion-mnist",
                   isolated / "system"):
        assert str(folder) in message
    assert "missing t10k-labels-idx1-ubyte" in message and "does not exist" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "GLUON_RESNET_DATA" in message and "root=" in message
    for name in FILE_NAMES.values():
        assert name + ".gz" in message
    assert "download=False" in message


def test_offline_download_failure_is_explained(isolated, monkeypatch):
    def offline(folder):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(data.files, "download_with_mxnet", offline)
    with pytest.raises(DatasetNotFoundError, match=r"(?s)failed \(offline\?\).*"
                       r"Network is unreachable.*apt-get install dataset-fashion-mnist"):
        load_data_fashion_mnist(256)


def test_download_is_used_only_when_nothing_is_found(isolated, monkeypatch):
    calls = []

    def fake_download(folder):
        calls.append(folder)
        write_dataset(type(isolated)(folder))

    monkeypatch.setattr(data.files, "download_with_mxnet", fake_download)
    files = find_fashion_mnist()
    target = str(isolated / "mxnet_home" / "datasets" / "fashion-mnist")
    assert calls == [target] and os.path.dirname(files.train_images) == target
    find_fashion_mnist()  # now found in $MXNET_HOME: no second download
    assert len(calls) == 1


def test_explicit_root_must_hold_the_files(isolated, monkeypatch):
    write_dataset(isolated / "env")
    monkeypatch.setenv("GLUON_RESNET_DATA", str(isolated / "env"))
    write_dataset(isolated / "partial")
    os.remove(isolated / "partial" / "train-labels-idx1-ubyte.gz")
    os.remove(isolated / "partial" / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DatasetNotFoundError,
                       match=r"partial.*missing train-labels-idx1-ubyte, t10k-images-idx3-ubyte"):
        find_fashion_mnist(isolated / "partial")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        find_fashion_mnist(isolated / "nowhere")


@real
def test_search_order(isolated, monkeypatch):
    # Pretend Debian's folder is the system one, and offer copies everywhere else.
    monkeypatch.setattr(data.files, "SYSTEM_DATA_DIR", DATA_DIR)
    root = link_real(isolated / "root")
    env = link_real(isolated / "env")
    home = link_real(isolated / "mxnet_home" / "datasets" / "fashion-mnist")
    monkeypatch.setenv("GLUON_RESNET_DATA", str(env))

    def folder(**kw):
        return os.path.dirname(find_fashion_mnist(download=False, **kw).train_images)

    assert folder(root=str(root)) == str(root)
    assert folder() == str(env)
    monkeypatch.delenv("GLUON_RESNET_DATA")
    assert folder() == str(home)
    os.remove(home / "train-images-idx3-ubyte.gz")  # incomplete folders do not count
    assert folder() == DATA_DIR
    monkeypatch.setenv("GLUON_RESNET_DATA", str(env))
    assert load_fashion_mnist_arrays(download=False)[0].shape == (60000, 28, 28)


@real
def test_swapped_train_and_test_files_are_refused(tmp_path):
    swap = {"train_images": "t10k-images-idx3-ubyte", "test_images": "train-images-idx3-ubyte"}
    link_real(tmp_path, swap)
    with pytest.raises(DatasetError, match=r"train-images.*holds 10000 images.*swapped"):
        load_fashion_mnist_arrays(tmp_path, download=False)


@real
def test_uncompressed_real_files_work(tmp_path):
    for name in FILE_NAMES.values():
        with gzip.open(os.path.join(DATA_DIR, name + ".gz")) as f:
            (tmp_path / name).write_bytes(f.read())
    raw = load_fashion_mnist_arrays(tmp_path, download=False)  # checksums verified
    for a, b in zip(raw, load_fashion_mnist_arrays(DATA_DIR)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# The real data set
# ---------------------------------------------------------------------------

@real
def test_real_arrays_shapes_balance_and_cache():
    data.idx._CACHE.clear()
    first = load_fashion_mnist_arrays(DATA_DIR)
    second = load_fashion_mnist_arrays(DATA_DIR)
    assert all(a is b for a, b in zip(first, second))  # decoded once
    train_x, train_y, test_x, test_y = first
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert train_x.dtype == test_x.dtype == train_y.dtype == np.uint8
    assert np.bincount(train_y).tolist() == [6000] * 10
    assert np.bincount(test_y).tolist() == [1000] * 10
    assert not train_x.flags.writeable  # the cache cannot be corrupted by a caller


@real
def test_real_batches_match_d2lzh():
    from mxnet.gluon.data.vision import transforms

    train_iter, test_iter = load_data_fashion_mnist(256, resize=96, root=DATA_DIR)
    assert len(train_iter) == 235 and train_iter.num_examples == 60000
    X, y = next(iter(train_iter))
    assert X.shape == (256, 1, 96, 96) and X.dtype == np.float32
    assert y.shape == (256,) and y.dtype == np.int32
    x = X.asnumpy()
    assert x.min() >= 0 and x.max() <= 1 and x.max() == 1
    # Same values as d2lzh's Resize(96) + ToTensor() on the first test images.
    X, y = next(iter(test_iter))
    _, _, test_x, test_y = load_fashion_mnist_arrays(DATA_DIR)
    book = transforms.Compose([transforms.Resize(96), transforms.ToTensor()])
    for i in range(4):
        expected = book(mx.nd.array(test_x[i][:, :, None], dtype=np.uint8))
        np.testing.assert_array_equal(X[i].asnumpy(), expected.asnumpy())
    np.testing.assert_array_equal(y.asnumpy(), test_y[:256])


@real
def test_real_last_batch_keep_and_discard():
    _, test_iter = load_data_fashion_mnist(256, root=DATA_DIR)
    sizes = [X.shape[0] for X, _ in test_iter]
    assert len(sizes) == len(test_iter) == 40 and sizes[-1] == 10000 - 39 * 256
    discard = FashionMNISTLoader(test_iter.images, test_iter.labels, 256, last_batch="discard")
    assert len(discard) == 39 and [X.shape[0] for X, _ in discard][-1] == 256


@real
def test_real_limit_is_reproducible_and_balanced():
    a, a_test = load_data_fashion_mnist(32, root=DATA_DIR, limit=1000)
    b, _ = load_data_fashion_mnist(32, root=DATA_DIR, limit=1000, seed=5)
    np.testing.assert_array_equal(a.images, b.images)  # the subset ignores the shuffling seed
    assert a.num_examples == 1000 and np.bincount(a.labels).tolist() == [100] * 10
    assert a_test.num_examples == 1000 // 6
    counts = np.bincount(a_test.labels)
    assert counts.max() - counts.min() == 1
    _, small = load_data_fashion_mnist(32, root=DATA_DIR, limit=3, test_limit=50)
    assert np.bincount(small.labels).tolist() == [5] * 10


# ---------------------------------------------------------------------------
# The loader's mechanics (synthetic arrays)
# ---------------------------------------------------------------------------

def test_balanced_subset_is_nested_and_balanced():
    labels = np.random.RandomState(3).randint(0, 10, size=5000)
    small, large = balanced_subset(labels, 95), balanced_subset(labels, 500)
    assert set(small) <= set(large) and len(small) == 95 and len(large) == 500
    assert np.bincount(labels[small]).tolist() == [10] * 5 + [9] * 5
    assert np.array_equal(balanced_subset(labels, 95), small)
    assert len(balanced_subset(labels, 10 ** 6)) == 5000


def _labels_seen(loader):
    return np.concatenate([y.asnumpy() for _, y in loader])


def test_shuffle_order_depends_only_on_seed_and_epoch():
    images, labels = synthetic(100)
    labels = np.arange(100)  # label = index, so batches reveal the order
    loader = FashionMNISTLoader(images, labels, 16, shuffle=True, seed=7)
    epoch0, epoch1 = _labels_seen(loader), _labels_seen(loader)
    assert loader.epoch == 2
    assert sorted(epoch0) == list(range(100)) and not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(epoch0, epoch_rng(7, 0, SHUFFLE).permutation(100))
    resumed = FashionMNISTLoader(images, labels, 16, shuffle=True, seed=7)
    resumed.epoch = 1
    np.testing.assert_array_equal(_labels_seen(resumed), epoch1)
    other_seed = FashionMNISTLoader(images, labels, 16, shuffle=True, seed=8)
    assert not np.array_equal(_labels_seen(other_seed), epoch0)
    # Seed 8 does not replay seed 7 one epoch later (as RandomState(seed + epoch) did).
    assert not np.array_equal(_labels_seen(other_seed), epoch1)


def test_seeds_epochs_and_streams_never_share_draws():
    draws = {(seed, epoch, stream): tuple(epoch_rng(seed, epoch, stream).integers(0, 2 ** 31, 4))
             for seed in range(3) for epoch in range(3) for stream in (SHUFFLE, AUGMENT)}
    assert len(set(draws.values())) == len(draws)


def test_shards_draw_their_own_augmentation_and_together_make_one_process():
    images, labels = synthetic(60)
    whole = FashionMNISTLoader(images, labels, 10, shuffle=True, seed=3, augment=True,
                               max_shift=2)
    shards = [FashionMNISTLoader(images, labels, 5, shuffle=True, seed=3, augment=True,
                                 max_shift=2, num_parts=2, part_index=r, equal_parts=True)
              for r in range(2)]
    a0, a1 = (s.augmentation(4) for s in shards)
    assert a0.shape == a1.shape == (30, 6) and not np.array_equal(a0, a1)
    # Each example's draw is the one a single process gives it in that epoch.
    by_example = dict(zip(whole.indices(4), map(tuple, whole.augmentation(4))))
    for shard, affine in zip(shards, (a0, a1)):
        assert [by_example[i] for i in shard.indices(4)] == list(map(tuple, affine))
    unshuffled = FashionMNISTLoader(images, labels, 16)
    np.testing.assert_array_equal(_labels_seen(unshuffled), labels)


@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_are_disjoint_and_cover_the_data(shuffle):
    images, _ = synthetic(103)
    labels = np.arange(103)
    shards = [FashionMNISTLoader(images, labels, 10, shuffle=shuffle, num_parts=4, part_index=i)
              for i in range(4)]
    assert [s.num_examples for s in shards] == [26, 26, 26, 25]
    seen = [_labels_seen(s) for s in shards]
    assert [len(s) for s in seen] == [26, 26, 26, 25]
    assert sorted(np.concatenate(seen)) == list(range(103))
    # Every epoch again, with a new split when shuffling.
    again = [_labels_seen(s) for s in shards]
    assert sorted(np.concatenate(again)) == list(range(103))
    assert shuffle != np.array_equal(seen[0], again[0])


def test_loader_batches_resize_and_context():
    images, labels = synthetic(10)
    loader = FashionMNISTLoader(images, labels, 4, resize=14, ctx=mx.cpu())
    batches = list(loader)
    assert [X.shape for X, _ in batches] == [(4, 1, 14, 14)] * 2 + [(2, 1, 14, 14)]
    X, y = batches[0]
    plain = next(iter(FashionMNISTLoader(images, labels, 4)))[0].asnumpy()
    np.testing.assert_allclose(plain[:, 0], images[:4] / 255.0, rtol=1e-6)
    assert X.context == mx.cpu() and y.asnumpy().tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(batch_size=0), "batch_size must be a positive integer, got 0"),
    (dict(batch_size=256, resize=-1), "resize must be a positive integer, got -1"),
    (dict(batch_size=256, resize=2.5), "resize must be a positive integer, got 2.5"),
    (dict(batch_size=256, limit=0), "limit must be a positive integer, got 0"),
    (dict(batch_size=256, test_limit=True), "test_limit must be a positive integer"),
    (dict(batch_size=256, num_parts=2, part_index=2), "part_index must be an integer from 0"),
])
def test_load_data_validates_arguments_before_reading(isolated, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_data_fashion_mnist(**kwargs)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(last_batch="rollover"), "last_batch must be 'keep' or 'discard'"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(images=np.zeros((3, 28, 28))), "images must be a uint8 array"),
    (dict(labels=np.zeros(2)), r"labels must have shape \(3,\)"),
])
def test_loader_validates_arguments(kwargs, pattern):
    args = dict(images=np.zeros((3, 28, 28), np.uint8), labels=np.zeros(3), batch_size=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        FashionMNISTLoader(**args)


# ---------------------------------------------------------------------------
# Labels and pictures
# ---------------------------------------------------------------------------

def test_text_labels():
    assert get_fashion_mnist_labels([0, 9, 5]) == ["t-shirt", "ankle boot", "sandal"]
    assert get_fashion_mnist_labels(mx.nd.array([1, 2, 3, 4, 6, 7, 8])) == [
        "trouser", "pullover", "dress", "coat", "shirt", "sneaker", "bag"]
    with pytest.raises(ValueError, match="labels are 0..9, got 10"):
        get_fashion_mnist_labels([10])


def test_show_fashion_mnist_draws_one_titled_axis_per_image():
    import matplotlib.pyplot as plt

    images, labels = synthetic(5)
    fig = show_fashion_mnist(mx.nd.array(images[:, None]), mx.nd.array(labels))
    try:
        assert len(fig.axes) == 5
        assert [ax.get_title() for ax in fig.axes] == get_fashion_mnist_labels(labels)
        assert fig.axes[0].images[0].get_array().shape == (28, 28)
    finally:
        plt.close(fig)
    fig = show_fashion_mnist(images[:1], ["bag"])
    assert [ax.get_title() for ax in fig.axes] == ["bag"]
    plt.close(fig)
    with pytest.raises(ValueError, match="as many labels as images"):
        show_fashion_mnist(images[:2], ["bag"])


def test_augmentation_flips_and_shifts_exactly_and_reproducibly():
    images = np.zeros((64, 8, 8), np.uint8)
    images[:, 2, 1] = 255
    loader = FashionMNISTLoader(images, np.zeros(64, int), 64, augment=True, max_shift=1, seed=5)
    first = next(iter(loader))[0].asnumpy()
    loader.epoch = 0
    again = next(iter(loader))[0].asnumpy()
    np.testing.assert_array_equal(first, again)
    positions = set()
    for x in first:
        hot = np.argwhere(x[0] > 0.99)
        assert len(hot) == 1 and np.isclose(x.sum(), 1.0, atol=1e-4)  # moved, not blurred
        positions.add(tuple(hot[0]))
    rows = {r for r, _ in positions}
    cols = {c for _, c in positions}
    assert rows == {1, 2, 3} and cols == {0, 1, 2, 5, 6, 7}  # shifted by -1..1, some flipped
    assert not np.array_equal(first, next(iter(loader))[0].asnumpy())  # a new epoch, new draws


def test_max_shift_zero_flips_real_images_only():
    if not os.path.isdir(DATA_DIR):
        pytest.skip("Fashion-MNIST is not installed")
    from gluon_resnet import load_data_fashion_mnist

    train_iter, _ = load_data_fashion_mnist(64, limit=200, shuffle=False, augment=True,
                                            max_shift=0)
    assert train_iter.max_shift == 0
    plain_iter, _ = load_data_fashion_mnist(64, limit=200, shuffle=False)
    X, plain = next(iter(train_iter))[0].asnumpy(), next(iter(plain_iter))[0].asnumpy()
    same = [np.allclose(a, b, atol=1e-5) for a, b in zip(X, plain)]
    mirrored = [np.allclose(a, b[:, :, ::-1], atol=1e-5) for a, b in zip(X, plain)]
    assert all(s or m for s, m in zip(same, mirrored))  # never shifted
    assert 10 < sum(mirrored) < 54  # about half flipped


def test_random_erasing_blacks_out_one_rectangle_of_the_drawn_size():
    images = np.full((200, 12, 10), 255, np.uint8)
    loader = FashionMNISTLoader(images, np.zeros(200, int), 200, erase=0.5, seed=7)
    boxes = loader.erasing(0)
    X = next(iter(loader))[0].asnumpy()[:, 0]
    erased = boxes[:, 2] > 0
    assert 70 < erased.sum() < 130  # about half, at probability 0.5
    for x, (top, left, h, w) in zip(X, boxes):
        expected = np.ones((12, 10), np.float32)
        expected[top:top + h, left:left + w] = 0
        np.testing.assert_array_equal(x, expected)
    area = boxes[erased, 2] * boxes[erased, 3] / 120.0
    assert area.min() >= 0.01 and area.max() <= 0.5  # 2-40% of the image, after rounding
    assert (boxes[erased, 0] + boxes[erased, 2] <= 12).all()
    assert (boxes[erased, 1] + boxes[erased, 3] <= 10).all()
    loader.epoch = 0
    np.testing.assert_array_equal(next(iter(loader))[0].asnumpy()[:, 0], X)  # reproducible
    assert not np.array_equal(loader.erasing(1), boxes)  # a new epoch, new rectangles
    # Its own stream: turning erasing on leaves the flips and shifts as they were.
    flips = FashionMNISTLoader(images, np.zeros(200, int), 200, augment=True, seed=7)
    both = FashionMNISTLoader(images, np.zeros(200, int), 200, augment=True, seed=7, erase=0.5)
    np.testing.assert_array_equal(flips.augmentation(0), both.augmentation(0))


def test_erasing_shards_erase_as_one_process():
    images = np.full((60, 8, 8), 255, np.uint8)
    whole = FashionMNISTLoader(images, np.zeros(60, int), 10, shuffle=True, seed=3, erase=0.7)
    by_example = dict(zip(whole.indices(2), map(tuple, whole.erasing(2))))
    for r in range(2):
        shard = FashionMNISTLoader(images, np.zeros(60, int), 5, shuffle=True, seed=3,
                                   erase=0.7, num_parts=2, part_index=r)
        assert [by_example[i] for i in shard.indices(2)] == list(map(tuple, shard.erasing(2)))
