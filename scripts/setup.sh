#!/usr/bin/env bash
# Install everything gluon_resnet needs on a fresh Debian machine, idempotently:
# Debian's Fashion-MNIST package, a virtual environment in .venv, and the
# project with its CPU MXNet, test and benchmark extras (the benchmark's PyTorch
# reference is tested too).  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
    $apt_get update -qq
    DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq dataset-fashion-mnist >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# Quick when everything is already there; picks up new dependencies otherwise.
.venv/bin/pip install -q --disable-pip-version-check -e '.[cpu,test,bench]'
