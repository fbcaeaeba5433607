"""Reading Fashion-MNIST's IDX files safely, subsets, and the data set's facts.

Our own IDX parser (``read_idx``) checks magic numbers, sizes, lengths and
labels, and ``load_fashion_mnist_arrays`` checks the SHA-256 of the content:
a truncated, corrupt, swapped or foreign file raises ``DatasetError`` naming
the file, so nothing trains on garbage.

References
----------
Xiao, Rasul, Vollgraf. "Fashion-MNIST: a Novel Image Dataset for Benchmarking
Machine Learning Algorithms", arXiv 1708.07747, 2017.
"""

import collections
import gzip
import hashlib
import os
import struct
import zlib

import numpy as np

from .._mxnet import mx
from ..validate import positive_int
from .files import FILE_NAMES, find_fashion_mnist

__all__ = ["DatasetError", "read_idx", "load_fashion_mnist_arrays", "balanced_subset",
           "get_fashion_mnist_labels", "TEXT_LABELS", "NUM_CLASSES", "SUBSET_SEED"]

#: SHA-256 of each file's decompressed content (the official release).
SHA256 = {
    "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

NUM_EXAMPLES = {"train": 60000, "test": 10000}
NUM_CLASSES = 10
IMAGE_SIZE = (28, 28)

#: d2lzh's names of the ten classes, in label order.
TEXT_LABELS = ("t-shirt", "trouser", "pullover", "dress", "coat",
               "sandal", "shirt", "sneaker", "bag", "ankle boot")

#: Seed of the permutation that chooses a ``limit`` subset (fixed on purpose:
#: runs with different shuffling seeds still train on the same images).
SUBSET_SEED = 0

# IDX header: magic number = 0x0000 <dtype byte> <number of dimensions>.
_IDX_UBYTE = 0x08
_IDX_NDIM = {"images": 3, "labels": 1}
_IDX_MAGIC = {kind: (_IDX_UBYTE << 8) | ndim for kind, ndim in _IDX_NDIM.items()}  # 2051, 2049
_GZIP_MAGIC = b"\x1f\x8b"


class DatasetError(ValueError):
    """A data file exists but is not what it should be (truncated, corrupt, swapped, foreign)."""


def _file_bytes(path):
    """The file's content, decompressed if it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            "%s is not a valid gzip file (%s). It is corrupt or incomplete: delete it and "
            "get it again." % (path, exc)) from None


def _parse_idx(data, path, kind):
    """Check an IDX file's header, length and values; return its records as uint8."""
    ndim = _IDX_NDIM[kind]
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise DatasetError(
            "%s is not an IDX file (it does not start with two zero bytes); expected "
            "Fashion-MNIST %s (IDX magic number %d)." % (path, kind, _IDX_MAGIC[kind]))
    magic = struct.unpack(">I", data[:4])[0]
    if magic != _IDX_MAGIC[kind]:
        other = [k for k, m in _IDX_MAGIC.items() if m == magic]
        if other:
            raise DatasetError(
                "%s is an IDX %s file (magic number %d) where %s (magic number %d) are "
                "expected: are the images and labels files swapped?"
                % (path, other[0], magic, kind, _IDX_MAGIC[kind]))
        raise DatasetError(
            "%s has IDX magic number %d (0x%08x: type byte 0x%02x, %d dimensions), but "
            "Fashion-MNIST %s have %d (unsigned bytes, %d dimensions)."
            % (path, magic, magic, data[2], data[3], kind, _IDX_MAGIC[kind], ndim))
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError("%s is truncated: it ends inside its %d-byte IDX header (%d bytes)."
                           % (path, header, len(data)))
    dims = struct.unpack(">%dI" % ndim, data[4:header])
    if kind == "images" and dims[1:] != IMAGE_SIZE:
        raise DatasetError("%s holds %dx%d images; Fashion-MNIST images are %dx%d."
                           % ((path,) + dims[1:] + IMAGE_SIZE))
    expected = header + int(np.prod(dims))
    if len(data) < expected:
        raise DatasetError(
            "%s is truncated: its header declares %d %s (%d bytes in all) but it holds "
            "%d bytes. Delete it and get it again." % (path, dims[0], kind, expected, len(data)))
    if len(data) > expected:
        raise DatasetError(
            "%s has %d bytes after the %d %s its header declares: it is not a clean IDX file."
            % (path, len(data) - expected, dims[0], kind))
    records = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    if kind == "labels" and records.size and records.max() >= NUM_CLASSES:
        bad = int(np.flatnonzero(records >= NUM_CLASSES)[0])
        raise DatasetError("%s holds label %d at record %d; Fashion-MNIST labels are 0..%d."
                           % (path, records[bad], bad, NUM_CLASSES - 1))
    return records


_CACHE = collections.OrderedDict()  # (real path, kind, mtime, size) -> (records, sha256)
_CACHE_SIZE = 8


def _read(path, kind):
    """``(records, sha256 of the decompressed content)``, cached per file version."""
    if kind not in _IDX_NDIM:
        raise ValueError("kind must be 'images' or 'labels', got %r." % (kind,))
    path = os.fspath(path)
    st = os.stat(path)
    key = (os.path.realpath(path), kind, st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        data = _file_bytes(path)
        _CACHE[key] = (_parse_idx(data, path, kind), hashlib.sha256(data).hexdigest())
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return _CACHE[key]


def read_idx(path, kind):
    """Read one Fashion-MNIST IDX file (gzip-compressed or not).

    Compression is recognised by the gzip magic bytes, not by the file name.
    The header must carry the magic number of ``kind`` (2051 for images, 2049
    for labels; unsigned bytes), images must be 28x28, the file length must be
    exactly what the header declares, and labels must lie in 0..9.  Decoded
    arrays are cached in-process (per resolved path, size and modification
    time), so reading the same file again is instant.

    Parameters
    ----------
    path : str
        The file.
    kind : {'images', 'labels'}
        What the file must hold.

    Returns
    -------
    numpy.ndarray
        Read-only ``uint8``: ``(N, 28, 28)`` images or ``(N,)`` labels.

    Raises
    ------
    DatasetError
        Naming the file and what is wrong with it.
    """
    return _read(path, kind)[0]


def load_fashion_mnist_arrays(root=None, verify=True, download=True):
    """The whole data set as four ``uint8`` arrays, checked.

    Parameters
    ----------
    root : str, optional
        Folder holding the files; see ``find_fashion_mnist`` for the search.
    verify : bool, default True
        Require the official counts (60,000 train, 10,000 test) and the
        official SHA-256 of every file's decompressed content.  Turn it off
        for a custom data set in the same format.
    download : bool, default True
        Let MXNet download the files when they are found nowhere.

    Returns
    -------
    tuple of numpy.ndarray
        ``(train_images, train_labels, test_images, test_labels)``, read-only
        ``uint8``; images ``(N, 28, 28)``, labels ``(N,)`` in 0..9.

    Raises
    ------
    DatasetError
        A file is unreadable, has the wrong count or content, or images and
        labels disagree in count.
    DatasetNotFoundError
        The files were not found.
    """
    files = find_fashion_mnist(root, download=download)
    arrays = {}
    for role, path in files._asdict().items():
        split, kind = role.split("_")
        records, digest = _read(path, kind)
        if verify and len(records) != NUM_EXAMPLES[split]:
            raise DatasetError(
                "%s holds %d %s, but the Fashion-MNIST %s set has %d: are the train and test "
                "files swapped? (Pass verify=False to load a custom data set.)"
                % (path, len(records), kind, split, NUM_EXAMPLES[split]))
        if verify and digest != SHA256[role]:
            raise DatasetError(
                "%s does not hold the official Fashion-MNIST %s %s: the SHA-256 of its "
                "decompressed content is %s, expected %s. It is corrupt or another data set "
                "(MNIST has the same format): delete it and get it again, or pass "
                "verify=False for a custom data set." % (path, split, kind, digest, SHA256[role]))
        arrays[role] = records
    for split in NUM_EXAMPLES:
        images, labels = arrays[split + "_images"], arrays[split + "_labels"]
        if len(images) != len(labels):
            raise DatasetError(
                "%s holds %d images but %s holds %d labels: the %s files do not belong together."
                % (getattr(files, split + "_images"), len(images),
                   getattr(files, split + "_labels"), len(labels), split))
    return tuple(arrays[role] for role in FILE_NAMES)


def balanced_subset(labels, limit, seed=SUBSET_SEED, num_classes=NUM_CLASSES):
    """Indices of a class-balanced subset of ``limit`` examples, in increasing order.

    Every class gets ``limit // num_classes`` examples (the first ``limit % num_classes`` classes
    one more): the first ones of that class in a ``RandomState(seed)``
    permutation.  So the subset is reproducible, and a larger ``limit`` gives
    a superset of a smaller one.  A class with too few examples gives all it has.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` labels in ``0 .. num_classes - 1``.
    limit : int
        How many examples to keep (all of them if ``limit >= N``).
    seed : int, default SUBSET_SEED
        Seed of the permutation.
    num_classes : int, default 10
        Number of classes (Fashion-MNIST's ten; an image folder's own).
    """
    positive_int(limit, "limit", "balanced_subset")
    labels = np.asarray(labels)
    if limit >= len(labels):
        return np.arange(len(labels))
    order = np.random.RandomState(seed).permutation(len(labels))
    shuffled = labels[order]
    chosen = []
    for c in range(num_classes):
        quota = limit // num_classes + (1 if c < limit % num_classes else 0)
        chosen.append(order[shuffled == c][:quota])
    return np.sort(np.concatenate(chosen))


def get_fashion_mnist_labels(labels):
    """d2lzh's text names of numeric labels: ``[0, 9] -> ['t-shirt', 'ankle boot']``.

    ``labels`` may be a list, a numpy array or an ``NDArray``.
    """
    if isinstance(labels, mx.nd.NDArray):
        labels = labels.asnumpy()
    values = [int(i) for i in np.asarray(labels).reshape(-1)]
    bad = [i for i in values if not 0 <= i < NUM_CLASSES]
    if bad:
        raise ValueError("Fashion-MNIST labels are 0..%d, got %d." % (NUM_CLASSES - 1, bad[0]))
    return [TEXT_LABELS[i] for i in values]
