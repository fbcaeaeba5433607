#!/usr/bin/env bash
# Set up gluon_resnet on a fresh Debian machine, idempotently (safe to run again):
#
#   bash scripts/setup.sh          the main job: Debian's dataset-fashion-mnist (system-wide: the
#                                  IDX files in /usr/share/datasets/fashion-mnist) and .venv with
#                                  the project and its CPU MXNet (pip install -e '.[cpu]')
#   bash scripts/setup.sh --test   that, and what only the tests need: openssh-server and
#                                  iproute2 (system-wide, root only, for the two-host tests; the
#                                  ssh service is not left enabled), the test and benchmark
#                                  extras in .venv (pytest, d2lzh, CPU PyTorch, ONNX, Jupyter's
#                                  kernel, ruff) and d2l 1.0.3 without its dependencies
#   --print                        say what would be installed, and install nothing
set -euo pipefail
cd "$(dirname "$0")/.."

tests=0
dry=0
for arg in "$@"; do
    case "$arg" in
        --test) tests=1 ;;
        --print) dry=1 ;;
        *) echo "usage: bash scripts/setup.sh [--test] [--print]" >&2; exit 2 ;;
    esac
done

system="dataset-fashion-mnist"
extras="cpu"
if [ "$tests" = 1 ]; then
    system="$system openssh-server iproute2"
    extras="cpu,test,bench"
fi
if [ "$dry" = 1 ]; then
    echo "system-wide (apt-get): $system"
    echo ".venv: pip install -e '.[$extras]'"
    if [ "$tests" = 1 ]; then echo ".venv: pip install --no-deps d2l==1.0.3"; fi
    exit 0
fi

if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    $apt_get update -qq
    DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq dataset-fashion-mnist >/dev/null
fi

if [ "$tests" = 1 ]; then
    # The two-host tests (tests/test_multihost.py) run sshd in network namespaces: root only.
    missing=""
    [ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
    command -v ip >/dev/null || missing="$missing iproute2"
    if [ -n "$missing" ] && [ "$(id -u)" != 0 ]; then
        echo "setup: not root: not installing$missing; tests/test_multihost.py skips its" \
             "two-host tests (network namespaces need root)" >&2
    elif [ -n "$missing" ]; then
        # Installing must not start an ssh service (the tests start their own sshd), and must
        # not leave one enabled to start at the next boot: Debian enables what it installs.
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing \
            >/dev/null
        case "$missing" in
            *openssh-server*)
                for unit in ssh.service ssh.socket; do
                    if command -v systemctl >/dev/null; then
                        systemctl disable "$unit" >/dev/null 2>&1 || true
                    fi
                    if command -v deb-systemd-helper >/dev/null; then
                        deb-systemd-helper disable "$unit" >/dev/null 2>&1 || true
                    fi
                done
                if command -v update-rc.d >/dev/null; then
                    update-rc.d ssh disable >/dev/null 2>&1 || true
                fi
                ;;
        esac
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# Quick when everything is already there; picks up new dependencies otherwise.
.venv/bin/pip install -q --disable-pip-version-check -e ".[$extras]"
if [ "$tests" = 1 ]; then
    # The current edition's package (d2l 1.x), the tests' oracle for MXNet's numpy mode.
    # Pinned to the version the tests compare with; --no-deps because it pins numpy 1.23.5,
    # pandas 2.0.3 and others exactly, which would fight the project's own requirements.
    .venv/bin/pip install -q --disable-pip-version-check --no-deps 'd2l==1.0.3'
fi
