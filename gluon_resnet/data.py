"""Fashion-MNIST: find the files, read them safely, serve batches like d2lzh.

d2l-zh trains the chapter's ResNet on Fashion-MNIST through
``d2lzh.load_data_fashion_mnist(batch_size, resize)``.  This module keeps that
name, signature and return value, and changes what happens underneath:

- The four IDX files are looked for in several folders (``find_fashion_mnist``)
  before MXNet is asked to download them, so the Debian package
  ``dataset-fashion-mnist`` or a copy made by hand works offline.
- The files are read by our own IDX parser (``read_idx``), which checks magic
  numbers, sizes, lengths and labels, and ``load_fashion_mnist_arrays`` checks
  the SHA-256 of the content.  A truncated, corrupt, swapped or foreign file
  raises ``DatasetError`` naming the file: nothing trains on garbage.
- Batches are made from in-memory ``uint8`` arrays by ``FashionMNISTLoader``,
  with one resize operator per batch and a shuffling order that depends only
  on ``(seed, epoch)``, so a resumed run sees the same batches.

The values of a batch are bit-identical to those of d2lzh's pipeline
(``transforms.Resize`` then ``transforms.ToTensor``) for the same images.

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
import time
import zlib

import numpy as np

from ._mxnet import mx
from .blocks import check_positive_int

__all__ = ["DatasetError", "DatasetNotFoundError", "FashionMNISTFiles", "find_fashion_mnist",
           "read_idx", "load_fashion_mnist_arrays", "balanced_subset", "FashionMNISTLoader",
           "load_data_fashion_mnist", "get_fashion_mnist_labels", "show_fashion_mnist",
           "measure_loader_throughput", "TEXT_LABELS", "FILE_NAMES", "SYSTEM_DATA_DIR"]

# ---------------------------------------------------------------------------
# The data set's facts
# ---------------------------------------------------------------------------

#: The four files, by role, without the ``.gz`` a compressed copy adds.
FILE_NAMES = collections.OrderedDict([
    ("train_images", "train-images-idx3-ubyte"),
    ("train_labels", "train-labels-idx1-ubyte"),
    ("test_images", "t10k-images-idx3-ubyte"),
    ("test_labels", "t10k-labels-idx1-ubyte"),
])

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

#: Where Debian's package ``dataset-fashion-mnist`` puts the files.
SYSTEM_DATA_DIR = "/usr/share/datasets/fashion-mnist"

#: Environment variable naming a folder that holds the four files.
DATA_ENV = "GLUON_RESNET_DATA"

#: Seed of the permutation that chooses a ``limit`` subset (fixed on purpose:
#: runs with different shuffling seeds still train on the same images).
SUBSET_SEED = 0

# IDX header: magic number = 0x0000 <dtype byte> <number of dimensions>.
_IDX_UBYTE = 0x08
_IDX_NDIM = {"images": 3, "labels": 1}
_IDX_MAGIC = {kind: (_IDX_UBYTE << 8) | ndim for kind, ndim in _IDX_NDIM.items()}  # 2051, 2049
_GZIP_MAGIC = b"\x1f\x8b"

_HOW_TO_GET = (
    "To get the data: sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu), or put "
    "the four files %s (gzip-compressed with .gz, or uncompressed without it) in a folder "
    "and pass root=FOLDER or set %s=FOLDER."
    % (", ".join(n + ".gz" for n in FILE_NAMES.values()), DATA_ENV))


class DatasetError(ValueError):
    """A data file exists but is not what it should be (truncated, corrupt, swapped, foreign)."""


class DatasetNotFoundError(FileNotFoundError):
    """The Fashion-MNIST files are in none of the folders searched and could not be downloaded."""


#: Paths of the four files, by role.
FashionMNISTFiles = collections.namedtuple("FashionMNISTFiles", list(FILE_NAMES))


# ---------------------------------------------------------------------------
# Finding the files
# ---------------------------------------------------------------------------

def mxnet_data_dir():
    """``$MXNET_HOME/datasets/fashion-mnist`` (``MXNET_HOME`` defaults to ``~/.mxnet``)."""
    return os.path.join(mx.base.data_dir(), "datasets", "fashion-mnist")


def _files_in(folder):
    """``(FashionMNISTFiles or None, missing names)`` for ``folder``; ``.gz`` preferred."""
    found, missing = {}, []
    for role, name in FILE_NAMES.items():
        for candidate in (name + ".gz", name):
            path = os.path.join(folder, candidate)
            if os.path.isfile(path):
                found[role] = path
                break
        else:
            missing.append(name)
    return (FashionMNISTFiles(**found) if not missing else None), missing


def _describe(folder, missing):
    if not os.path.isdir(folder):
        return "does not exist"
    return "missing " + ", ".join(missing)


def _search_path():
    """The folders searched when no ``root`` is given, as ``(folder, where it comes from)``."""
    folders = []
    if os.environ.get(DATA_ENV):
        folders.append((os.path.expanduser(os.environ[DATA_ENV]), "$" + DATA_ENV))
    folders.append((mxnet_data_dir(), "$MXNET_HOME/datasets/fashion-mnist"))
    folders.append((SYSTEM_DATA_DIR, "Debian package dataset-fashion-mnist"))
    return folders


def download_with_mxnet(folder):
    """Let MXNet download the four files into ``folder`` (honours ``MXNET_GLUON_REPO``).

    Raises whatever MXNet raises when it cannot (no network, bad checksum).
    """
    for train in (True, False):
        mx.gluon.data.vision.FashionMNIST(root=folder, train=train)


def find_fashion_mnist(root=None, download=True):
    """Find the four Fashion-MNIST files.

    The first folder that holds all four files wins, searched in this order:
    ``root`` if given, ``$GLUON_RESNET_DATA``, ``$MXNET_HOME/datasets/fashion-mnist``
    (``~/.mxnet/...`` by default), then ``/usr/share/datasets/fashion-mnist``
    (Debian's ``dataset-fashion-mnist``).  Each file may be gzip-compressed
    (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``).
    Only when no folder has them does MXNet download them into
    ``$MXNET_HOME/datasets/fashion-mnist``.

    Parameters
    ----------
    root : str, optional
        A folder that must hold the files.  When given, nothing else is
        searched and nothing is downloaded.
    download : bool, default True
        Try MXNet's download when the files are found nowhere.

    Returns
    -------
    FashionMNISTFiles
        The four paths (``train_images``, ``train_labels``, ``test_images``,
        ``test_labels``).

    Raises
    ------
    DatasetNotFoundError
        Naming every folder searched, what each lacks, and how to get the data.
    """
    if root is not None:
        root = os.path.expanduser(os.fspath(root))
        files, missing = _files_in(root)
        if files is None:
            raise DatasetNotFoundError(
                "root=%r does not hold Fashion-MNIST: it %s. %s"
                % (root, _describe(root, missing), _HOW_TO_GET))
        return files
    looked = []
    for folder, origin in _search_path():
        files, missing = _files_in(folder)
        if files is not None:
            return files
        looked.append("  %s (%s): %s" % (folder, origin, _describe(folder, missing)))
    target = mxnet_data_dir()
    if not download:
        attempt = "Download not attempted (download=False)."
    else:
        try:
            download_with_mxnet(target)
        except Exception as exc:  # MXNet raises many kinds when offline
            attempt = ("Downloading with MXNet into %s failed (offline?): %s: %s"
                       % (target, type(exc).__name__, exc))
        else:
            files, missing = _files_in(target)
            if files is not None:
                return files
            attempt = ("MXNet's download into %s did not leave the files: %s"
                       % (target, _describe(target, missing)))
    raise DatasetNotFoundError(
        "Fashion-MNIST was not found. Looked in:\n%s\n%s\n%s"
        % ("\n".join(looked), attempt, _HOW_TO_GET))


# ---------------------------------------------------------------------------
# Reading IDX files
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------

def _check_optional_positive_int(value, name, owner):
    return None if value is None else check_positive_int(value, name, owner)


def _check_shard(num_parts, part_index, owner):
    check_positive_int(num_parts, "num_parts", owner)
    if isinstance(part_index, bool) or not isinstance(part_index, int) \
            or not 0 <= part_index < num_parts:
        raise ValueError("%s: part_index must be an integer from 0 to num_parts - 1 = %d, "
                         "got %r." % (owner, num_parts - 1, part_index))


def balanced_subset(labels, limit, seed=SUBSET_SEED):
    """Indices of a class-balanced subset of ``limit`` examples, in increasing order.

    Every class gets ``limit // 10`` examples (the first ``limit % 10`` classes
    one more): the first ones of that class in a ``RandomState(seed)``
    permutation.  So the subset is reproducible, and a larger ``limit`` gives
    a superset of a smaller one.  A class with too few examples gives all it has.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(N,)`` labels in 0..9.
    limit : int
        How many examples to keep (all of them if ``limit >= N``).
    seed : int, default SUBSET_SEED
        Seed of the permutation.
    """
    check_positive_int(limit, "limit", "balanced_subset")
    labels = np.asarray(labels)
    if limit >= len(labels):
        return np.arange(len(labels))
    order = np.random.RandomState(seed).permutation(len(labels))
    shuffled = labels[order]
    chosen = []
    for c in range(NUM_CLASSES):
        quota = limit // NUM_CLASSES + (1 if c < limit % NUM_CLASSES else 0)
        chosen.append(order[shuffled == c][:quota])
    return np.sort(np.concatenate(chosen))


class FashionMNISTLoader:
    """Batches ``(X, y)`` from in-memory ``uint8`` images, like d2lzh's ``DataLoader``.

    ``X`` is a float32 ``NDArray`` of shape ``(batch, 1, H, W)`` with values in
    [0, 1] (``H = W = resize`` when given), ``y`` an int32 ``NDArray`` of
    shape ``(batch,)``.  Each batch costs one fancy index of the numpy array,
    one copy into an ``NDArray``, one batched resize and one ``to_tensor``:
    the values equal d2lzh's ``Resize(resize)`` + ``ToTensor()`` exactly.

    Shuffling is reproducible: epoch ``e`` visits the examples in the order
    ``numpy.random.RandomState(seed + e).permutation(N)``.  The loader counts
    epochs itself: ``epoch`` is the epoch the next ``iter(loader)`` serves,
    and it goes up by one each time an iteration starts.  A resumed run sets
    ``loader.epoch`` to continue the same sequence of batches.

    With ``num_parts > 1`` the loader serves only shard ``part_index``:
    positions ``part_index, part_index + num_parts, ...`` of the epoch's order.
    The shards of all workers are disjoint and together cover the data in
    every epoch; their sizes differ by at most one example, unless
    ``equal_parts`` drops the ``N % num_parts`` examples at the end of each
    epoch's order: then every shard has ``N // num_parts`` examples, so
    workers that train together run the same number of batches of the same
    sizes (a different few examples are left out in each shuffled epoch).

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, H, W)`` ``uint8``.
    labels : numpy.ndarray
        ``(N,)`` integers.
    batch_size : int
        Examples per batch.
    shuffle : bool, default False
        Visit the examples in a new seeded order each epoch.
    seed : int, default 0
        Base seed of the orders.
    resize : int, optional
        Resize images to ``resize x resize`` (bilinear).
    last_batch : {'keep', 'discard'}, default 'keep'
        What to do with a last batch smaller than ``batch_size``.
    num_parts : int, default 1
        Number of shards (distributed workers).
    part_index : int, default 0
        Which shard this loader serves.
    equal_parts : bool, default False
        Give every shard exactly ``N // num_parts`` examples (see above).
    ctx : mxnet.Context, optional
        Where the batches go (default ``mx.cpu()``); they are made on the CPU.
    augment : bool, default False
        Flip each image left-right with probability 1/2 and shift it by up to
        ``max_shift`` pixels (of the output size) in each direction, filling
        with zeros: one batched affine resampling per batch.  The draws depend
        only on ``(seed, epoch)``, like the shuffling.
    max_shift : int, default 2
        Largest shift, in pixels, when ``augment`` is set; 0 flips only.
    """

    def __init__(self, images, labels, batch_size, shuffle=False, seed=0, resize=None,
                 last_batch="keep", num_parts=1, part_index=0, ctx=None, augment=False,
                 max_shift=2, equal_parts=False):
        owner = type(self).__name__
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError("%s: images must be a uint8 array of shape (N, H, W), got %s %s."
                             % (owner, images.dtype, images.shape))
        if labels.shape != images.shape[:1]:
            raise ValueError("%s: labels must have shape (%d,) to match the images, got %s."
                             % (owner, len(images), labels.shape))
        if last_batch not in ("keep", "discard"):
            raise ValueError("%s: last_batch must be 'keep' or 'discard', got %r."
                             % (owner, last_batch))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError("%s: seed must be a non-negative integer, got %r." % (owner, seed))
        _check_shard(num_parts, part_index, owner)
        self.images, self.labels = images, labels
        self.batch_size = check_positive_int(batch_size, "batch_size", owner)
        self.resize = _check_optional_positive_int(resize, "resize", owner)
        self.shuffle, self.seed, self.last_batch = bool(shuffle), int(seed), last_batch
        self.num_parts, self.part_index = num_parts, part_index
        self.equal_parts = bool(equal_parts)
        self.ctx = ctx if ctx is not None else mx.cpu()
        if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) \
                or max_shift < 0:
            raise ValueError("%s: max_shift must be a non-negative integer (pixels), got %r."
                             % (owner, max_shift))
        self.augment, self.max_shift = bool(augment), int(max_shift)
        self.epoch = 0
        total = len(images)
        self.num_examples = total // num_parts + (
            1 if part_index < total % num_parts and not self.equal_parts else 0)

    def __len__(self):
        """Number of batches per epoch."""
        full, rest = divmod(self.num_examples, self.batch_size)
        return full + (1 if rest and self.last_batch == "keep" else 0)

    def indices(self, epoch):
        """Indices into ``images`` of this loader's examples in epoch ``epoch``, in order."""
        if self.shuffle:
            order = np.random.RandomState(self.seed + epoch).permutation(len(self.images))
        else:
            order = np.arange(len(self.images))
        if self.equal_parts:
            order = order[:len(order) - len(order) % self.num_parts]
        return order[self.part_index::self.num_parts]

    def batch(self, idx, affine=None):
        """``(X, y)`` for the examples ``idx`` (indices into ``images``).

        ``affine``, an ``(len(idx), 6)`` array of per-image affine transforms
        in MXNet's normalised coordinates, resamples the batch (augmentation).
        """
        X = mx.nd.array(self.images[idx][:, :, :, None], dtype=np.uint8)  # NHWC, as d2lzh
        if self.resize is not None:
            X = mx.nd.image.resize(X, (self.resize, self.resize))
        X = mx.nd.image.to_tensor(X)  # NCHW float32 / 255
        if affine is not None:
            grid = mx.nd.GridGenerator(mx.nd.array(affine), transform_type="affine",
                                       target_shape=X.shape[2:])
            X = mx.nd.BilinearSampler(X, grid)
        y = mx.nd.array(self.labels[idx], dtype=np.int32)
        return X.as_in_context(self.ctx), y.as_in_context(self.ctx)

    def augmentation(self, epoch, n):
        """Affine transforms (flip, shift) of ``n`` examples in ``epoch``: ``(n, 6)``."""
        rng = np.random.RandomState([self.seed, epoch, 1])
        side = self.resize or self.images.shape[1]
        flip = np.where(rng.rand(n) < 0.5, -1.0, 1.0)
        # Pixel centres span [-1, 1]: one pixel is 2 / (side - 1) there.
        shift = rng.randint(-self.max_shift, self.max_shift + 1, size=(n, 2)) * 2.0 / (side - 1)
        affine = np.zeros((n, 6), dtype=np.float32)
        affine[:, 0], affine[:, 2], affine[:, 4], affine[:, 5] = flip, shift[:, 0], 1.0, shift[:, 1]
        return affine

    def __iter__(self):
        order = self.indices(self.epoch)
        affine = self.augmentation(self.epoch, len(order)) if self.augment else None
        self.epoch += 1
        return (self.batch(order[i:i + self.batch_size],
                           None if affine is None else affine[i:i + self.batch_size])
                for i in range(0, len(self) * self.batch_size, self.batch_size))

    def __repr__(self):
        return ("%s(num_examples=%d, batch_size=%d, batches=%d, shuffle=%s, resize=%s, epoch=%d)"
                % (type(self).__name__, self.num_examples, self.batch_size, len(self),
                   self.shuffle, self.resize, self.epoch))


def load_data_fashion_mnist(batch_size, resize=None, root=None, *, limit=None, test_limit=None,
                            seed=0, shuffle=True, num_parts=1, part_index=0, verify=True,
                            augment=False, max_shift=2, equal_parts=False):
    """d2lzh's ``load_data_fashion_mnist``: ``(train_iter, test_iter)`` over Fashion-MNIST.

    Parameters
    ----------
    batch_size : int
        Examples per batch.
    resize : int, optional
        Resize images to ``resize x resize`` (the chapter uses 96).
    root : str, optional
        Folder holding the four files; see ``find_fashion_mnist``.
    limit : int, optional
        Train on a reproducible, class-balanced subset of ``limit`` training
        images (``balanced_subset``, with the fixed ``SUBSET_SEED``).  The test
        set then shrinks in the data set's own 6:1 proportion, to a balanced
        subset of ``max(limit // 6, 10)`` images, unless ``test_limit`` says
        otherwise.
    test_limit : int, optional
        Size of the balanced test subset (default: all 10,000, or the
        proportional size above when ``limit`` is given).
    seed : int, default 0
        Shuffling seed: epoch ``e`` uses ``RandomState(seed + e)``.
    shuffle : bool, default True
        Shuffle the training set (the test set is never shuffled).
    num_parts, part_index : int, default 1, 0
        Serve only one shard of the training set (for distributed workers);
        every worker gets the whole test set.
    equal_parts : bool, default False
        Make all training shards the same size, ``N // num_parts`` (see
        ``FashionMNISTLoader``), so that workers run equal batches.
    verify : bool, default True
        Check counts and checksums (see ``load_fashion_mnist_arrays``).
    augment : bool, default False
        Random flips and shifts of the training images (see
        ``FashionMNISTLoader``); the test set is never augmented.
    max_shift : int, default 2
        Largest random shift in pixels when ``augment`` is set (0: flips only).

    Returns
    -------
    (FashionMNISTLoader, FashionMNISTLoader)
        ``train_iter`` and ``test_iter``; both keep a smaller last batch.
    """
    owner = "load_data_fashion_mnist"
    check_positive_int(batch_size, "batch_size", owner)
    _check_optional_positive_int(resize, "resize", owner)
    _check_optional_positive_int(limit, "limit", owner)
    _check_optional_positive_int(test_limit, "test_limit", owner)
    _check_shard(num_parts, part_index, owner)
    train_x, train_y, test_x, test_y = load_fashion_mnist_arrays(root, verify=verify)
    if limit is not None:
        keep = balanced_subset(train_y, limit)
        train_x, train_y = train_x[keep], train_y[keep]
        if test_limit is None:
            test_limit = max(limit // 6, NUM_CLASSES)
    if test_limit is not None:
        keep = balanced_subset(test_y, test_limit)
        test_x, test_y = test_x[keep], test_y[keep]
    train_iter = FashionMNISTLoader(train_x, train_y, batch_size, shuffle=shuffle, seed=seed,
                                    resize=resize, num_parts=num_parts, part_index=part_index,
                                    augment=augment, max_shift=max_shift,
                                    equal_parts=equal_parts)
    test_iter = FashionMNISTLoader(test_x, test_y, batch_size, resize=resize)
    return train_iter, test_iter


def measure_loader_throughput(batch_size=256, resize=96, limit=None, root=None):
    """Images per second of one full pass over the (shuffled) training loader.

    Reading the files is done (and cached) before the clock starts; every
    batch is waited for with ``X.wait_to_read()``.
    """
    train_iter, _ = load_data_fashion_mnist(batch_size, resize, root, limit=limit)
    start = time.perf_counter()
    for X, y in train_iter:
        X.wait_to_read()
        y.wait_to_read()
    return train_iter.num_examples / (time.perf_counter() - start)


# ---------------------------------------------------------------------------
# Labels and pictures
# ---------------------------------------------------------------------------

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


def show_fashion_mnist(images, labels):
    """Draw ``images`` in one row with ``labels`` as titles, as d2lzh does.

    Parameters
    ----------
    images : NDArray or numpy.ndarray
        ``n`` images, each of any shape that holds one ``H x W`` picture
        (``(n, 28, 28)``, ``(n, 1, H, W)``, ``(n, H, W, 1)``).
    labels : sequence
        ``n`` titles: strings, or numeric labels (turned into text names).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (not shown: call ``plt.show()`` or let the notebook do it).
    """
    import matplotlib.pyplot as plt

    if isinstance(images, mx.nd.NDArray):
        images = images.asnumpy()
    if isinstance(labels, mx.nd.NDArray):
        labels = labels.asnumpy()
    images, labels = np.asarray(images), list(labels)
    if len(images) != len(labels) or not len(labels):
        raise ValueError("show_fashion_mnist needs as many labels as images (at least one), "
                         "got %d images and %d labels." % (len(images), len(labels)))
    if not all(isinstance(label, str) for label in labels):
        labels = get_fashion_mnist_labels(labels)
    fig, axes = plt.subplots(1, len(images), figsize=(12, 12), squeeze=False)
    for ax, img, label in zip(axes[0], images, labels):
        ax.imshow(np.squeeze(img))
        ax.set_title(label)
        ax.axes.get_xaxis().set_visible(False)
        ax.axes.get_yaxis().set_visible(False)
    return fig
