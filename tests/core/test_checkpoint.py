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


def test_lazy_tensors_read_each_tensor_alone(tmp_path):
    """LazyTensors = safetensors' load_file, tensor for tensor, dtype for dtype; each in memory of its own."""
    from safetensors.torch import load_file

    tensors = {"f32": torch.randn(3, 4), "bf16": torch.randn(5).bfloat16(),
               "i8": torch.tensor([[-3, 7]], dtype=torch.int8), "u8": torch.arange(6, dtype=torch.uint8),
               "b": torch.tensor([True, False]), "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
               "i64": torch.arange(3)}
    ckpt.save_checkpoint(tmp_path / "c", tensors, {"n": 1})
    lazy = ckpt.load_checkpoint(tmp_path / "c", lazy=True).tensors
    eager = load_file(str(tmp_path / "c" / ckpt.WEIGHTS))
    assert isinstance(lazy, ckpt.LazyTensors) and set(lazy) == set(eager) == set(tensors)
    for k, t in eager.items():
        assert lazy[k].dtype == t.dtype and lazy[k].shape == t.shape and torch.equal(lazy[k], t), k
    a, b = lazy["f32"], lazy["i64"]
    assert a.untyped_storage().nbytes() == a.numel() * 4  # its own buffer, not a view of the whole file
    assert a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr()


def test_lazy_tensors_truncated_file_is_a_checkpoint_error(tmp_path):
    ckpt.save_checkpoint(tmp_path / "c", {"w": torch.randn(64, 64)}, {"n": 1})
    f = tmp_path / "c" / ckpt.WEIGHTS
    f.write_bytes(f.read_bytes()[:-100])
    lazy = ckpt.load_checkpoint(tmp_path / "c", lazy=True).tensors
    with pytest.raises(CheckpointError, match="truncated"):
        lazy["w"]
    f.write_bytes(b"\xff" * 16)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        ckpt.load_checkpoint(tmp_path / "c", lazy=True)
