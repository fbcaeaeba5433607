"""What a host offers a launched job: ``launch --hosts`` runs this on every host before starting.

Sent over ssh as ``python -c TEXT SPEC`` (and run on this machine as a
script, for comparison), so it imports nothing from gluon_resnet at the top.
``SPEC`` is JSON: ``cwd`` (the folder the job runs in), ``env`` (variables
the job's processes get, e.g. ``GLUON_RESNET_DATA``), ``scheduler`` (the
scheduler host's name, or None), ``want_port`` (find a free port for the
scheduler), ``fashion_mnist`` (None, or ``{"root": FOLDER or None}``: the
data set must be found there, or on the usual search path, without a
download), ``folders`` and ``files`` (paths that must exist).

It imports gluon_resnet (and so MXNet) only to look for Fashion-MNIST.
Prints one line, ``MARK`` then JSON: ``python``, ``mxnet`` (version or None),
``gluon_resnet`` (``version``, ``path``, ``digest``: SHA-256 of its ``.py``
files, or None), ``cores``, ``address`` (this host's address on the way to
the scheduler), ``port`` and ``problems`` (sentences that finish "host X ...").
"""

import hashlib
import importlib.util
import json
import os
import re
import socket
import sys

#: The report line starts with it; MXNet may print other lines when imported.
MARK = "\x1egluon-resnet-hostcheck"


def package_digest(folder):
    """SHA-256 of the names and contents of every ``.py`` file under ``folder``."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, folder).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read() + b"\0")
    return digest.hexdigest()


def _version_in(path):
    """The ``__version__ = "..."`` written in the file ``path``, or None."""
    try:
        with open(path, encoding="utf-8") as f:
            found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", f.read(), re.M)
    except OSError:
        return None
    return found.group(1) if found else None


def _gluon_resnet():
    spec = importlib.util.find_spec("gluon_resnet")
    if spec is None or not spec.origin:
        return None
    folder = os.path.dirname(spec.origin)
    return {"version": _version_in(spec.origin) or "unknown", "path": folder,
            "digest": package_digest(folder)}


def _mxnet_version():
    """The version of the MXNet that ``import mxnet`` loads, read from its files (importing
    takes seconds); MXNet 1.x writes it in ``libinfo.py``."""
    spec = importlib.util.find_spec("mxnet")
    if spec is None or not spec.origin:
        raise ImportError("No module named 'mxnet'")
    folder = os.path.dirname(spec.origin)
    version = _version_in(os.path.join(folder, "libinfo.py")) or _version_in(spec.origin)
    if version is None:
        import mxnet
        version = mxnet.__version__
    return version


def _address_towards(name):
    """This host's address on the route to ``name`` (a UDP socket sends nothing to connect)."""
    target = socket.gethostbyname(name)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((target, 9))
        return s.getsockname()[0]
    finally:
        s.close()


def _free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _first_sentence(text):
    """The finder's message without its advice on getting the data (the launcher gives its own)."""
    text = " ".join(str(text).replace("Download not attempted (download=False).", "").split())
    return text.split(". To get the data")[0].rstrip(".")


def check(spec):
    report = {"python": "%d.%d.%d" % sys.version_info[:3], "mxnet": None, "gluon_resnet": None,
              "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count(), "address": None, "port": None, "problems": [],
              "data_problem": None}
    problems = report["problems"]
    os.environ.update(spec.get("env", {}))
    try:
        os.chdir(spec["cwd"])
    except OSError:
        problems.append("has no folder %s, the launcher's working folder (the job runs there "
                        "on every host)" % spec["cwd"])
    if spec.get("scheduler"):
        try:
            report["address"] = _address_towards(spec["scheduler"])
        except OSError as exc:
            problems.append("cannot reach the scheduler's host %s (%s)" % (spec["scheduler"], exc))
    if spec.get("want_port"):
        report["port"] = _free_port()
    try:
        report["mxnet"] = _mxnet_version()
    except Exception as exc:  # a broken install raises anything
        problems.append("cannot import MXNet (%s: %s)" % (type(exc).__name__, exc))
    report["gluon_resnet"] = _gluon_resnet()
    if report["gluon_resnet"] is None:
        problems.append("has no gluon_resnet for %s" % sys.executable)
    for path in spec.get("folders", []):
        if not os.path.isdir(path):
            problems.append("has no folder %s" % path)
    for path in spec.get("files", []):
        if not os.path.isfile(path):
            problems.append("has no file %s" % path)
    if spec.get("fashion_mnist") is not None and not problems:
        try:
            from gluon_resnet.data.files import find_fashion_mnist
            find_fashion_mnist(spec["fashion_mnist"].get("root"), download=False)
        except Exception as exc:  # DatasetNotFoundError, or an import that fails
            report["data_problem"] = "has no Fashion-MNIST: %s" % _first_sentence(exc)
    return report


def main(argv):
    report = check(json.loads(argv[1]))
    sys.stdout.write("%s %s\n" % (MARK, json.dumps(report)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
