"""Export a trained network for use outside gluon_resnet: ONNX, or MXNet's own symbol format.

``gluon-resnet export --params CKPT --onnx OUT.onnx [--symbol PREFIX]``;
``gluon-resnet export --params RUN --int8 --symbol PREFIX`` writes the run's
int8 network (``gluon-resnet quantize``) the same way, loadable by plain MXNet
(1.9.1 with oneDNN, on the CPU) with ``SymbolBlock.imports``.

What the exported model takes and gives
---------------------------------------
Input ``data``: float32 images ``(N, C, H, W)`` with pixel values in [0, 1]
(pixel / 255, as ``load_data_fashion_mnist`` gives them) at the size the run
trained at; the batch size ``N`` is free.  Output ``logits``: ``(N,
classes)``, before softmax.  Any normalisation the run used (``(x - mean) /
std`` per channel) is part of the exported graph (``PixelInput``), so a user
feeds plain pixels.

The run's data description comes from the checkpoint's ``meta["data"]``
(``gluon_resnet.data.DataDescription``); a checkpoint without it is a
Fashion-MNIST run: the ten class names of ``TEXT_LABELS``, 1 channel,
``resize`` (or 28) pixels square, no normalisation.

The network is always built and exported in fp32: a bf16 run keeps fp32
weights (AMP computes in bf16 but stores fp32), so its checkpoint loads as
is.  AMP cannot be undone in a process, so an export in a process where it
is on is refused (``gluon-resnet export`` is a process of its own).

ONNX
----
Through MXNet 1.9.1's ``mx.onnx.export_model``, with three fixes for the
onnx releases of today:

- MXNet's exporter imports ``onnx.mapping``, which onnx removed in 1.16;
  ``_onnx_with_mapping`` supplies its two tables from ``onnx.helper`` when
  they are missing (and only then).
- Its converters write opset-13 operators, but ``onnx.helper.make_model``
  stamps the model with the newest opset the installed onnx knows; the file is
  stamped with ``ONNX_OPSET`` instead, the opset its nodes follow.
- It lists the weights as graph inputs too (ONNX before IR 4); they are
  removed from the inputs, so ``data`` is the only input and ONNX Runtime
  may fold the constants.

Class names and the input description go into the model's ``metadata_props``
(all JSON strings): ``classes``, ``input_size`` ([H, W]), ``input_channels``,
``input_layout`` (``"NCHW"``), ``input_range`` ([0, 1]), ``normalization``
(``{"mean": [...], "std": [...]}``, applied inside the graph, or null) and
``model``.

The symbol format
-----------------
``HybridBlock.export(prefix)``: ``PREFIX-symbol.json`` and
``PREFIX-0000.params``, for ``mx.gluon.SymbolBlock.imports(PREFIX +
'-symbol.json', ['data'], PREFIX + '-0000.params')``; same input and
output as the ONNX file.
"""

import json
import os
import shutil
import sys
import tempfile
import types

import numpy as np

from ._mxnet import mx
from mxnet.contrib.amp import amp as _amp
from mxnet.gluon import nn

from .trained import load_trained

__all__ = ["ExportError", "ONNX_OPSET", "PixelInput", "load_for_export",
           "export_symbol", "export_onnx", "export_checkpoint"]

#: The ONNX opset of the exported files: the one MXNet 1.9.1's converters write.
ONNX_OPSET = 13


class ExportError(ValueError):
    """The network cannot be exported: bad data description, AMP on, onnx missing."""


# ---------------------------------------------------------------------------
# What the run trained on.
# ---------------------------------------------------------------------------

class PixelInput(nn.HybridBlock):
    """``net`` behind the run's normalisation: takes pixels in [0, 1], gives ``net``'s output.

    Parameters
    ----------
    net : mxnet.gluon.HybridBlock
        The trained network, ``(N, C, H, W) -> (N, classes)``.
    mean, std : sequence of C floats, optional
        ``(x - mean) / std`` per channel before ``net``; both None: ``x``
        goes to ``net`` as it is.  They are constants of the graph.
    """

    def __init__(self, net, mean=None, std=None, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.normalized = mean is not None
        if self.normalized:
            shape = (1, len(mean), 1, 1)
            self.mean = self.params.get_constant(
                "mean", np.asarray(mean, dtype=np.float32).reshape(shape))
            self.std = self.params.get_constant(
                "std", np.asarray(std, dtype=np.float32).reshape(shape))

    def hybrid_forward(self, F, x, mean=None, std=None):
        if self.normalized:
            x = F.broadcast_div(F.broadcast_sub(x, mean), std)
        return self.net(x)


def load_for_export(path, int8=False):
    """The network of the checkpoint at ``path`` in fp32 on the CPU, wrapped in ``PixelInput``.

    With ``int8``, the run's int8 network instead (``gluon-resnet quantize``;
    ``int8.load_int8``), behind the same ``PixelInput``.

    Returns
    -------
    (PixelInput, DataDescription, TrainConfig)
        The hybridized network (called once, so its graph exists), the data
        description and the run's configuration.

    Raises
    ------
    ExportError
        bf16 AMP is on in this process.
    CheckpointError
        The file is not a checkpoint, its data description is bad, or it does
        not hold the parameters of the network its config names.
    """
    if _amp._amp_initialized:
        raise ExportError("bf16 AMP is on in this process, and it cannot be turned off: the "
                          "exported graph would compute in bf16.  Export in a new process "
                          "(gluon-resnet export), which builds the network in fp32.")
    ctx = mx.cpu()
    trained = load_trained(path, ctx, "int8" if int8 else "fp32")
    net, description, config = trained.net, trained.data, trained.config
    shape = (1,) + description.input_shape
    wrapped = PixelInput(net, description.mean, description.std, prefix="export_")
    wrapped.params.initialize(ctx=ctx)  # its own constants; net's parameters are loaded
    wrapped.hybridize()
    wrapped(mx.nd.zeros(shape, ctx=ctx))
    return wrapped, description, config


# ---------------------------------------------------------------------------
# Writing.
# ---------------------------------------------------------------------------

def export_symbol(net, prefix):
    """``PREFIX-symbol.json`` and ``PREFIX-0000.params`` of a network from ``load_for_export``.

    Returns the two paths.  The input is named ``data``.
    """
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    net.export(prefix)  # remove_amp_cast=True: a bf16 graph could not get here anyway
    return prefix + "-symbol.json", prefix + "-0000.params"


def _onnx_with_mapping():
    """``onnx``, with the ``onnx.mapping`` tables MXNet 1.9.1's exporter needs.

    onnx 1.16 removed ``onnx.mapping``; MXNet's exporter reads two of its
    tables, ``NP_TYPE_TO_TENSOR_TYPE`` and ``TENSOR_TYPE_TO_NP_TYPE``.  When
    they are missing they are rebuilt from ``onnx.helper``'s public
    conversion and registered as ``onnx.mapping``; an onnx that has them is
    left alone.
    """
    try:
        import onnx
        from onnx import helper
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install onnx (and "
                          "onnxruntime to run the file)") from None
    try:
        from onnx import mapping  # noqa: F401  (onnx < 1.16)
        return onnx
    except ImportError:
        pass
    tensor_to_np = {}
    for name in ("FLOAT", "DOUBLE", "FLOAT16", "INT8", "INT16", "INT32", "INT64", "UINT8",
                 "UINT16", "UINT32", "UINT64", "BOOL"):
        code = getattr(onnx.TensorProto, name)
        tensor_to_np[code] = np.dtype(helper.tensor_dtype_to_np_dtype(code))
    mapping = types.ModuleType("onnx.mapping")
    mapping.__doc__ = "onnx.mapping's two tables, rebuilt by gluon_resnet.export for MXNet 1.9.1."
    mapping.TENSOR_TYPE_TO_NP_TYPE = tensor_to_np
    mapping.NP_TYPE_TO_TENSOR_TYPE = {dtype: code for code, dtype in tensor_to_np.items()}
    sys.modules["onnx.mapping"] = mapping
    onnx.mapping = mapping
    return onnx


def _metadata(description, config):
    stored = description.to_dict()
    return {"classes": stored["classes"], "input_size": stored["size"],
            "input_channels": stored["channels"], "input_layout": "NCHW",
            "input_range": [0, 1],
            "normalization": None if stored["mean"] is None
            else {"mean": stored["mean"], "std": stored["std"]},
            "model": config.model}


def export_onnx(net, description, config, path):
    """Write a network from ``load_for_export`` to the ONNX file ``path``.

    The batch dimension is free; the input is ``data`` (float32, ``(N, C, H,
    W)``, pixels in [0, 1]), the output ``logits``; the metadata is described
    in the module's docstring.  Returns ``path``.
    """
    onnx = _onnx_with_mapping()
    work = tempfile.mkdtemp(prefix="gluon_resnet-export-")
    try:
        symbol_file, params_file = export_symbol(net, os.path.join(work, "net"))
        sym = mx.sym.load(symbol_file)
        params = {key.split(":", 1)[1]: value for key, value in mx.nd.load(params_file).items()}
        shape = description.input_shape
        raw = os.path.join(work, "raw.onnx")
        mx.onnx.export_model(sym, params, in_shapes=[(1,) + shape], in_types=[np.float32],
                             onnx_file_path=raw, dynamic=True,
                             dynamic_input_shapes=[(None,) + shape])
        model = onnx.load(raw)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    assert [value.name for value in graph.input] == ["data"], graph.input
    (output,) = graph.output
    for node in graph.node:
        node.output[:] = ["logits" if name == output.name else name for name in node.output]
    output.name = "logits"
    del model.opset_import[:]
    model.opset_import.extend([onnx.helper.make_opsetid("", ONNX_OPSET)])
    model.producer_name, model.producer_version = "gluon_resnet", mx.__version__
    model.doc_string = ("%s from gluon_resnet: input 'data', float32 (N, %d, %d, %d) pixels in "
                        "[0, 1]; output 'logits' (N, %d)."
                        % ((config.model,) + shape + (len(description.classes),)))
    onnx.helper.set_model_props(model, {key: json.dumps(value) for key, value
                                        in _metadata(description, config).items()})
    onnx.checker.check_model(model)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    onnx.save(model, path)
    return path


def export_checkpoint(path, onnx=None, symbol=None, out=print, int8=False):
    """What ``gluon-resnet export`` does: the checkpoint at ``path`` to ONNX and/or symbol files.

    Parameters
    ----------
    path : str
        A ``checkpoint.ckpt`` written by training.
    onnx : str, optional
        The ONNX file to write.
    symbol : str, optional
        The prefix of ``PREFIX-symbol.json`` and ``PREFIX-0000.params``.
    out : callable
        Prints one line per file written.
    int8 : bool
        Export the run's int8 network (symbol format only: MXNet's ONNX
        exporter has no converter for oneDNN's fused int8 operators).

    Returns
    -------
    list of str
        The files written.
    """
    if not (onnx or symbol):
        raise ExportError("say what to write: --onnx OUT.onnx and/or --symbol PREFIX")
    if int8 and onnx:
        raise ExportError("--int8 writes MXNet's symbol format only (--symbol PREFIX): MXNet's "
                          "ONNX exporter has no converter for oneDNN's fused int8 operators; "
                          "for an int8 ONNX file quantize the fp32 one with ONNX Runtime")
    net, description, config = load_for_export(path, int8)
    size = "x".join(map(str, description.size))
    what = "%s%s, input (N, %d, %s) pixels in [0, 1]%s, %d classes" % (
        config.model, " int8" if int8 else "", description.channels, size,
        ", normalisation inside" if description.mean is not None else "",
        len(description.classes))
    written = []
    if onnx:
        written.append(export_onnx(net, description, config, onnx))
        out("wrote %s (ONNX opset %d): %s" % (onnx, ONNX_OPSET, what))
    if symbol:
        files = export_symbol(net, symbol)
        written += files
        out("wrote %s and %s: %s" % (files + (what,)))
    return written
