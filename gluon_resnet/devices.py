"""Device helpers with d2lzh's semantics.

``mx.gpu()`` alone succeeds even on a CPU build of MXNet, so both helpers
allocate a small array on the device to learn whether it exists.
"""

import platform

from ._cpu import cpuinfo
from ._mxnet import mx

__all__ = ["try_gpu", "try_all_gpus", "parse_ctx", "cpu_model", "available_memory"]


def cpu_model():
    """The CPU's model name, as benchmark and notebook records state it."""
    return cpuinfo("model name") or platform.processor() or "unknown"


def _read_number(path, key=None):
    """The number in file ``path`` (or on its line ``key:``), or None."""
    try:
        with open(path) as f:
            for line in f:
                if key is None:
                    return int(line.split()[0])
                if line.split(":", 1)[0] == key:
                    return int(line.split(":", 1)[1].split()[0]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def available_memory():
    """Bytes of main memory this process can still take, or None where unknown.

    Linux's estimate of available memory (``MemAvailable``), lowered to what
    the process's cgroup still allows (containers, CI runners).
    """
    amounts = [_read_number("/proc/meminfo", "MemAvailable")]
    limit = _read_number("/sys/fs/cgroup/memory.max")  # 'max' (no limit) reads as None
    used = _read_number("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        amounts.append(max(0, limit - used))
    amounts = [a for a in amounts if a is not None]
    return min(amounts) if amounts else None


def _gpu_works(i):
    try:
        mx.nd.array([0], ctx=mx.gpu(i)).wait_to_read()
        return True
    except mx.base.MXNetError:
        return False


def try_gpu(i=0):
    """Return ``mx.gpu(i)`` if that GPU exists, otherwise ``mx.cpu()``."""
    return mx.gpu(i) if _gpu_works(i) else mx.cpu()


def try_all_gpus():
    """Return every GPU that exists (up to 16), or ``[mx.cpu()]`` if there is none."""
    ctxs = []
    for i in range(16):
        if not _gpu_works(i):
            break
        ctxs.append(mx.gpu(i))
    return ctxs or [mx.cpu()]


def parse_ctx(spec):
    """Turn a command-line device spec into a list of contexts.

    ``"cpu"``, ``"cpu:0,1"``, ``"gpu:0"``, ``"gpu:0,1"``, ``"auto"`` (``try_gpu()``)
    or ``"all"`` (``try_all_gpus()``).  A GPU that does not exist raises
    ``ValueError`` naming it.
    """
    spec = spec.strip().lower()
    if spec == "auto":
        return [try_gpu()]
    if spec == "all":
        return try_all_gpus()
    kind, _, ids = spec.partition(":")
    if kind not in ("cpu", "gpu"):
        raise ValueError("unknown device %r: use cpu, cpu:0,1, gpu:0, gpu:0,1, auto or all" % spec)
    try:
        numbers = [int(i) for i in ids.split(",")] if ids else [0]
    except ValueError:
        raise ValueError("device numbers in %r must be integers, for example gpu:0,1"
                         % spec) from None
    if kind == "cpu":
        return [mx.cpu(i) for i in numbers]
    missing = [i for i in numbers if not _gpu_works(i)]
    if missing:
        raise ValueError("gpu(%s) is not available on this machine (MXNet sees %d GPU(s))"
                         % (", ".join(map(str, missing)), mx.context.num_gpus()))
    return [mx.gpu(i) for i in numbers]
