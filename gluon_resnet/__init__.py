"""gluon_resnet: d2l-zh chapter 5.11 (ResNet) as an installable MXNet Gluon library.

The book's names work unchanged::

    from gluon_resnet import Residual, resnet_block, try_gpu

Modules: ``blocks`` (residual blocks), ``models`` (networks and registry),
``summary`` (shape tables), ``devices`` (``try_gpu``), ``cli`` (the
``gluon-resnet`` command).
"""

from ._mxnet import mx  # noqa: F401  (fails early with install advice)
from .blocks import Residual, resnet_block
from .devices import try_gpu, try_all_gpus
from .models import chapter_resnet18, resnet18, get_model, list_models
from .summary import summarize, format_summary
from .data import (load_data_fashion_mnist, get_fashion_mnist_labels, show_fashion_mnist, FashionMNISTLoader, find_fashion_mnist, load_fashion_mnist_arrays, read_idx, measure_loader_throughput, DatasetError, DatasetNotFoundError)

__version__ = "0.1.0"

__all__ = ["Residual", "resnet_block", "try_gpu", "try_all_gpus", "chapter_resnet18",
           "resnet18", "get_model", "list_models", "summarize", "format_summary"]
__all__ += ["load_data_fashion_mnist", "get_fashion_mnist_labels", "show_fashion_mnist", "FashionMNISTLoader", "find_fashion_mnist", "load_fashion_mnist_arrays", "read_idx", "measure_loader_throughput", "DatasetError", "DatasetNotFoundError"]
