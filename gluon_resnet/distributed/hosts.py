"""``gluon-resnet launch --hosts FILE``: the hosts file, ssh, and the checks before a job starts.

The hosts file lists one host per line, as ssh knows it (a name from
``~/.ssh/config``, a host name or an address), optionally followed by
``:N``, the number of workers on that host (1 by default); ``#`` starts a
comment.  Every host must let ssh log in without a prompt (``BatchMode``).

Before anything starts, ``check_hosts`` runs ``hostcheck`` on every host
and on this machine, all at once, and refuses the job with one sentence per
host that cannot take part: ssh cannot log in, no Python at the given path,
no working folder, another MXNet version, other gluon_resnet files, a data
set, checkpoint or folder that is missing there.  This module imports no
MXNet.
"""

import collections
import json
import shlex
import subprocess
import sys

from . import hostcheck

__all__ = ["Host", "read_hosts", "ssh_argv", "remote_command", "network_name", "check_hosts",
           "SSH_OPTIONS"]

#: A host of the hosts file: its name for ssh and the number of workers it runs.
Host = collections.namedtuple("Host", "name slots")

#: Given to every ssh call: never prompt (a password prompt would hang the job), give up on
#: an unreachable host after 10 s, and notice a host that dies during the job within a minute.
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
               "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4")
#: Seconds a host gets to run the check (ssh log-in, importing MXNet).
CHECK_SECONDS = 120


def read_hosts(path):
    """The hosts of a hosts file, in order, as ``Host(name, slots)``."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ValueError("cannot read the hosts file %s (%s)" % (path, exc.strerror)) from None
    hosts, lines = [], {}
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        name, slots = entry, 1
        if ":" in entry:
            name, _, count = entry.rpartition(":")
            if not count.isdigit() or int(count) < 1:
                raise ValueError("line %d of the hosts file %s is %r: after ':' comes the number "
                                 "of workers on that host, a positive integer"
                                 % (number, path, entry))
            slots = int(count)
        if not name or any(c.isspace() or c == ":" for c in name):
            raise ValueError("line %d of the hosts file %s is %r, not a host: write one host per "
                             "line, optionally host:workers" % (number, path, entry))
        if name in lines:
            raise ValueError("host %s is listed twice in the hosts file %s (lines %d and %d); "
                             "give it one line, host:workers" % (name, path, lines[name], number))
        lines[name] = number
        hosts.append(Host(name, slots))
    if not hosts:
        raise ValueError("the hosts file %s lists no host: write one host per line, optionally "
                         "host:workers" % path)
    return hosts


def ssh_argv(ssh, host, command):
    """The local command that runs the shell command ``command`` on ``host``."""
    return [*shlex.split(ssh), *SSH_OPTIONS, host, command]


def _source(module):
    with open(module.__file__, encoding="utf-8") as f:
        return f.read()


def remote_command(python, module, spec):
    """The shell command that runs the script ``module`` (hostcheck, remote) with ``spec``."""
    return shlex.join([python, "-c", _source(module), json.dumps(spec)])


def network_name(ssh, host):
    """The host name or address ssh connects to for ``host`` (its ``HostName``; ``ssh -G``)."""
    try:
        shown = subprocess.run([*shlex.split(ssh), "-G", host], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError("cannot run %s -G %s (%s); give the ssh command with --ssh"
                         % (ssh, host, exc)) from None
    for line in shown.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "hostname" and value:
            return value
    return host


def _last_line(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _read_report(proc, text, errors, python, ssh, host):
    """The JSON report of a finished check, or a sentence saying why there is none."""
    for line in text.split("\n"):  # not splitlines(): it splits at the mark's \x1e too
        if line.startswith(hostcheck.MARK):
            return json.loads(line[len(hostcheck.MARK):])
    if proc.returncode == 255:
        return ("cannot be logged in to by ssh without a prompt (%s); set up key-based log-in, "
                "then check with: %s -o BatchMode=yes %s true" % (_last_line(errors), ssh, host))
    if proc.returncode == 127:
        return ("has no Python at %s (%s); give the Python of every host with --python"
                % (python, _last_line(errors)))
    return "could not run the check (status %d: %s)" % (proc.returncode, _last_line(errors))


def _compare(report, here):
    problems = list(report["problems"])
    ours, theirs = here["gluon_resnet"], report["gluon_resnet"]
    if theirs is not None and ours is not None:
        if theirs["version"] != ours["version"]:
            problems.append("has gluon_resnet %s (in %s), this machine %s: install the same "
                            "version on every host" % (theirs["version"], theirs["path"],
                                                       ours["version"]))
        elif theirs["digest"] != ours["digest"]:
            problems.append("has other gluon_resnet files (version %s, in %s) than this machine: "
                            "install the same version on every host"
                            % (theirs["version"], theirs["path"]))
    if report["mxnet"] is not None and report["mxnet"] != here["mxnet"]:
        problems.append("has MXNet %s, this machine %s: install the same version on every host"
                        % (report["mxnet"], here["mxnet"]))
    if report["data_problem"] and len(problems) == len(report["problems"]):
        problems.append(report["data_problem"])  # with other versions it has other reasons
    return problems


def check_hosts(hosts, ssh, python, spec):
    """Check every host at once; their reports in the order of ``hosts``.

    Parameters
    ----------
    hosts : list of Host
        The first runs the scheduler.
    ssh : str
        The ssh command, with its options (``"ssh -F config"``).
    python : str
        The Python of every host.
    spec : dict
        What ``hostcheck`` checks: ``cwd``, ``env``, ``fashion_mnist``, ``folders``, ``files``.

    Raises
    ------
    ValueError
        One sentence per host that cannot take part, each naming the host.
    """
    scheduler = network_name(ssh, hosts[0].name)
    here_spec = dict(spec, scheduler=None, want_port=False, fashion_mnist=None, folders=[],
                     files=[])
    procs = [subprocess.Popen([sys.executable, hostcheck.__file__, json.dumps(here_spec)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)]
    try:
        for i, host in enumerate(hosts):
            command = remote_command(python, hostcheck, dict(spec, scheduler=scheduler,
                                                             want_port=i == 0))
            procs.append(subprocess.Popen(ssh_argv(ssh, host.name, command),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True,
                                          start_new_session=True))
        reports = []
        for host, proc in zip([None, *hosts], procs):
            try:
                text, errors = proc.communicate(timeout=CHECK_SECONDS)
            except subprocess.TimeoutExpired:
                reports.append("did not finish the check within %d s" % CHECK_SECONDS)
                continue
            reports.append(_read_report(proc, text, errors, python, ssh, host and host.name))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    here, reports = reports[0], reports[1:]
    if isinstance(here, str):
        raise ValueError("this machine could not run the host check: %s" % here)
    problems = []
    for host, report in zip(hosts, reports):
        found = [report] if isinstance(report, str) else _compare(report, here)
        if len(hosts) > 1 and not isinstance(report, str) \
                and (report["address"] or "").startswith("127."):
            found.append("is reached at the loopback address %s, which the other hosts cannot "
                         "reach; list the first host by a name or address they reach"
                         % report["address"])
        problems += ["host %s %s" % (host.name, p) for p in found]
    if problems:
        raise ValueError("the job was not started: " + "; ".join(problems))
    return reports
