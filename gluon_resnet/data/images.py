"""Image files decoded to ``uint8`` arrays: one file, a list into memory, or a list per batch.

The decoding step between ``folders`` (which finds the files) and ``loader``
(which makes batches of arrays):

- ``read_image`` and ``image_header`` read one PNG, JPEG or BMP file with
  Pillow; ``resize_image`` resizes one image with the loader's operator;
- ``decode_into_memory`` decodes a list of files once into one array;
  ``check_decodable`` decodes each once and keeps nothing (for streamed sets);
- ``StreamedImages`` decodes the files of each batch when the loader asks,
  in a thread pool that it owns and shuts down (``close()``, ``with``, or
  when it is garbage-collected).

Decoding runs in thread pools with one thread per core: Pillow releases the
GIL while it decodes.
"""

import concurrent.futures
import os
import weakref

import numpy as np
from PIL import Image

from .._mxnet import mx
from .idx import DatasetError

__all__ = ["read_image", "image_header", "resize_image", "decode_into_memory",
           "check_decodable", "probe_images", "StreamedImages", "BadImages", "ImageFolderError",
           "thread_pool"]

#: Pillow modes without colour; every other mode counts as colour.
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class ImageFolderError(DatasetError):
    """An image folder cannot be used as it is: the message names the folder or file."""


def _workers():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def thread_pool(name="gluon_resnet-images"):
    """A thread pool with one thread per core, for decoding (close it, or use ``with``)."""
    return concurrent.futures.ThreadPoolExecutor(_workers(), thread_name_prefix=name)


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


class BadImages:
    """Files that fail to decode, collected so that one message names them all.

    ``report`` refuses them (``ImageFolderError``) or, when skipping, names
    them in one notice; at most ``SHOWN`` are named, then how many more.
    """

    SHOWN = 20

    def __init__(self, skip):
        self.skip, self.paths, self.messages = skip, [], []

    def add(self, path, message):
        self.paths.append(path)
        self.messages.append(message)

    def _more(self):
        more = len(self.paths) - self.SHOWN
        return ["and %d more" % more] if more > 0 else []

    def refuse(self):
        """Raise ``ImageFolderError`` naming every bad file, unless skipping or none is bad."""
        if self.paths and not self.skip:
            n = len(self.paths)
            raise ImageFolderError(
                "%d image file%s cannot be decoded; remove or replace %s, or skip such files with "
                "skip_bad_images (--skip-bad-images):\n%s"
                % (n, "s" * (n > 1), "them" if n > 1 else "it",
                   "\n".join("  " + line for line in self.messages[:self.SHOWN] + self._more())))

    def report(self, notice):
        """``refuse``, or give ``notice`` one line naming the files skipped."""
        self.refuse()
        if self.paths:
            n = len(self.paths)
            notice("skipped %d image file%s that cannot be decoded: %s"
                   % (n, "s" * (n > 1), ", ".join(self.paths[:self.SHOWN] + self._more())))


def _probe(path):
    """``(path, (H, W), colour)`` from the file's header, or ``(path, None, message)``."""
    try:
        size, colour = image_header(path)
    except ImageFolderError as exc:
        return path, None, str(exc)
    return path, size, colour


def probe_images(files, pool, bad):
    """``[(index, (H, W), colour)]`` of the files whose header reads; the others go to ``bad``."""
    good = []
    for i, (file, size, info) in enumerate(list(pool.map(_probe, files))):
        if size is None:
            bad.add(file, info)
        else:
            good.append((i, size, info))
    return good


def _try_read(path, channels):
    """``read_image(path, channels)``, or the error's message for a file that fails to decode."""
    try:
        return read_image(path, channels)
    except ImageFolderError as exc:
        return str(exc)


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


def _shape(count, size, channels):
    return (count,) + tuple(size) + ((channels,) if channels == 3 else ())


def decode_into_memory(files, size, channels, resize_each, pool, bad, chunk=256):
    """Decode every file once into one ``uint8`` array; ``(array, indices of good files)``."""
    images = np.empty(_shape(len(files), size, channels), dtype=np.uint8)
    good = []
    for i, image in _decoded(files, channels, pool, bad, chunk):
        images[len(good)] = resize_image(image, size) if resize_each else image
        good.append(i)
    return images[:len(good)], good


def check_decodable(files, channels, pool, bad, chunk=512):
    """Decode every file once (streamed sets); indices of the good ones."""
    return [i for i, _ in _decoded(files, channels, pool, bad, chunk)]


class StreamedImages:
    """Images read from disk per batch: what ``ArrayLoader`` needs of an array.

    ``source[idx]`` decodes the files ``idx`` to an ``(n, H, W)`` or
    ``(n, H, W, C)`` ``uint8`` array, resized to ``size`` when ``resize_each``
    is set.  The files are decoded in a thread pool with one thread per core,
    which the source owns: ``close()`` (or leaving a ``with`` block, or
    garbage collection) shuts it down, after which the source cannot be read.
    A ``pool`` given by the caller is used instead and left to the caller to
    close.
    """

    streamed = True
    dtype = np.dtype(np.uint8)

    def __init__(self, files, size, channels, resize_each=False, pool=None):
        self.files, self.size = list(files), tuple(size)
        self.channels, self.resize_each = channels, resize_each
        self.shape = _shape(len(self.files), self.size, channels)
        self.closed = False
        if pool is None:
            pool = thread_pool("StreamedImages")
            # No waiting when collected: the last reference may go in one of the pool's threads.
            self._shutdown = weakref.finalize(self, pool.shutdown, wait=False)
        else:
            self._shutdown = None
        self.pool = pool

    def __len__(self):
        return len(self.files)

    def __getitem__(self, idx):
        if self.closed:
            raise ValueError("%r is closed: its images can no longer be read" % self)
        paths = [self.files[i] for i in np.asarray(idx).reshape(-1)]
        images = list(self.pool.map(read_image, paths, [self.channels] * len(paths)))
        if self.resize_each:
            images = [resize_image(image, self.size) for image in images]
        return np.stack(images).reshape((len(paths),) + self.shape[1:])

    def close(self):
        """Shut the own thread pool down (its threads end); closing twice does nothing."""
        self.closed = True
        if self._shutdown is not None and self._shutdown.detach() is not None:
            self.pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "StreamedImages(%d files, size=%s, channels=%d)" % (
            len(self.files), self.size, self.channels)
