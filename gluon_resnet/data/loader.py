"""Batches from ``uint8`` image arrays, like d2lzh's ``DataLoader``, reproducible and shardable.

``ArrayLoader`` serves Fashion-MNIST and image folders alike: ``(N, H, W)``
(grayscale) or ``(N, H, W, C)`` ``uint8`` images, in memory or from a streamed
source (see ``gluon_resnet.data.images.StreamedImages``); ``FashionMNISTLoader``,
what ``load_data_fashion_mnist`` returns, is the same loader under the name
d2l code knows, with Fashion-MNIST's class names.  It makes each batch with one resize
operator, and normalises per channel when given ``mean`` and ``std``; its
shuffling and augmentation draw from streams derived from ``(seed, epoch)``
with numpy's ``SeedSequence``, so a resumed run sees the same batches and
two seeds never share a stream.  The values of a batch are bit-identical to
those of d2lzh's pipeline (``transforms.Resize`` then ``transforms.ToTensor``)
for the same images.
"""

import numpy as np

from .._mxnet import mx
from .. import validate
from ..arrays import in_caller_mode
from .description import DataDescription
from .idx import NUM_CLASSES, TEXT_LABELS, balanced_subset, load_fashion_mnist_arrays

__all__ = ["ArrayLoader", "FashionMNISTLoader", "load_data_fashion_mnist", "epoch_rng", "SHUFFLE",
           "AUGMENT", "ERASE", "ERASE_AREA", "ERASE_RATIO"]

#: The random streams of an epoch (``epoch_rng``'s ``stream``).
SHUFFLE, AUGMENT, ERASE = 0, 1, 2

#: Random erasing's rectangle (Zhong et al. 2020, "Random Erasing Data
#: Augmentation", section 3.1): its area is a uniform fraction of the image in
#: ``ERASE_AREA`` and its aspect ratio (height / width) log-uniform in ``ERASE_RATIO``.
ERASE_AREA = (0.02, 0.4)
ERASE_RATIO = (0.3, 1 / 0.3)


def epoch_rng(seed, epoch, stream):
    """The generator of one random stream of one epoch.

    ``numpy.random.SeedSequence(seed, spawn_key=(epoch, stream))``: every
    ``(seed, epoch, stream)`` gets an independent stream, so seed 1 never
    replays seed 0 one epoch later (as ``RandomState(seed + epoch)`` would)
    and shuffling and augmentation never share draws.

    Returns
    -------
    numpy.random.Generator
    """
    sequence = np.random.SeedSequence(int(seed), spawn_key=(int(epoch), int(stream)))
    return np.random.Generator(np.random.PCG64(sequence))


class ArrayLoader:
    """Batches ``(X, y)`` from ``uint8`` images, like d2lzh's ``DataLoader``.

    ``X`` is a float32 ``NDArray`` of shape ``(batch, C, H, W)`` with values in
    [0, 1] (``H = W = resize`` when given; ``C = 1`` for ``(N, H, W)`` images),
    or ``(x - mean) / std`` per channel when ``mean`` and ``std`` are given;
    ``y`` an int32 ``NDArray`` of shape ``(batch,)``; after ``npx.set_np()`` both
    are ``mxnet.np`` arrays (the mode when a batch is made decides).  Each batch
    costs one fancy index of the numpy array, one copy into an ``NDArray``, one
    batched resize and one ``to_tensor``: the values equal d2lzh's
    ``Resize(resize)`` + ``ToTensor()`` exactly.

    Shuffling is reproducible: epoch ``e`` visits the examples in the order
    ``epoch_rng(seed, e, SHUFFLE).permutation(N)``.  The loader counts
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
    images : numpy.ndarray or streamed source
        ``(N, H, W)`` or ``(N, H, W, C)`` ``uint8``; or an object with
        ``streamed = True``, ``shape``, ``dtype``, ``len()`` and
        ``source[indices]`` giving those images as a numpy array (read from
        disk per batch, see ``images.StreamedImages``); a source with a
        ``close()`` is closed by the loader's ``close()``.
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
        only on ``(seed, epoch)``, like the shuffling: each position of the
        epoch's order has its own draw, and a shard takes the draws of its
        positions, so shards never share draws and ``N`` workers together
        augment as one process would.
    max_shift : int, default 2
        Largest shift, in pixels, when ``augment`` is set; 0 flips only.
    erase : float, default 0
        Random erasing: each training image, with this probability, gets one
        rectangle set to black (before normalisation), of ``ERASE_AREA`` of
        its area and aspect ratio in ``ERASE_RATIO``; drawn from the epoch's
        ``ERASE`` stream per position, like the flips and shifts, so shards
        erase as one process would.  Independent of ``augment``.
    mean, std : sequence of float, optional
        Per-channel statistics of pixel values in [0, 1]; given together, every
        batch becomes ``(x / 255 - mean) / std`` (after augmentation, so the
        zeros a shift fills in are black pixels).
    classes : sequence of str, optional
        Class names in label order (default: ``"0"``, ``"1"``, ... up to the
        largest label; Fashion-MNIST's ten for ``FashionMNISTLoader``).
    """

    #: Class names when none are given (None: the labels as text).
    default_classes = None

    def __init__(self, images, labels, batch_size, shuffle=False, seed=0, resize=None,
                 last_batch="keep", num_parts=1, part_index=0, ctx=None, augment=False,
                 max_shift=2, equal_parts=False, mean=None, std=None, classes=None, erase=0.0):
        owner = type(self).__name__
        if not getattr(images, "streamed", False):
            images = np.asarray(images)
        labels = np.asarray(labels)
        if len(images.shape) not in (3, 4) or images.dtype != np.uint8:
            raise ValueError("%s: images must be a uint8 array of shape (N, H, W) or "
                             "(N, H, W, C), got %s %s." % (owner, images.dtype, images.shape))
        if labels.shape != images.shape[:1]:
            raise ValueError("%s: labels must have shape (%d,) to match the images, got %s."
                             % (owner, len(images), labels.shape))
        if last_batch not in ("keep", "discard"):
            raise ValueError("%s: last_batch must be 'keep' or 'discard', got %r."
                             % (owner, last_batch))
        validate.non_negative_int(seed, "seed", owner)
        validate.shard(num_parts, part_index, owner)
        self.images, self.labels = images, labels
        self.batch_size = validate.positive_int(batch_size, "batch_size", owner)
        self.resize = validate.optional_positive_int(resize, "resize", owner)
        self.shuffle, self.seed, self.last_batch = bool(shuffle), int(seed), last_batch
        self.num_parts, self.part_index = num_parts, part_index
        self.equal_parts = bool(equal_parts)
        self.ctx = ctx if ctx is not None else mx.cpu()
        validate.non_negative_int(max_shift, "max_shift", owner)
        self.augment, self.max_shift = bool(augment), int(max_shift)
        self.erase = float(validate.probability(erase, "erase", owner))
        self.channels = images.shape[3] if len(images.shape) == 4 else 1
        self.mean, self.std = _statistics(mean, std, self.channels, owner)
        # The same two (1, C, 1, 1) arrays normalise every batch.
        self._normalisation = None if self.mean is None else tuple(
            mx.nd.array(v).reshape((1, self.channels, 1, 1)) for v in (self.mean, self.std))
        if classes is None:
            classes = self.default_classes
        if classes is None:
            classes = [str(i) for i in range(int(labels.max()) + 1 if labels.size else 0)]
        self.classes = list(classes)
        self.epoch = 0
        total = len(images)
        self.num_examples = total // num_parts + (
            1 if part_index < total % num_parts and not self.equal_parts else 0)

    def __len__(self):
        """Number of batches per epoch."""
        full, rest = divmod(self.num_examples, self.batch_size)
        return full + (1 if rest and self.last_batch == "keep" else 0)

    def _positions(self):
        """This shard's positions in an epoch's order of all ``N`` examples."""
        total = len(self.images)
        end = total - total % self.num_parts if self.equal_parts else total
        return np.arange(self.part_index, end, self.num_parts)

    def indices(self, epoch):
        """Indices into ``images`` of this loader's examples in epoch ``epoch``, in order."""
        if self.shuffle:
            order = epoch_rng(self.seed, epoch, SHUFFLE).permutation(len(self.images))
        else:
            order = np.arange(len(self.images))
        return order[self._positions()]

    def batch(self, idx, affine=None, boxes=None):
        """``(X, y)`` for the examples ``idx`` (indices into ``images``).

        ``affine``, an ``(len(idx), 6)`` array of per-image affine transforms
        in MXNet's normalised coordinates, resamples the batch (augmentation).
        ``boxes``, an ``(len(idx), 4)`` array of ``top, left, height, width``
        in pixels, blacks out one rectangle per image (height 0: none).
        """
        X = self.images[idx]
        X = mx.nd.array(X if X.ndim == 4 else X[:, :, :, None], dtype=np.uint8)  # NHWC, as d2lzh
        if self.resize is not None:
            X = mx.nd.image.resize(X, (self.resize, self.resize))
        X = mx.nd.image.to_tensor(X)  # NCHW float32 / 255
        if affine is not None:
            grid = mx.nd.GridGenerator(mx.nd.array(affine), transform_type="affine",
                                       target_shape=X.shape[2:])
            X = mx.nd.BilinearSampler(X, grid)
        if boxes is not None:
            X = X * mx.nd.array(_keep_mask(boxes, X.shape[2], X.shape[3]))
        if self._normalisation is not None:
            mean, std = self._normalisation
            X = mx.nd.broadcast_div(mx.nd.broadcast_sub(X, mean), std)
        y = mx.nd.array(self.labels[idx], dtype=np.int32)
        return (in_caller_mode(X.as_in_context(self.ctx)),
                in_caller_mode(y.as_in_context(self.ctx)))

    def augmentation(self, epoch):
        """Affine transforms (flip, shift) of this loader's examples in ``epoch``: ``(n, 6)``.

        Row ``i`` belongs to the ``i``-th example of ``indices(epoch)``.
        """
        rng = epoch_rng(self.seed, epoch, AUGMENT)
        total, positions = len(self.images), self._positions()
        height, width = self.size
        flip = np.where(rng.random(total)[positions] < 0.5, -1.0, 1.0)
        # Pixel centres span [-1, 1]: one pixel is 2 / (side - 1) there.
        shift = rng.integers(-self.max_shift, self.max_shift + 1, size=(total, 2))[positions]
        shift = shift * 2.0 / (np.array([width, height]) - 1)
        n = len(positions)
        affine = np.zeros((n, 6), dtype=np.float32)
        affine[:, 0], affine[:, 2], affine[:, 4], affine[:, 5] = flip, shift[:, 0], 1.0, shift[:, 1]
        return affine

    def erasing(self, epoch):
        """Random erasing's rectangles for ``epoch``: ``(n, 4)`` ints ``top, left, height, width``.

        Row ``i`` belongs to the ``i``-th example of ``indices(epoch)``; images
        left alone (probability ``1 - erase``) get height and width 0.
        """
        rng = epoch_rng(self.seed, epoch, ERASE)
        total, positions = len(self.images), self._positions()
        height, width = self.size
        chosen = rng.random(total) < self.erase
        area = rng.uniform(*ERASE_AREA, size=total) * height * width
        ratio = np.exp(rng.uniform(*np.log(ERASE_RATIO), size=total))
        h = np.clip(np.round(np.sqrt(area * ratio)), 1, height).astype(np.int64)
        w = np.clip(np.round(np.sqrt(area / ratio)), 1, width).astype(np.int64)
        top = np.floor(rng.random(total) * (height - h + 1)).astype(np.int64)
        left = np.floor(rng.random(total) * (width - w + 1)).astype(np.int64)
        h, w = np.where(chosen, h, 0), np.where(chosen, w, 0)
        return np.stack([top, left, h, w], axis=1)[positions]

    @property
    def size(self):
        """``(H, W)`` of the batches."""
        return (self.resize, self.resize) if self.resize else tuple(self.images.shape[1:3])

    def description(self):
        """What a network trained on these batches expects, as a ``DataDescription``.

        Its ``to_dict()`` is a checkpoint's ``meta["data"]``.
        """
        return DataDescription(self.classes, self.channels, self.size, self.mean, self.std)

    def __iter__(self):
        order = self.indices(self.epoch)
        affine = self.augmentation(self.epoch) if self.augment else None
        boxes = self.erasing(self.epoch) if self.erase else None
        self.epoch += 1
        step = self.batch_size
        return (self.batch(order[i:i + step], None if affine is None else affine[i:i + step],
                           None if boxes is None else boxes[i:i + step])
                for i in range(0, len(self) * step, step))

    def close(self):
        """Close the image source if it has a ``close()`` (a streamed one's thread pool)."""
        close = getattr(self.images, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return ("%s(num_examples=%d, batch_size=%d, batches=%d, shuffle=%s, resize=%s, epoch=%d)"
                % (type(self).__name__, self.num_examples, self.batch_size, len(self),
                   self.shuffle, self.resize, self.epoch))


class FashionMNISTLoader(ArrayLoader):
    """``ArrayLoader`` under the name d2l code and notebooks know, with Fashion-MNIST's classes.

    What ``load_data_fashion_mnist`` returns; its messages and ``repr`` name
    ``FashionMNISTLoader``.
    """

    default_classes = TEXT_LABELS


def _keep_mask(boxes, height, width):
    """``(n, 1, height, width)`` float32: 0 inside each row's rectangle of ``boxes``, else 1."""
    top, left, h, w = (boxes[:, k, None, None] for k in range(4))
    rows = np.arange(height)[None, :, None]
    cols = np.arange(width)[None, None, :]
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    return (~inside).astype(np.float32)[:, None]


def _statistics(mean, std, channels, owner):
    """``(mean, std)`` as lists of ``channels`` floats (std > 0), or ``(None, None)``."""
    if mean is None and std is None:
        return None, None
    if mean is None or std is None:
        raise ValueError("%s: mean and std must be given together, got mean=%r, std=%r."
                         % (owner, mean, std))
    mean, std = np.asarray(mean, float).reshape(-1), np.asarray(std, float).reshape(-1)
    if mean.size != channels or std.size != channels:
        raise ValueError("%s: mean and std must hold one value per channel (%d), got %s and %s."
                         % (owner, channels, mean.tolist(), std.tolist()))
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ValueError("%s: std must be positive and mean and std finite, got %s and %s."
                         % (owner, mean.tolist(), std.tolist()))
    return mean.tolist(), std.tolist()


def load_data_fashion_mnist(batch_size, resize=None, root=None, *, limit=None, test_limit=None,
                            seed=0, shuffle=True, num_parts=1, part_index=0, verify=True,
                            augment=False, max_shift=2, equal_parts=False, erase=0.0):
    """d2lzh and d2l: ``(train_iter, test_iter)`` over Fashion-MNIST.

    The batches come in the caller's mode: legacy ``NDArray`` objects, or ``mxnet.np``
    arrays after ``npx.set_np()`` (the current edition's numpy mode).

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
        Seed of the shuffling and augmentation streams (see ``epoch_rng``).
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
    erase : float, default 0
        Probability of random erasing per training image (see ``FashionMNISTLoader``).

    Returns
    -------
    (FashionMNISTLoader, FashionMNISTLoader)
        ``train_iter`` and ``test_iter``; both keep a smaller last batch.
    """
    owner = "load_data_fashion_mnist"
    validate.positive_int(batch_size, "batch_size", owner)
    validate.optional_positive_int(resize, "resize", owner)
    validate.optional_positive_int(limit, "limit", owner)
    validate.optional_positive_int(test_limit, "test_limit", owner)
    validate.shard(num_parts, part_index, owner)
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
                                    equal_parts=equal_parts, erase=erase)
    test_iter = FashionMNISTLoader(test_x, test_y, batch_size, resize=resize)
    return train_iter, test_iter
