"""Weight files read with numpy alone: no PyTorch, no MXNet, no pickle code run.

``read_state_dict(path)`` reads a ``torch.save``-d state_dict (``.pth``,
PyTorch >= 1.6; ``pth.py``, through a restricted unpickler) or a
``.safetensors`` file (``safetensors.py``) into an ``OrderedDict`` of numpy
arrays by name; anything else, or anything unsafe, raises ``WeightFileError``
with a sentence that says what is wrong and what to do.  What the names mean
for a network is the business of ``gluon_resnet.pretrained``, above the
model registry.
"""

from .decode import WeightFileError
from .pth import read_torch_zip
from .reader import read_state_dict
from .safetensors import read_safetensors

__all__ = ["WeightFileError", "read_state_dict", "read_torch_zip", "read_safetensors"]
