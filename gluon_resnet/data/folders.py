"""Your own images: class folders on disk, served like Fashion-MNIST.

``load_data_image_folder(path, batch_size, resize)`` returns ``(train_iter,
test_iter)`` like ``load_data_fashion_mnist``, from a folder laid out as the
book's Kaggle chapters read theirs::

    PATH/train/<class>/*.png      PATH/test/<class>/*.png   (or PATH/val/<class>/...)

or one tree ``PATH/<class>/...`` split by ``val_fraction``.  Class names are
the folder names, sorted; label ``i`` is the ``i``-th name.

- PNG, JPEG and BMP are read with Pillow.  Grayscale images stay one channel;
  one colour image (RGB, RGBA, palette, CMYK, ... modes) makes the whole data
  set three channels, and the grayscale ones are converted.
- Sizes: with ``resize`` every image ends at ``resize x resize``.  Without it
  every image must have the size of the first one; the first that differs is
  named (no silent distortion).  When all images share one size they are
  kept at that size and the loader resizes each batch, exactly as the
  Fashion-MNIST path does; otherwise each image is resized once, when read,
  with the same MXNet operator.
- Images are decoded once into memory as ``uint8`` when they fit in
  ``memory_budget`` (2 GiB by default), else read from disk per batch
  (``StreamedImages``); either way every file is decoded once before training,
  so a broken file stops the run before it starts.  Decoding runs in a
  thread pool with one thread per core (Pillow releases the GIL while it
  decodes).
- Per-channel mean and std of the training images (values in [0, 1]) are
  computed and applied in the loader (``normalize=True``), or given as
  ``normalize=(mean, std)``; ``train_iter.description()`` reports them with
  the class names, channels and input size (stored in checkpoints as
  ``meta["data"]``).
"""

import collections
import concurrent.futures
import os

import numpy as np
from PIL import Image

from .._mxnet import mx
from .. import validate
from .files import DatasetNotFoundError
from .idx import DatasetError, SUBSET_SEED, balanced_subset
from .loader import FashionMNISTLoader

__all__ = ["load_data_image_folder", "scan_image_folder", "read_image", "resize_image",
           "image_files", "image_header",
           "StreamedImages", "ImageFolderError", "FolderSplit", "IMAGE_EXTENSIONS",
           "MEMORY_BUDGET", "SPLIT_SEED"]

#: File extensions read as images (case-insensitive); other files are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")

#: Decoded images up to this many bytes are kept in memory; larger sets are streamed.
MEMORY_BUDGET = 2 * 1024 ** 3

#: Seed of the ``val_fraction`` split: fixed, so every run splits a tree the same way.
SPLIT_SEED = 0

#: Pillow modes without colour; every other mode counts as colour.
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class ImageFolderError(DatasetError):
    """An image folder cannot be used as it is: the message names the folder or file."""


#: What ``scan_image_folder`` found: files and labels of both splits, the class names,
#: and how many files it ignored (no image extension).
FolderSplit = collections.namedtuple(
    "FolderSplit", "classes train_files train_labels test_files test_labels ignored")


def _workers():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def image_files(folder):
    """``(image paths, number of other files)`` under ``folder``, recursively, sorted."""
    found, ignored = [], 0
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(root, name))
            else:
                ignored += 1
    return found, ignored


def _class_folders(split_root):
    """``({class name: [image paths]}, ignored)`` of the class folders in ``split_root``."""
    entries = sorted(os.listdir(split_root))
    ignored = sum(1 for e in entries if not os.path.isdir(os.path.join(split_root, e)))
    classes = {}
    for name in entries:
        folder = os.path.join(split_root, name)
        if not os.path.isdir(folder):
            continue
        files, other = image_files(folder)
        ignored += other
        if not files:
            raise ImageFolderError(
                "class folder %s holds no images (%s); add images or remove the folder"
                % (folder, ", ".join(IMAGE_EXTENSIONS)))
        classes[name] = files
    if not classes:
        raise ImageFolderError(
            "%s holds no class folders: put the images of each class in a folder of its own "
            "(%s/<class>/image.png)" % (split_root, split_root))
    return classes, ignored


def _split(classes, val_fraction):
    """Stratified split of ``{class: files}``: each class gives ``round(n * val_fraction)``."""
    train, test = {}, {}
    for name, files in classes.items():
        order = np.random.RandomState(SPLIT_SEED).permutation(len(files))
        n_test = min(int(round(len(files) * val_fraction)), len(files) - 1)
        test[name] = [files[i] for i in sorted(order[:n_test])]
        train[name] = [files[i] for i in sorted(order[n_test:])]
    return train, test


def scan_image_folder(path, val_fraction=None):
    """Find the classes and files of an image folder, with the checks of the module docstring.

    Parameters
    ----------
    path : str
        ``PATH/train/<class>/...`` with ``PATH/test/`` or ``PATH/val/``; or
        ``PATH/<class>/...`` split by ``val_fraction``.
    val_fraction : float, optional
        Share of each class's images that goes to the test set, for a single
        tree (or a ``train/`` without ``test/``), in (0, 1).  The split uses the
        fixed ``SPLIT_SEED``: every run splits the same way.

    Returns
    -------
    FolderSplit

    Raises
    ------
    DatasetNotFoundError
        ``path`` is not a folder.
    ImageFolderError
        An empty tree or class folder, a single class, a test class that is not
        a training class, a missing test set.
    """
    owner = "load_data_image_folder"
    if val_fraction is not None:
        validate.fraction(val_fraction, "val_fraction", owner)
        if val_fraction == 0:
            validate.positive_number(val_fraction, "val_fraction", owner)
    if not os.path.isdir(path):
        raise DatasetNotFoundError("image folder %s does not exist or is not a folder" % path)
    train_root = os.path.join(path, "train")
    test_root = next((os.path.join(path, name) for name in ("test", "val")
                      if os.path.isdir(os.path.join(path, name))), None)
    if os.path.isdir(train_root):
        train, ignored = _class_folders(train_root)
        ignored += sum(1 for e in os.listdir(path) if os.path.isfile(os.path.join(path, e)))
        if test_root is not None:
            if val_fraction is not None:
                raise ImageFolderError(
                    "%s already has a test set (%s): leave out val_fraction" % (path, test_root))
            test, more = _class_folders(test_root)
            ignored += more
        elif val_fraction is None:
            raise ImageFolderError(
                "%s has train/ but no test/ or val/: add one, or pass val_fraction (for "
                "example 0.2) to split train/" % path)
        else:
            train, test = _split(train, val_fraction)
    else:
        if test_root is not None:
            raise ImageFolderError("%s has %s but no train/ folder" % (path, test_root))
        if val_fraction is None:
            raise ImageFolderError(
                "%s has no train/ and test/ folders: pass val_fraction (for example 0.2) to "
                "split its class folders into training and test images" % path)
        train, ignored = _class_folders(path)
        train, test = _split(train, val_fraction)
        train_root = path
    names = sorted(train)
    if len(names) < 2:
        raise ImageFolderError(
            "%s holds a single class (%s): a classifier needs at least two class folders"
            % (train_root, names[0]))
    foreign = sorted(set(test) - set(names))
    if foreign:
        raise ImageFolderError(
            "test class folder %s is not a training class; the training classes in %s are: %s"
            % (os.path.join(test_root, foreign[0]), train_root, ", ".join(names)))
    if not any(test.values()):
        raise ImageFolderError(
            "val_fraction %s leaves no test images in %s: its classes are too small for it"
            % (val_fraction, train_root))
    label = {name: i for i, name in enumerate(names)}

    def flatten(split):
        files = [f for name in sorted(split) for f in split[name]]
        labels = [label[name] for name in sorted(split) for _ in split[name]]
        return files, np.array(labels, dtype=np.int64)

    return FolderSplit(names, *flatten(train), *flatten(test), ignored)


def _open(path, load=True):
    """The Pillow image of ``path`` (decoded when ``load``); ``ImageFolderError`` naming it."""
    try:
        image = Image.open(path)
        if load:
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageFolderError("%s cannot be read as an image (%s)" % (path, exc)) from None
    return image


def read_image(path, channels=None):
    """Decode one image file to a ``uint8`` array: ``(H, W)`` for grayscale, ``(H, W, 3)``.

    ``channels`` 1 or 3 converts (Pillow's ``L`` and ``RGB`` conversions); None
    keeps the file's kind (grayscale or colour).
    """
    image = _open(path)
    colour = image.mode not in _GRAY_MODES
    want = channels if channels is not None else (3 if colour else 1)
    if want == 3:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if image.mode.startswith("I;16"):  # 16-bit grayscale: 0..65535 to 0..255
        return np.round(np.asarray(image, dtype=np.float64) / 257.0).astype(np.uint8)
    if image.mode in ("I", "F"):  # 32-bit grayscale: values above 255 are clipped
        return np.clip(np.round(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def image_header(path):
    """``((H, W), colour)`` of an image file, read from its header only.

    ``colour`` is True for anything but grayscale.  Raises ``ImageFolderError``
    naming a file that is not an image.
    """
    image = _open(path, load=False)
    return (image.height, image.width), image.mode not in _GRAY_MODES


def _probe(path):
    """``(path, (H, W), colour)`` from the file's header, or ``(path, None, message)``."""
    try:
        size, colour = image_header(path)
    except ImageFolderError as exc:
        return path, None, str(exc)
    return path, size, colour


def resize_image(image, size):
    """``image`` (HW or HWC ``uint8``) resized to ``size = (H, W)`` with MXNet's bilinear operator.

    The operator the loader resizes batches with, so one image resized here
    has the values it has in a batch.
    """
    if image.shape[:2] == tuple(size):
        return image
    x = mx.nd.array(image if image.ndim == 3 else image[:, :, None], dtype=np.uint8)
    out = mx.nd.image.resize(x, (size[1], size[0])).asnumpy()  # (width, height)
    return out if image.ndim == 3 else out[:, :, 0]


class StreamedImages:
    """Images read from disk per batch: what ``FashionMNISTLoader`` needs of an array.

    ``source[idx]`` decodes the files ``idx`` (in a thread pool) to an
    ``(n, H, W)`` or ``(n, H, W, C)`` ``uint8`` array, resized to ``size``
    when ``resize_each`` is set.
    """

    streamed = True
    dtype = np.dtype(np.uint8)

    def __init__(self, files, size, channels, resize_each=False, pool=None):
        self.files, self.size = list(files), tuple(size)
        self.channels, self.resize_each = channels, resize_each
        self.pool = pool
        self.shape = (len(self.files),) + self.size + ((channels,) if channels == 3 else ())

    def __len__(self):
        return len(self.files)

    def _read(self, path):
        return read_image(path, self.channels)

    def __getitem__(self, idx):
        paths = [self.files[i] for i in np.asarray(idx).reshape(-1)]
        images = list(self.pool.map(self._read, paths)) if self.pool else map(self._read, paths)
        if self.resize_each:
            images = [resize_image(image, self.size) for image in images]
        return np.stack(list(images)).reshape((len(paths),) + self.shape[1:])

    def __repr__(self):
        return "StreamedImages(%d files, size=%s, channels=%d)" % (
            len(self.files), self.size, self.channels)


def _try_read(path, channels):
    """``read_image(path, channels)``, or the error's message for a file that fails to decode."""
    try:
        return read_image(path, channels)
    except ImageFolderError as exc:
        return str(exc)


class _BadImages:
    """Files that fail to decode: refused at once, or skipped and counted in one notice."""

    def __init__(self, skip):
        self.skip, self.paths = skip, []

    def add(self, path, message):
        if not self.skip:
            raise ImageFolderError(message + "; remove or replace it, or skip such files with "
                                   "skip_bad_images (--skip-bad-images)")
        self.paths.append(path)

    def report(self, notice):
        if self.paths:
            notice("skipped %d image file%s that cannot be decoded (the first: %s)"
                   % (len(self.paths), "s" * (len(self.paths) > 1), self.paths[0]))


def _decoded(files, channels, pool, bad, chunk):
    """``(index, image)`` of every file that decodes, ``chunk`` files at a time.

    The others go to ``bad``.  At most ``chunk`` decoded images of their own
    size wait to be used.
    """
    for start in range(0, len(files), chunk):
        part = files[start:start + chunk]
        for i, image in enumerate(pool.map(_try_read, part, [channels] * len(part)), start):
            if isinstance(image, str):
                bad.add(files[i], image)
            else:
                yield i, image


def _decode_into_memory(files, size, channels, resize_each, pool, bad, chunk=256):
    """Decode every file once into one ``uint8`` array; ``(array, indices of good files)``."""
    shape = (len(files),) + tuple(size) + ((channels,) if channels == 3 else ())
    images = np.empty(shape, dtype=np.uint8)
    good = []
    for i, image in _decoded(files, channels, pool, bad, chunk):
        images[len(good)] = resize_image(image, size) if resize_each else image
        good.append(i)
    return images[:len(good)], good


def _check_decodable(files, channels, pool, bad, chunk=512):
    """Decode every file once (streamed sets); indices of the good ones."""
    return [i for i, _ in _decoded(files, channels, pool, bad, chunk)]


def _statistics_of(source, count, batch=512):
    """Per-channel mean and std of pixel values / 255 over ``source[0:count]``."""
    total = total_sq = 0.0
    pixels = 0
    for start in range(0, count, batch):
        x = source[np.arange(start, min(start + batch, count))].astype(np.float64) / 255.0
        x = x.reshape(-1, 1 if x.ndim == 3 else x.shape[-1])
        total, total_sq = total + x.sum(axis=0), total_sq + (x * x).sum(axis=0)
        pixels += len(x)
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean * mean, 0.0))
    return mean.tolist(), np.maximum(std, 1e-3).tolist()


def _check_left(path, n_train, total):
    if n_train == 0 or total == n_train:
        raise ImageFolderError("%s: none of its %s images could be decoded"
                               % (path, "training" if n_train == 0 else "test"))


def load_data_image_folder(path, batch_size, resize=None, *, limit=None, seed=0, shuffle=True,
                           augment=False, max_shift=2, num_parts=1, part_index=0,
                           equal_parts=False, erase=0.0, val_fraction=None, skip_bad_images=False,
                           memory_budget=MEMORY_BUDGET, normalize=True, notice=print):
    """``(train_iter, test_iter)`` over an image folder, like ``load_data_fashion_mnist``.

    Parameters
    ----------
    path : str
        The folder (see ``scan_image_folder`` for its layouts).
    batch_size : int
        Examples per batch.
    resize : int, optional
        Input size ``resize x resize``; without it all images must have one size.
    limit : int, optional
        Train on a reproducible, class-balanced subset of ``limit`` training
        images (``balanced_subset`` over the folder's classes); the test set
        stays whole.  Only the chosen images are decoded.
    seed, shuffle, augment, max_shift, num_parts, part_index, equal_parts, erase
        As in ``load_data_fashion_mnist``: shuffling, augmentation and shards
        of the training set, drawn from ``(seed, epoch)``.
    val_fraction : float, optional
        Split a single tree: this share of each class becomes the test set.
    skip_bad_images : bool, default False
        Skip (and count, in one notice) files with an image extension that
        cannot be decoded, instead of stopping with the file's name.
    memory_budget : int, default 2 GiB
        Keep the decoded images in memory when they take at most this many
        bytes; otherwise read them from disk per batch.
    normalize : bool or (mean, std), default True
        True: per-channel mean and std of the training images; a pair: these
        values (one per channel, for pixel values in [0, 1]); False: none.
    notice : callable, default print
        Where the one-line notices (ignored files, skipped images) go.

    Returns
    -------
    (FashionMNISTLoader, FashionMNISTLoader)
        Both know ``classes`` and ``description()``.

    Raises
    ------
    DatasetNotFoundError, ImageFolderError
        With the folder or file named (see ``scan_image_folder``).
    """
    owner = "load_data_image_folder"
    validate.positive_int(batch_size, "batch_size", owner)
    validate.optional_positive_int(resize, "resize", owner)
    validate.optional_positive_int(limit, "limit", owner)
    validate.shard(num_parts, part_index, owner)
    validate.positive_int(memory_budget, "memory_budget", owner)
    found = scan_image_folder(path, val_fraction)
    if found.ignored:
        notice("ignored %d file%s without an image extension (%s) in %s"
               % (found.ignored, "s" * (found.ignored > 1), ", ".join(IMAGE_EXTENSIONS), path))
    train_files, train_labels = found.train_files, found.train_labels
    if limit is not None:
        keep = balanced_subset(train_labels, limit, SUBSET_SEED, len(found.classes))
        train_files, train_labels = [train_files[i] for i in keep], train_labels[keep]
    files = list(train_files) + list(found.test_files)
    labels = np.concatenate([train_labels, found.test_labels])
    n_train, bad = len(train_files), _BadImages(skip_bad_images)
    with concurrent.futures.ThreadPoolExecutor(_workers()) as pool:
        probed = list(pool.map(_probe, files))
        for file, size, info in probed:
            if size is None:
                bad.add(file, info)
        kept = [i for i, (_, size, _) in enumerate(probed) if size is not None]
        files, labels = [files[i] for i in kept], labels[kept]
        n_train = sum(1 for i in kept if i < n_train)
        _check_left(path, n_train, len(files))
        sizes = [probed[i][1] for i in kept]
        channels = 3 if any(probed[i][2] for i in kept) else 1
        uniform = all(s == sizes[0] for s in sizes)
        if resize is None and not uniform:
            first = next(i for i, s in enumerate(sizes) if s != sizes[0])
            raise ImageFolderError(
                "%s is %dx%d but %s is %dx%d: images of different sizes need resize "
                "(--resize N) to bring them to one size"
                % (files[first], sizes[first][1], sizes[first][0], files[0], sizes[0][1],
                   sizes[0][0]))
        # A set of one size keeps it, and the loader resizes each batch (as for Fashion-MNIST).
        size = sizes[0] if uniform else (resize, resize)
        nbytes = len(files) * size[0] * size[1] * channels
        if nbytes <= memory_budget:
            images, good = _decode_into_memory(files, size, channels, not uniform, pool, bad)
        else:  # streamed: still decode every file once now, so a bad one stops us here
            images, good = None, _check_decodable(files, channels, pool, bad)
    bad.report(notice)
    files, labels = [files[i] for i in good], labels[good]
    n_train = sum(1 for i in good if i < n_train)
    _check_left(path, n_train, len(files))
    if images is not None:
        train_images, test_images = images[:n_train], images[n_train:]
    else:
        pool = concurrent.futures.ThreadPoolExecutor(_workers())  # lives as long as the loaders
        train_images = StreamedImages(files[:n_train], size, channels, not uniform, pool)
        test_images = StreamedImages(files[n_train:], size, channels, not uniform, pool)
    if normalize is True:
        mean, std = _statistics_of(train_images, n_train)
    elif normalize is False or normalize is None:
        mean = std = None
    else:
        mean, std = normalize
    common = dict(resize=resize if uniform else None, mean=mean, std=std, classes=found.classes)
    train_iter = FashionMNISTLoader(train_images, labels[:n_train], batch_size, shuffle=shuffle,
                                    seed=seed, num_parts=num_parts, part_index=part_index,
                                    augment=augment, max_shift=max_shift,
                                    equal_parts=equal_parts, erase=erase, **common)
    test_iter = FashionMNISTLoader(test_images, labels[n_train:], batch_size, **common)
    return train_iter, test_iter
