import json

import pytest
import torch

from llmkit.core import checkpoint as ckpt
from llmkit.core.errors import CheckpointError


def _save(path, value=1.0, **kw):
    return ckpt.save_checkpoint(path, {"w": torch.full((3,), value)}, {"a": 1}, {"stage": "test"}, **kw)


def test_roundtrip(tmp_path):
    _save(tmp_path / "c", files={"extra.txt": b"hi"})
    c = ckpt.load_checkpoint(tmp_path / "c")
    assert torch.equal(c.tensors["w"], torch.ones(3)) and c.config == {"a": 1}
    assert c.meta["format"] == ckpt.FORMAT and c.meta["stage"] == "test"
    assert (tmp_path / "c" / "extra.txt").read_bytes() == b"hi"


def test_failed_save_keeps_previous(tmp_path):
    _save(tmp_path / "c", 1.0)

    class Boom:  # a file source that fails mid-write
        def __fspath__(self):
            raise OSError(28, "No space left on device")

    with pytest.raises((CheckpointError, OSError)):
        _save(tmp_path / "c", 2.0, files={"tok.json": Boom()})
    c = ckpt.load_checkpoint(tmp_path / "c")
    assert torch.equal(c.tensors["w"], torch.ones(3))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".c.")]  # temp dirs cleaned up


def test_overwrite_replaces(tmp_path):
    _save(tmp_path / "c", 1.0)
    _save(tmp_path / "c", 2.0)
    assert torch.equal(ckpt.load_checkpoint(tmp_path / "c").tensors["w"], torch.full((3,), 2.0))


def test_crash_between_renames_recovers(tmp_path):
    _save(tmp_path / "c", 1.0)
    (tmp_path / "c").rename(tmp_path / ".c.old-1-1")  # the state a crash between the renames leaves
    assert torch.equal(ckpt.load_checkpoint(tmp_path / "c").tensors["w"], torch.ones(3))


def test_corrupt_and_missing(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "nope")
    _save(tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupted"):
        ckpt.load_checkpoint(tmp_path / "c")
    _save(tmp_path / "d")
    (tmp_path / "d" / "meta.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(CheckpointError, match="newer"):
        ckpt.load_checkpoint(tmp_path / "d")
