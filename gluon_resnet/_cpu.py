"""What this CPU can do, read without importing MXNet.

``_mxnet`` needs these answers before MXNet loads (threads, AMX), so this
module imports nothing of MXNet's or of ours.
"""

import ctypes
import os
import platform

__all__ = ["cpuinfo", "cpu_flags", "usable_cores", "request_amx_permission"]


def cpuinfo(key):
    """The value of the first ``key`` line of ``/proc/cpuinfo``, or None (no such file or line)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == key:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags():
    """The CPU's feature flags (``avx512_bf16``, ``amx_bf16``, ...) as a set; empty off Linux."""
    return set((cpuinfo("flags") or "").split())


def usable_cores():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): Linux >= 5.16 on x86-64
# hands out the AMX tile registers only to a process that asks for them; the
# first AMX instruction of a process that did not ask dies with SIGILL.
_SYS_ARCH_PRCTL = 158
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


def request_amx_permission():
    """Ask Linux for the AMX tile registers for this process; True when granted.

    The permission belongs to the process and its forked children; a program
    started with ``exec`` (``subprocess``, ``python -m ...``) must ask again.
    Asking twice is harmless.  False off Linux x86-64, on kernels without the
    call, and on CPUs without AMX.
    """
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False
    if "amx_tile" not in cpu_flags():
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False
