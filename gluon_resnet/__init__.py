"""gluon_resnet: d2l-zh chapter 5.11 (ResNet) as an installable MXNet Gluon library.

The book's names work unchanged::

    from gluon_resnet import Residual, resnet_block, try_gpu, load_data_fashion_mnist, train_ch5

Modules, one concern each: ``blocks`` (residual blocks), ``models`` (networks,
spec table and registry), ``summary`` (shape tables), ``devices``
(``try_gpu``), ``data`` (Fashion-MNIST offline), ``training`` (the loop,
``train_ch5``), ``callbacks``, ``checkpoint``, ``experiment`` (a run from a
configuration), ``evaluation``, ``plotting``, ``precision`` (bf16) and
``cli`` (the ``gluon-resnet`` command).
"""

from ._mxnet import mx  # noqa: F401  (fails early with install advice)
from .blocks import Residual, resnet_block
from .data import (DatasetError, DatasetNotFoundError, FashionMNISTLoader, find_fashion_mnist,
                   get_fashion_mnist_labels, load_data_fashion_mnist, load_fashion_mnist_arrays,
                   measure_loader_throughput, read_idx, show_fashion_mnist)
from .devices import try_all_gpus, try_gpu
from .experiment import TrainConfig, run_training
from .models import chapter_resnet18, get_model, list_models, resnet18
from .summary import format_summary, summarize
from .training import (Callback, Learner, TrainingDiverged, TrainingInterrupted,
                       evaluate_accuracy, train_ch5)

__version__ = "0.1.0"

__all__ = [
    # the book's names
    "Residual", "resnet_block", "resnet18", "try_gpu", "try_all_gpus", "load_data_fashion_mnist",
    "get_fashion_mnist_labels", "show_fashion_mnist", "evaluate_accuracy", "train_ch5",
    # networks
    "chapter_resnet18", "get_model", "list_models", "summarize", "format_summary",
    # data
    "FashionMNISTLoader", "find_fashion_mnist", "load_fashion_mnist_arrays", "read_idx",
    "measure_loader_throughput", "DatasetError", "DatasetNotFoundError",
    # training
    "Learner", "Callback", "TrainConfig", "run_training", "TrainingInterrupted",
    "TrainingDiverged",
]
