"""The int8 inference workers of ``bench.py``: ours (oneDNN), ONNX Runtime and PyTorch.

All three quantize the chapter's network after training, statically, with the
same calibration images, and run it on the same batch:

- ``infer_int8``: ``gluon_resnet.quantize.quantize_network`` (MXNet's
  ``quantize_net_v2``, oneDNN, naive calibration, the image's convolution in
  fp32): what ``gluon-resnet quantize`` makes.
- ``infer_ort_int8``: the network ``gluon-resnet export`` writes (ONNX, fp32),
  quantized by ``onnxruntime.quantization.quantize_static`` (QDQ, uint8
  activations, int8 weights, per-tensor, MinMax calibration), run by the
  CPUExecutionProvider.
- ``infer_torch_int8``: the same network in PyTorch (``torch_reference``),
  post-training static quantization in FX mode with the x86 backend
  (``torch.ao.quantization``), weights copied from the MXNet network.

Weights: with ``--int8-run RUN`` (a ``chapter_resnet18`` run trained at the
benchmark's ``--size``) the run's trained weights, its training images for
calibration (class-balanced, ``--calib-images``) and its test images for the
accuracy of each int8 model (``--test-images``, beside fp32's); without it,
Xavier weights calibrated on the benchmark's random batch, and no accuracy.
"""

import os
import time

#: Settings keys of the int8 workers and their defaults.
INT8_DEFAULTS = dict(int8_run=None, calib_images=500, test_images=1000)


def _timed(fn, X, warmup, steps):
    for _ in range(warmup):
        fn(X)
    start = time.perf_counter()
    for _ in range(steps):
        fn(X)
    return X.shape[0] * steps / (time.perf_counter() - start)


def _fp32_network(settings):
    """``(chapter network with weights, calibration batches, test batches or None)``.

    Batches are lists of ``(X, y)`` MXNet arrays.
    """
    import mxnet as mx
    from mxnet import init

    from gluon_resnet.data import load_data_fashion_mnist
    from gluon_resnet.models import get_model
    from gluon_resnet.trained import load_trained

    size = settings["size"]
    run = settings.get("int8_run")
    if run is None:
        net = get_model("chapter_resnet18", num_classes=10)
        net.initialize(init.Xavier())
        mx.random.seed(0)
        X = mx.nd.random.uniform(shape=(settings["batch_size"], 1, size, size))
        net(X)
        return net, [(X, mx.nd.zeros(X.shape[0]))], None
    trained = load_trained(run, precision="fp32")
    if trained.config.model != "chapter_resnet18" or tuple(trained.data.size) != (size, size):
        raise ValueError("--int8-run must be a chapter_resnet18 run at %dx%d (it is %s at %s)"
                         % (size, size, trained.config.model, list(trained.data.size)))
    calib, test = load_data_fashion_mnist(64, resize=size, limit=settings["calib_images"],
                                          test_limit=settings["test_images"], shuffle=False)
    return trained.net, list(calib), list(test)


def _accuracy(predict, test):
    import numpy as np

    if test is None:
        return None
    right = total = 0
    for X, y in test:
        right += int((np.asarray(predict(X)).argmax(axis=1) == y.asnumpy()).sum())
        total += X.shape[0]
    return right / total


def _batch(settings):
    import mxnet as mx

    mx.random.seed(0)
    s = settings["size"]
    return mx.nd.random.uniform(shape=(settings["batch_size"], 1, s, s))


def work_int8_ours(settings, warmup, steps):
    import mxnet as mx
    from gluon_resnet.quantize import quantize_network

    net, calib, test = _fp32_network(settings)
    fp32 = _accuracy(lambda X: net(X).asnumpy(), test)
    qnet, excluded = quantize_network(net, calib, sum(X.shape[0] for X, _ in calib))
    qnet.hybridize(static_alloc=True)
    X = _batch(settings)
    rate = _timed(lambda x: qnet(x).wait_to_read(), X, warmup, steps)
    return {"images_per_s": rate, "precision": "int8", "excluded": excluded,
            "accuracy": _accuracy(lambda X: qnet(X).asnumpy(), test), "fp32_accuracy": fp32,
            "mxnet": mx.__version__}


def work_int8_ort(settings, warmup, steps, threads):
    try:
        import onnxruntime as ort
        from onnxruntime import quantization as oq
    except ImportError:
        return {"unavailable": "onnxruntime is not installed (pip install onnxruntime)"}
    import shutil
    import tempfile

    import mxnet as mx
    from gluon_resnet.config import TrainConfig
    from gluon_resnet.data import DataDescription
    from gluon_resnet.export import PixelInput, export_onnx

    net, calib, test = _fp32_network(settings)
    s = settings["size"]
    wrapped = PixelInput(net, prefix="export_")
    wrapped.params.initialize()
    wrapped.hybridize()
    wrapped(mx.nd.zeros((1, 1, s, s)))
    description = DataDescription(classes=tuple(str(i) for i in range(10)), channels=1,
                                  size=(s, s))

    class Reader(oq.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"data": X.asnumpy()} for X, _ in calib])

        def get_next(self):
            return next(self.batches, None)

    folder = tempfile.mkdtemp(prefix="gluon_resnet-bench-")
    try:
        fp32_path = export_onnx(wrapped, description, TrainConfig(resize=s),
                                os.path.join(folder, "net.onnx"))
        prepared = os.path.join(folder, "prepared.onnx")
        oq.quant_pre_process(fp32_path, prepared)
        int8_path = os.path.join(folder, "int8.onnx")
        oq.quantize_static(prepared, int8_path, Reader(), quant_format=oq.QuantFormat.QDQ,
                           activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QInt8,
                           per_channel=False, calibrate_method=oq.CalibrationMethod.MinMax)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(int8_path, options, providers=["CPUExecutionProvider"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def run(X):
        return session.run(None, {"data": X.asnumpy()})[0]

    rate = _timed(run, _batch(settings), warmup, steps)
    return {"images_per_s": rate, "precision": "int8", "accuracy": _accuracy(run, test),
            "onnxruntime_version": ort.__version__, "threads": threads}


def _copy_weights(net, torch_net):
    """Copy the MXNet chapter network's parameters into its PyTorch twin, in order."""
    import torch

    ours = [p.data().asnumpy() for p in net.collect_params().values()]
    theirs = [(k, v) for k, v in torch_net.state_dict().items()
              if not k.endswith("num_batches_tracked")]
    if len(ours) != len(theirs) or any(a.shape != tuple(v.shape)
                                       for a, (_, v) in zip(ours, theirs)):
        raise ValueError("the MXNet and PyTorch chapter networks do not line up")
    torch_net.load_state_dict({k: torch.from_numpy(a.copy()) for a, (k, _) in zip(ours, theirs)},
                              strict=False)


def work_int8_torch(settings, warmup, steps):
    try:
        import torch
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    except ImportError:
        return {"unavailable": "PyTorch with torch.ao.quantization is not installed"}
    from torch_reference import chapter_resnet18_torch

    net, calib, test = _fp32_network(settings)
    model = chapter_resnet18_torch().eval()
    _copy_weights(net, model)
    torch.backends.quantized.engine = "x86"
    example = torch.from_numpy(calib[0][0].asnumpy())
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (example,))
    with torch.inference_mode():
        for X, _ in calib:
            prepared(torch.from_numpy(X.asnumpy()))
    quantized = convert_fx(prepared)

    def run(X):
        with torch.inference_mode():
            return quantized(torch.from_numpy(X.asnumpy() if hasattr(X, "asnumpy") else X))

    X = _batch(settings).asnumpy()
    rate = _timed(run, X, warmup, steps)
    return {"images_per_s": rate, "precision": "int8",
            "accuracy": _accuracy(lambda X: run(X).numpy(), test),
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
