from setuptools import find_packages, setup

setup(
    name="gluon-resnet",
    version="0.1.0",
    description="d2l-zh chapter 5.11 (ResNet) as an installable MXNet Gluon library",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["gluon_resnet", "gluon_resnet.*"]),
    # The command's entry point, outside the package so that it handles stop signals before
    # the package (and MXNet) is imported.
    py_modules=["gluon_resnet_command"],
    python_requires=">=3.8",
    install_requires=[
        # mxnet 1.9.1 (the last release) uses np.bool, which numpy 1.24 removed.
        "numpy>=1.17,<1.24",
        "matplotlib",
        # Image folders and gluon-resnet predict decode PNG, JPEG and BMP files with Pillow.
        "Pillow",
        "tqdm",
    ],
    extras_require={
        # MXNet itself is an extra so that a CUDA build (mxnet-cu112, ...) that is
        # already installed is not overwritten by the CPU wheel.  1.9.1 is the last
        # release and the one this project is tested with.
        "cpu": ["mxnet==1.9.1"],
        # d2lzh, the book's package, is the oracle of the tests and the book's side of the
        # benchmark; gluon_resnet itself never imports it.
        # onnx and onnxruntime run the tests of gluon-resnet export (an ONNX file run in ONNX
        # Runtime).  Not pinned: MXNet 1.9.1's exporter needs onnx.mapping, which onnx 1.16
        # removed, and gluon_resnet.export supplies it when missing (tested with onnx 1.23.2
        # and onnxruntime 1.32.0 beside numpy 1.23).
        # pandas, requests and matplotlib-inline are what `from d2l import mxnet as d2l` imports:
        # d2l 1.0.3 (the current edition's package, the numpy-mode oracle) is installed by
        # scripts/setup.sh with --no-deps, because its own pins would replace numpy.
        # torch: the PyTorch reference of the weight-loading tests (logits, torch.save files),
        # pinned as in "bench" below.  ruff: the lint that runs before the tests (ruff.toml).
        "test": ["pytest", "nbclient", "nbformat", "ipykernel", "d2lzh", "onnx", "onnxruntime",
                 "pandas", "requests", "matplotlib-inline", "torch==2.13.0", "ruff"],
        # The benchmark's outside reference, never imported by gluon_resnet.  Pinned because
        # 2.13.0 is the CPU build on this project's machines' disk: an unpinned torch makes pip
        # fetch a CUDA build of several GB instead.
        "bench": ["d2lzh", "torch==2.13.0"],
        # Opening the notebooks (notebooks/README.md): JupyterLab and the Python kernel, and what
        # notebooks/run.py runs them with.
        "notebooks": ["jupyterlab", "ipykernel", "nbclient", "nbformat"],
    },
    entry_points={"console_scripts": ["gluon-resnet=gluon_resnet_command:main"]},
)
