"""gluon_resnet: d2l-zh chapter 5.11 (ResNet) as an installable MXNet Gluon library.

The book's names work unchanged, those of the first edition (``d2lzh``, legacy
``nd`` arrays) and those of the current one (``d2l`` 1.x, after ``npx.set_np()``)::

    from gluon_resnet import Residual, resnet_block, try_gpu, load_data_fashion_mnist, train_ch5
    from gluon_resnet import train_ch6, evaluate_accuracy_gpu, Timer, Accumulator

Modules, one concern each, each importing only the ones below it: ``cli`` (the
``gluon-resnet`` command) > ``export`` (ONNX, symbol files), ``predict`` (image
files) > ``evaluation`` >
``experiment`` (a run from a configuration) > ``trained`` (a trained network
read back), ``runlock`` (one run per folder) > ``config`` (``TrainConfig``,
recipes), ``training`` (the loop, ``train_ch5``, ``train_ch6``), ``callbacks``,
``distributed`` (worker, peers, launcher, hosts), ``data`` (files, IDX reading, loader, image
folders) >
``pretrained`` (torchvision weights into the registered networks, ``get_model``) >
``models`` (spec table and registry), ``weights`` (weight files, numpy only) >
``blocks``, ``summary``, ``checkpoint``, ``plotting``, ``precision`` (bf16) >
``autoprecision`` (what ``--precision auto`` measured),
``signals`` (stop signals), ``events`` (``Callback``, the training
exceptions), ``devices`` (``try_gpu``), ``validate`` (argument checks),
``meters`` (``Timer``, ``Accumulator``), ``arrays`` (MXNet's legacy and numpy array modes).
"""

from ._mxnet import mx  # noqa: F401  (fails early with install advice)
from .blocks import Residual, resnet_block
from .config import TrainConfig
from .data import (DatasetError, DatasetNotFoundError, FashionMNISTLoader, find_fashion_mnist,
                   get_fashion_mnist_labels, load_data_fashion_mnist, load_fashion_mnist_arrays,
                   read_idx)
from .devices import try_all_gpus, try_gpu
from .events import Callback, TrainingDiverged, TrainingInterrupted
from .experiment import run_training
from .meters import Accumulator, Timer
from .models import chapter_resnet18, list_models, resnet18
from .plotting import show_fashion_mnist
from .pretrained import get_model
from .summary import format_summary, summarize
from .training import Learner, evaluate_accuracy, evaluate_accuracy_gpu, train_ch5, train_ch6

__version__ = "0.1.0"

__all__ = [
    # the book's names
    "Residual", "resnet_block", "resnet18", "try_gpu", "try_all_gpus", "load_data_fashion_mnist",
    "get_fashion_mnist_labels", "show_fashion_mnist", "evaluate_accuracy", "train_ch5",
    # the current edition's names (d2l 1.x, numpy mode)
    "train_ch6", "evaluate_accuracy_gpu", "Timer", "Accumulator",
    # networks
    "chapter_resnet18", "get_model", "list_models", "summarize", "format_summary",
    # data
    "FashionMNISTLoader", "find_fashion_mnist", "load_fashion_mnist_arrays", "read_idx",
    "DatasetError", "DatasetNotFoundError",
    # training
    "Learner", "Callback", "TrainConfig", "run_training", "TrainingInterrupted",
    "TrainingDiverged",
]
