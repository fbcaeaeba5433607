"""Fashion-MNIST offline, read safely, served like d2lzh's loader.

d2l-zh trains the chapter's ResNet on Fashion-MNIST through
``d2lzh.load_data_fashion_mnist(batch_size, resize)``; this package keeps that
name, signature and return value.  One module per concern:

- ``files``: where the four IDX files are (Debian's ``dataset-fashion-mnist``,
  ``$GLUON_RESNET_DATA``, ``$MXNET_HOME``), and MXNet's download as a last resort;
- ``idx``: the IDX parser with its checks, the checksums, class-balanced
  subsets and the class names;
- ``description``: what a network was trained on (``DataDescription``: class names,
  channels, size, normalisation), as the loader reports it and checkpoints store it;
- ``loader``: batches from ``(N, H, W)`` or ``(N, H, W, C)`` images
  (``ArrayLoader``; ``FashionMNISTLoader`` is its Fashion-MNIST name), reproducible
  shuffling and augmentation, shards for distributed workers, normalisation;
- ``images``: image files decoded to arrays, into memory or per batch
  (``StreamedImages``, which owns and closes its thread pool);
- ``folders``: your own images, class folders of PNG, JPEG or BMP files, scanned,
  decoded and served by the same loader (``load_data_image_folder``).

Pictures of the data set are drawn by ``gluon_resnet.plotting.show_fashion_mnist``.
"""

from .files import (DATA_ENV, FILE_NAMES, SYSTEM_DATA_DIR, DatasetNotFoundError,
                    FashionMNISTFiles, download_with_mxnet, find_fashion_mnist, mxnet_data_dir)
from .idx import (NUM_CLASSES, SUBSET_SEED, TEXT_LABELS, DatasetError, balanced_subset,
                  get_fashion_mnist_labels, load_fashion_mnist_arrays, read_idx)
from .description import DataDescription
from .loader import (AUGMENT, SHUFFLE, ArrayLoader, FashionMNISTLoader, epoch_rng,
                     load_data_fashion_mnist)
from .folders import (IMAGE_EXTENSIONS, MEMORY_BUDGET, SPLIT_SEED, ImageFolderError,
                      StreamedImages, image_files, image_header, load_data_image_folder, read_image,
                      resize_image, scan_image_folder)

__all__ = ["DatasetError", "DatasetNotFoundError", "FashionMNISTFiles", "find_fashion_mnist",
           "read_idx", "load_fashion_mnist_arrays", "balanced_subset", "ArrayLoader",
           "FashionMNISTLoader", "DataDescription",
           "load_data_fashion_mnist", "get_fashion_mnist_labels", "epoch_rng", "TEXT_LABELS",
           "FILE_NAMES", "SYSTEM_DATA_DIR", "DATA_ENV", "NUM_CLASSES", "SUBSET_SEED", "SHUFFLE",
           "AUGMENT", "download_with_mxnet", "mxnet_data_dir", "load_data_image_folder",
           "scan_image_folder", "read_image", "resize_image", "image_files", "image_header",
           "StreamedImages",
           "ImageFolderError", "IMAGE_EXTENSIONS", "MEMORY_BUDGET", "SPLIT_SEED"]
