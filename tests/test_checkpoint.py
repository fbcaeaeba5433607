"""Checkpoint files that are not what they should be: each refusal names what is wrong."""

import json
import os
import zipfile

import pytest

from mxnet.gluon import nn

from gluon_resnet.checkpoint import (FORMAT, CheckpointError, atomic_write, load_checkpoint,
                                     read_checkpoint, save_checkpoint)

from helpers import made_run


def _saved(tmp_path, name="ckpt.ckpt"):
    net = nn.HybridSequential()
    net.add(nn.Dense(4, in_units=3), nn.Dense(2, in_units=4))
    net.initialize()
    path = str(tmp_path / name)
    save_checkpoint(path, net, None, {"epoch": 1, "config": {"model": "tiny"}})
    return path, net


def test_a_file_that_is_not_a_zip_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.ckpt"
    path.write_bytes(b"just some bytes")
    with pytest.raises(CheckpointError, match=r"x\.ckpt is not a gluon_resnet checkpoint"):
        read_checkpoint(str(path))


def test_a_wrong_format_tag_is_named(tmp_path):
    path = tmp_path / "other.ckpt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.json", json.dumps({"format": "someone-else-2"}))
        z.writestr("model.params", b"")
    with pytest.raises(CheckpointError, match=r"has format 'someone-else-2', expected %r"
                       % FORMAT):
        read_checkpoint(str(path))


def test_a_checkpoint_without_parameters_is_refused(tmp_path):
    path = tmp_path / "half.ckpt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("meta.json", json.dumps({"format": FORMAT}))
    with pytest.raises(CheckpointError, match="has no model.params"):
        read_checkpoint(str(path))


def test_a_shape_mismatch_names_the_parameter(tmp_path):
    path, _ = _saved(tmp_path)
    other = nn.HybridSequential()
    other.add(nn.Dense(5, in_units=3), nn.Dense(2, in_units=5))
    other.initialize()
    with pytest.raises(CheckpointError, match=r"'0\.bias' has shape \(4,\) there and "
                                              r"\(5,\) here"):
        load_checkpoint(path, other)
    fewer = nn.HybridSequential()
    fewer.add(nn.Dense(2, in_units=3))
    fewer.initialize()
    with pytest.raises(CheckpointError, match=r"of tiny, which do not fit this network \(4 "
                                              r"parameters there, 2 here; '1\.bias' is not a "
                                              r"parameter here\)"):
        load_checkpoint(path, fewer)


def test_a_truncated_checkpoint_is_called_damaged(tmp_path):
    run = str(tmp_path / "run")
    made_run(run)
    path = os.path.join(run, "checkpoint.ckpt")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="checkpoint.ckpt is damaged or truncated"):
        read_checkpoint(path)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_files_written_atomically_have_the_mode_of_the_users_new_files(tmp_path, umask):
    """Not mkstemp's 0600: the mode a plain ``open()`` gives a new file under the same umask,
    so a run folder can be shared as the user's other files are."""
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain", "w"):
            pass
        atomic_write(str(tmp_path / "written.json"), lambda tmp: open(tmp, "w").close())
        made_run(str(tmp_path / "run"))  # checkpoint.ckpt, through save_checkpoint
    finally:
        os.umask(old)
    expected = os.stat(tmp_path / "plain").st_mode & 0o777
    assert os.stat(tmp_path / "written.json").st_mode & 0o777 == expected
    assert os.stat(tmp_path / "run" / "checkpoint.ckpt").st_mode & 0o777 == expected
