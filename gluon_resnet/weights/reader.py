"""One entry point for weight files: the format is recognised from the file's first bytes."""

import os

from .decode import WeightFileError
from .pth import read_torch_zip
from .safetensors import read_safetensors, safetensors_header_length

__all__ = ["read_state_dict"]


def read_state_dict(path):
    """Read a weight file, ``.pth`` (torch zip) or ``.safetensors``, into numpy arrays.

    The format is recognised from the file's first bytes, not its name.

    Parameters
    ----------
    path : str or os.PathLike
        A ``torch.save``-d state_dict (PyTorch >= 1.6) or a safetensors file.

    Returns
    -------
    collections.OrderedDict of str -> numpy.ndarray
        The tensors by name, each with its shape; bfloat16 becomes float32.

    Raises
    ------
    WeightFileError
        The file is neither, is a legacy (pre-1.6) torch file, or is unsafe
        or damaged; the message says which and what to do.
    """
    source = os.fspath(path)
    with open(source, "rb") as f:
        head = f.read(9)
        f.seek(0, os.SEEK_END)
        size = f.tell()
    if head.startswith(b"PK\x03\x04"):
        return read_torch_zip(source)
    if safetensors_header_length(head, size) is not None:
        return read_safetensors(source)
    if head[:1] == b"\x80" or size > 262 and _is_tar(source):
        raise WeightFileError(
            "%s is in PyTorch's legacy (pre-1.6) format, which this reader refuses: re-save it "
            "with a current PyTorch, e.g. torch.save(torch.load(old, weights_only=True), new)."
            % source)
    raise WeightFileError("%s is neither a PyTorch .pth file (a zip archive) nor a "
                          ".safetensors file." % source)


def _is_tar(source):
    with open(source, "rb") as f:
        f.seek(257)
        return f.read(5) == b"ustar"

