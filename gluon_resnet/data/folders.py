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
  (``StreamedImages``, whose thread pool the loader's ``close()`` shuts down);
  either way every file is decoded once before training, so a broken file
  stops the run before it starts.  Decoding runs in a thread pool with one
  thread per core (Pillow releases the GIL while it decodes).
- Per-channel mean and std of the training images (values in [0, 1]) are
  computed and applied in the loader (``normalize=True``), or given as
  ``normalize=(mean, std)``; ``train_iter.description()`` reports them with
  the class names, channels and input size (stored in checkpoints as
  ``meta["data"]``).
"""

import collections
import os

import numpy as np

from .. import validate
from .files import DatasetNotFoundError
from .idx import SUBSET_SEED, balanced_subset
from .images import (BadImages, ImageFolderError, StreamedImages, check_decodable,
                     decode_into_memory, image_header, probe_images, read_image, resize_image,
                     thread_pool)
from .loader import ArrayLoader

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


#: What ``scan_image_folder`` found: files and labels of both splits, the class names,
#: and how many files it ignored (no image extension).
FolderSplit = collections.namedtuple(
    "FolderSplit", "classes train_files train_labels test_files test_labels ignored")


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


#: The files of a run: training files first, then test files; ``labels`` in the same order.
_Files = collections.namedtuple("_Files", "paths labels n_train")


def _notice_ignored(found, path, notice):
    if found.ignored:
        notice("ignored %d file%s without an image extension (%s) in %s"
               % (found.ignored, "s" * (found.ignored > 1), ", ".join(IMAGE_EXTENSIONS), path))


def _chosen(found, limit):
    """The training files (a balanced subset of ``limit`` when given), then the test files."""
    train_files, train_labels = found.train_files, found.train_labels
    if limit is not None:
        keep = balanced_subset(train_labels, limit, SUBSET_SEED, len(found.classes))
        train_files, train_labels = [train_files[i] for i in keep], train_labels[keep]
    return _Files(list(train_files) + list(found.test_files),
                  np.concatenate([train_labels, found.test_labels]), len(train_files))


def _kept(files, keep, path):
    """The files ``keep`` (indices, in order) of ``files``; refused if a split is left empty."""
    n_train = sum(1 for i in keep if i < files.n_train)
    _check_left(path, n_train, len(keep))
    return _Files([files.paths[i] for i in keep], files.labels[keep], n_train)


def _check_left(path, n_train, total):
    if n_train == 0 or total == n_train:
        raise ImageFolderError("%s: none of its %s images could be decoded"
                               % (path, "training" if n_train == 0 else "test"))


def _probe(files, pool, bad, path):
    """Read every header: ``(files whose header reads, their (H, W) sizes, channels)``.

    One colour image makes three channels.
    """
    probed = probe_images(files.paths, pool, bad)
    try:
        kept = _kept(files, [i for i, _, _ in probed], path)
    except ImageFolderError:
        bad.refuse()  # no split left: the files that broke it are the news
        raise
    channels = 3 if any(colour for _, _, colour in probed) else 1
    return kept, [size for _, size, _ in probed], channels


def _input_size(paths, sizes, resize):
    """``(size, uniform)``: the images' one size, else ``(resize, resize)``; else refused."""
    uniform = all(s == sizes[0] for s in sizes)
    if resize is None and not uniform:
        first = next(i for i, s in enumerate(sizes) if s != sizes[0])
        raise ImageFolderError(
            "%s is %dx%d but %s is %dx%d: images of different sizes need resize "
            "(--resize N) to bring them to one size"
            % (paths[first], sizes[first][1], sizes[first][0], paths[0], sizes[0][1],
               sizes[0][0]))
    # A set of one size keeps it, and the loader resizes each batch (as for Fashion-MNIST).
    return (sizes[0] if uniform else (resize, resize)), uniform


def _fits_in_memory(count, size, channels, memory_budget):
    """Whether ``count`` decoded images of ``size`` and ``channels`` take at most the budget."""
    return count * size[0] * size[1] * channels <= memory_budget


def _decode(paths, size, channels, resize_each, in_memory, pool, bad):
    """Decode every file once: ``(the images in memory, or None, indices of good files)``."""
    if in_memory:
        return decode_into_memory(paths, size, channels, resize_each, pool, bad)
    # Streamed: still decode every file once now, so a bad one stops us here.
    return None, check_decodable(paths, channels, pool, bad)


def _sources(images, files, size, channels, resize_each):
    """Training and test images: parts of the decoded array, or two streamed sources."""
    if images is not None:
        return images[:files.n_train], images[files.n_train:]
    return (StreamedImages(files.paths[:files.n_train], size, channels, resize_each),
            StreamedImages(files.paths[files.n_train:], size, channels, resize_each))


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


def _normalisation(normalize, train_images):
    """``(mean, std)`` for the loaders: of the training images, as given, or ``(None, None)``."""
    if normalize is True:
        return _statistics_of(train_images, len(train_images))
    if normalize is False or normalize is None:
        return None, None
    return normalize


def _loaders(sources, files, batch_size, common, train_options):
    """``(train_iter, test_iter)``: the training options apply to the training loader only."""
    n = files.n_train
    return (ArrayLoader(sources[0], files.labels[:n], batch_size, **train_options, **common),
            ArrayLoader(sources[1], files.labels[n:], batch_size, **common))


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
    (ArrayLoader, ArrayLoader)
        Both know ``classes`` and ``description()``; streamed ones hold a
        thread pool that ``close()`` (or a ``with`` block) shuts down.

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
    # The loaders check these too, but only after every file has been decoded.
    validate.non_negative_int(seed, "seed", owner)
    validate.non_negative_int(max_shift, "max_shift", owner)
    validate.probability(erase, "erase", owner)
    found = scan_image_folder(path, val_fraction)
    _notice_ignored(found, path, notice)
    files, bad = _chosen(found, limit), BadImages(skip_bad_images)
    with thread_pool() as pool:
        files, sizes, channels = _probe(files, pool, bad, path)
        size, uniform = _input_size(files.paths, sizes, resize)
        in_memory = _fits_in_memory(len(files.paths), size, channels, memory_budget)
        images, good = _decode(files.paths, size, channels, not uniform, in_memory, pool, bad)
    bad.report(notice)
    files = _kept(files, good, path)
    sources = _sources(images, files, size, channels, not uniform)
    mean, std = _normalisation(normalize, sources[0])
    common = dict(resize=resize if uniform else None, mean=mean, std=std, classes=found.classes)
    train_options = dict(shuffle=shuffle, seed=seed, num_parts=num_parts, part_index=part_index,
                         augment=augment, max_shift=max_shift, equal_parts=equal_parts,
                         erase=erase)
    return _loaders(sources, files, batch_size, common, train_options)
