"""Finding the four Fashion-MNIST files offline, and MXNet's download as the last resort.

The files are looked for in several folders (``find_fashion_mnist``) before
MXNet is asked to download them, so the Debian package
``dataset-fashion-mnist`` or a copy made by hand works without a network.
"""

import collections
import os

from .._mxnet import mx
from ..validate import in_flags

__all__ = ["DatasetNotFoundError", "FashionMNISTFiles", "FILE_NAMES", "SYSTEM_DATA_DIR",
           "DATA_ENV", "mxnet_data_dir", "download_with_mxnet", "find_fashion_mnist"]

#: The four files, by role, without the ``.gz`` a compressed copy adds.
FILE_NAMES = collections.OrderedDict([
    ("train_images", "train-images-idx3-ubyte"),
    ("train_labels", "train-labels-idx1-ubyte"),
    ("test_images", "t10k-images-idx3-ubyte"),
    ("test_labels", "t10k-labels-idx1-ubyte"),
])

#: Where Debian's package ``dataset-fashion-mnist`` puts the files.
SYSTEM_DATA_DIR = "/usr/share/datasets/fashion-mnist"

#: Environment variable naming a folder that holds the four files.
DATA_ENV = "GLUON_RESNET_DATA"

# _ROOT: how the caller names the folder, root=FOLDER in Python, --data-root FOLDER on the
# command line (_in_words puts it in).
_HOW_TO_GET = (
    "To get the data: sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu), or put "
    "the four files %s (gzip-compressed with .gz, or uncompressed without it) in a folder "
    "and pass <root> or set %s=FOLDER."
    % (", ".join(n + ".gz" for n in FILE_NAMES.values()), DATA_ENV))


class DatasetNotFoundError(FileNotFoundError):
    """The Fashion-MNIST files are in none of the folders searched and could not be downloaded."""


def _not_found(text, root=None):
    """``DatasetNotFoundError`` of ``text`` with each ``<root>`` in the caller's words.

    The first ``<root>`` is the folder given (``root``), if any: ``root='/x'`` in
    Python, ``--data-root /x`` as ``exc.flags`` for the command line
    (``validate.in_flags``); the others the advice, ``root=FOLDER`` or
    ``--data-root FOLDER``.
    """
    python, flags = text, text
    if root is not None:
        python = python.replace("<root>", "root=%r" % (root,), 1)
        flags = flags.replace("<root>", "--data-root %s" % root, 1)
    return in_flags(DatasetNotFoundError(python.replace("<root>", "root=FOLDER")),
                    flags.replace("<root>", "--data-root FOLDER"))


#: Paths of the four files, by role.
FashionMNISTFiles = collections.namedtuple("FashionMNISTFiles", list(FILE_NAMES))


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
            why = "does not hold Fashion-MNIST: it %s. %s" % (_describe(root, missing),
                                                              _HOW_TO_GET)
            raise _not_found("<root> " + why, root)
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
    text = "Fashion-MNIST was not found. Looked in:\n%s\n%s\n%s" % ("\n".join(looked), attempt,
                                                                    _HOW_TO_GET)
    raise _not_found(text)
