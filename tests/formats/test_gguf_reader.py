"""GGUF reading: parity with gguf-py on the packaged model and on files we write,
and one-line FormatErrors for every kind of bad file."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

import gguf as gguf  # a test extra: missing must fail, not skip
from gguf import GGMLQuantizationType  # noqa: E402

from llmkit.core.assets import asset_path  # noqa: E402
from llmkit.core.errors import FormatError  # noqa: E402
from llmkit.formats.gguf_quants import dequantize  # noqa: E402
from llmkit.formats.gguf_reader import read_gguf  # noqa: E402


@pytest.fixture(scope="module")
def smollm2_path():
    return asset_path("smollm2")  # `make test` installs it; a missing asset must fail, not skip


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    return read_gguf(smollm2_path)


@pytest.fixture(scope="module")
def smollm2_ref(smollm2_path):
    return gguf.GGUFReader(smollm2_path)


def reference_metadata(reader: gguf.GGUFReader) -> dict:
    # GGUF.version / GGUF.tensor_count / GGUF.kv_count are gguf-py's pseudo-fields, not keys.
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def format_error(path, match: str) -> FormatError:
    """read_gguf(path) must raise a one-line FormatError matching ``match``."""
    with pytest.raises(FormatError, match=match) as info:
        read_gguf(path)
    assert "\n" not in str(info.value)
    return info.value


# ---------------------------------------------------------------------------
# The packaged SmolLM2 model


def test_smollm2_metadata_equals_gguf_py(smollm2, smollm2_ref):
    ref = reference_metadata(smollm2_ref)
    assert list(smollm2.metadata) == list(ref)
    for key, value in ref.items():
        assert smollm2.metadata[key] == value, key
        assert type(smollm2.metadata[key]) is type(value), key
    assert smollm2.architecture == "llama"
    assert smollm2.version == 3 and smollm2.alignment == 32
    assert len(smollm2.metadata["tokenizer.ggml.tokens"]) == 49152


def test_smollm2_every_tensor_equals_gguf_py(smollm2, smollm2_ref):
    assert list(smollm2.tensors) == [t.name for t in smollm2_ref.tensors]
    types = set()
    for ref in smollm2_ref.tensors:
        info = smollm2.tensors[ref.name]
        types.add(info.ggml_type)
        assert info.ggml_type == ref.tensor_type.name
        assert info.shape == tuple(int(d) for d in reversed(ref.shape))  # torch orientation
        assert (info.offset, info.n_bytes) == (ref.data_offset, ref.n_bytes)
        ours = smollm2.tensor(ref.name)
        want = np.asarray(gguf.quants.dequantize(ref.data, ref.tensor_type)).reshape(info.shape)
        assert np.array_equal(ours.numpy(), want), ref.name  # bit-exact
    assert types == {"Q4_1", "Q8_0", "F32"}


def test_smollm2_orientation_and_raw(smollm2):
    emb = smollm2.tensors["token_embd.weight"]
    assert emb.shape == (49152, 576) and emb.ggml_type == "Q8_0"
    assert smollm2.tensors["blk.0.ffn_down.weight"].shape == (576, 1536)  # (out, in) like nn.Linear
    raw, ggml_type, shape = smollm2.raw("blk.0.ffn_down.weight")
    assert raw.dtype == np.uint8 and not raw.flags.writeable  # a view of the memory map
    torch.testing.assert_close(dequantize(raw, ggml_type, shape), smollm2.tensor("blk.0.ffn_down.weight"),
                               rtol=0, atol=0)


def test_unknown_tensor_name_suggests_close_match(smollm2):
    with pytest.raises(FormatError, match="blk.0.ffn_down.weight"):
        smollm2.tensor("blk.0.ffn_dwn.weight")


# ---------------------------------------------------------------------------
# Files written by gguf-py's writer


def write_gguf(path, tensors=(), extra_kv=True, endianess=gguf.GGUFEndian.LITTLE):
    """A small GGUF with every metadata value type; ``tensors`` = (name, array, raw_dtype or None)."""
    w = gguf.GGUFWriter(str(path), arch="tiny", endianess=endianess)
    if extra_kv:
        w.add_uint8("t.u8", 200)
        w.add_int8("t.i8", -100)
        w.add_uint16("t.u16", 60000)
        w.add_int16("t.i16", -30000)
        w.add_uint32("t.u32", 4_000_000_000)
        w.add_int32("t.i32", -2_000_000_000)
        w.add_float32("t.f32", 0.1)
        w.add_uint64("t.u64", 2**63 + 5)
        w.add_int64("t.i64", -(2**62))
        w.add_float64("t.f64", 0.1)
        w.add_bool("t.bool", True)
        w.add_string("t.str", "héllo ✓")
        w.add_array("t.ints", [1, -2, 3])
        w.add_array("t.floats", [0.5, 1.25])
        w.add_array("t.strs", ["a", "", "ü", "<|im_start|>"])
        w.add_array("t.bools", [True, False])
    for name, array, raw_dtype in tensors:
        w.add_tensor(name, array, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def small_tensors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    return [
        ("f32", x, None),
        ("f16", x.astype(np.float16), None),
        ("vec", rng.standard_normal(7).astype(np.float32), None),
        ("q8", gguf.quants.quantize(x, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0),
        ("q4", gguf.quants.quantize(x, GGMLQuantizationType.Q4_1), GGMLQuantizationType.Q4_1),
        ("cube", rng.standard_normal((2, 3, 32)).astype(np.float32), None),
    ]


def test_written_file_matches_gguf_py(tmp_path):
    path = write_gguf(tmp_path / "t.gguf", small_tensors())
    ours, ref = read_gguf(path), gguf.GGUFReader(path)
    assert ours.metadata == reference_metadata(ref)
    assert ours.metadata["t.u64"] == 2**63 + 5 and ours.metadata["t.strs"][2] == "ü"
    assert ours.architecture == "tiny"
    for t in ref.tensors:
        want = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        got = ours.tensor(t.name)
        assert got.shape == want.shape, t.name  # gguf-py's numpy view is already row-major
        np.testing.assert_array_equal(got.numpy(), want, err_msg=t.name)
    assert ours.tensors["cube"].shape == (2, 3, 32)


def test_custom_alignment(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "a.gguf"), arch="tiny")
    w.data_alignment = 64
    w.add_custom_alignment(64)
    w.add_tensor("x", np.arange(10, dtype=np.float32))
    w.add_tensor("y", np.arange(3, dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    f = read_gguf(tmp_path / "a.gguf")
    assert f.alignment == 64 and f.data_start % 64 == 0
    assert f.tensor("y").tolist() == [0.0, 1.0, 2.0]


def test_unsupported_tensor_type_reads_but_cannot_dequantize(tmp_path):
    packed = np.zeros((2, 66), dtype=np.uint8)  # two IQ2_XXS blocks of 256 values
    path = write_gguf(tmp_path / "iq.gguf", [("w", packed, GGMLQuantizationType.IQ2_XXS)], extra_kv=False)
    f = read_gguf(path)
    assert f.tensors["w"].ggml_type == "IQ2_XXS" and f.tensors["w"].shape == (2, 256)
    assert f.raw("w")[0].nbytes == 132  # packed bytes stay available
    with pytest.raises(FormatError, match="IQ2_XXS"):
        f.tensor("w")


def test_big_endian_file_is_refused(tmp_path):
    path = write_gguf(tmp_path / "be.gguf", extra_kv=False, endianess=gguf.GGUFEndian.BIG)
    format_error(path, "big-endian")


# ---------------------------------------------------------------------------
# Hand-built and damaged files


def gguf_bytes(kv=(), tensors=(), version=3, magic=b"GGUF", n_tensors=None, n_kv=None, data=b""):
    """Assemble a GGUF by hand. kv: (key, type_id, packed value bytes); tensors: (name, dims, type_id, offset)."""
    def string(s: bytes) -> bytes:
        return struct.pack("<Q", len(s)) + s

    out = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                              len(kv) if n_kv is None else n_kv)
    for key, vtype, value in kv:
        out += string(key) + struct.pack("<I", vtype) + value
    for name, dims, type_id, offset in tensors:
        out += string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, type_id, offset)
    out += b"\0" * (-len(out) % 32)
    return out + data


def test_hand_built_file_reads(tmp_path):
    data = np.arange(64, dtype=np.float32).tobytes()
    path = tmp_path / "h.gguf"
    path.write_bytes(gguf_bytes(kv=[(b"general.architecture", 8, struct.pack("<Q", 3) + b"toy")],
                                tensors=[(b"w", [32, 2], 0, 0)], data=data))
    f = read_gguf(path)
    assert f.architecture == "toy"
    assert f.tensor("w").tolist() == np.arange(64, dtype=np.float32).reshape(2, 32).tolist()


def test_invalid_utf8_and_empty_arrays(tmp_path):
    # Byte-level vocabularies can hold tokens that are not valid UTF-8: keep them losslessly.
    tokens = struct.pack("<IQ", 8, 2) + struct.pack("<Q", 1) + b"\xff" + struct.pack("<Q", 2) + b"ok"
    path = tmp_path / "u.gguf"
    path.write_bytes(gguf_bytes(kv=[(b"tok", 9, tokens), (b"none", 9, struct.pack("<IQ", 4, 0))]))
    f = read_gguf(path)
    assert f.metadata["none"] == []
    assert [t.encode("utf-8", "surrogateescape") for t in f.metadata["tok"]] == [b"\xff", b"ok"]
    with pytest.raises(FormatError, match="general.architecture"):
        f.architecture


def test_missing_path(tmp_path):
    err = format_error(tmp_path / "nope.gguf", "no such file")
    assert "nope.gguf" in str(err) and "check the path" in str(err)


def test_directory(tmp_path):
    format_error(tmp_path, "directory")


def test_empty_file(tmp_path):
    (tmp_path / "e.gguf").write_bytes(b"")
    format_error(tmp_path / "e.gguf", "empty")


@pytest.mark.parametrize("content, match", [
    (b"PK\x03\x04" + b"\0" * 60, "not a GGUF file"),
    (b'{"__metadata__"' + b"\0" * 60, "not a GGUF file"),
    (b"tjgg" + b"\0" * 60, "pre-GGUF GGML"),
])
def test_bad_magic(tmp_path, content, match):
    (tmp_path / "m.gguf").write_bytes(content)
    format_error(tmp_path / "m.gguf", match)


@pytest.mark.parametrize("version, match", [(1, "version 1"), (99, "version 99")])
def test_unsupported_version(tmp_path, version, match):
    (tmp_path / "v.gguf").write_bytes(gguf_bytes(version=version))
    format_error(tmp_path / "v.gguf", match)


STR_KV = (b"k", 8, struct.pack("<Q", 2**60) + b"abc")  # string claiming 2**60 bytes


@pytest.mark.parametrize("build, match", [
    (dict(n_tensors=2**40), "corrupted header"),
    (dict(n_kv=2**40), "corrupted header"),
    (dict(n_kv=1), "truncated or corrupted"),  # promises a key that is not there
    (dict(kv=[STR_KV]), "truncated or corrupted"),
    (dict(kv=[(b"k", 42, b"\0" * 8)]), "unknown value type 42"),
    (dict(kv=[(b"k", 9, struct.pack("<IQ", 4, 2**50))]), "truncated or corrupted"),  # absurd array length
    (dict(kv=[(b"k", 4, b"\1\0\0\0"), (b"k", 4, b"\2\0\0\0")]), "appears twice"),
    (dict(kv=[(b"general.alignment", 4, struct.pack("<I", 3))]), "power of two"),
    (dict(tensors=[(b"w", [32] * 7, 0, 0)]), "7 dimensions"),
    (dict(tensors=[(b"w", [32], 99, 0)]), "unknown ggml type id 99"),
    (dict(tensors=[(b"w", [30], 2, 0)]), "not whole Q4_0 blocks"),
    (dict(tensors=[(b"w", [2**40, 2**20], 0, 0)]), "needs bytes .* but the file has only"),
    (dict(tensors=[(b"w", [8], 0, 0), (b"w", [8], 0, 32)], data=b"\0" * 64), "appears twice"),
    (dict(tensors=[(b"w", [8], 0, 4)], data=b"\0" * 64), "not a multiple of 32"),
    (dict(tensors=[(b"w", [64], 0, 0)], data=b"\0" * 100), "truncated file: tensor 'w'"),
])
def test_corrupted_headers(tmp_path, build, match):
    path = tmp_path / "c.gguf"
    path.write_bytes(gguf_bytes(**build))
    format_error(path, match)


def test_truncated_real_file_header(tmp_path, smollm2_path):
    with open(smollm2_path, "rb") as src:
        (tmp_path / "head.gguf").write_bytes(src.read(1024))
    format_error(tmp_path / "head.gguf", "truncated")


def test_truncated_real_file_tensor_data(tmp_path, smollm2_path, smollm2):
    # Header plus a few MB of tensor data: opening must fail up front, naming the first
    # tensor that does not fit, not later when that tensor is used.
    keep = smollm2.data_start + 4_000_000
    with open(smollm2_path, "rb") as src, open(tmp_path / "cut.gguf", "wb") as dst:
        dst.write(src.read(keep))
    first_missing = next(t for t in smollm2.tensors.values() if t.offset + t.n_bytes > keep)
    err = format_error(tmp_path / "cut.gguf", "truncated file")
    assert repr(first_missing.name) in str(err) and "re-download" in str(err)


def test_random_header_damage_only_ever_raises_format_error(tmp_path):
    """Flip bytes in the header of a valid file: every outcome is a clean read or a FormatError."""
    good = write_gguf(tmp_path / "good.gguf", small_tensors()).read_bytes()
    header_len = read_gguf(tmp_path / "good.gguf").data_start
    rng = np.random.default_rng(0)
    bad = tmp_path / "bad.gguf"
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        damaged = bytearray(good)
        for pos in rng.integers(4, header_len, size=rng.integers(1, 4)):
            damaged[pos] = rng.integers(0, 256)
        bad.write_bytes(bytes(damaged))
        try:
            f = read_gguf(bad)
            for name in f.tensors:
                f.tensor(name)
            outcomes["ok"] += 1
        except FormatError as e:
            assert "\n" not in str(e)
            outcomes["error"] += 1
    assert outcomes["error"] > 100, outcomes
