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

# The two-host tests (tests/test_multihost.py) run sshd in network namespaces: root only.
missing=""
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
command -v ip >/dev/null || missing="$missing iproute2"
if [ -n "$missing" ] && [ "$(id -u)" != 0 ]; then
    echo "setup: not root: not installing$missing; tests/test_multihost.py skips its two-host" \
         "tests (network namespaces need root)" >&2
elif [ -n "$missing" ]; then
    # Installing must not start an ssh service: the tests start their own sshd.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
        >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# Quick when everything is already there; picks up new dependencies otherwise.
.venv/bin/pip install -q --disable-pip-version-check -e '.[cpu,test,bench]'
# The current edition's package (d2l 1.x), the tests' oracle for MXNet's numpy mode.
# Pinned to the version the tests compare with; --no-deps because it pins numpy 1.23.5,
# pandas 2.0.3 and others exactly, which would fight the project's own requirements.
.venv/bin/pip install -q --disable-pip-version-check --no-deps 'd2l==1.0.3'
