"""TokenLoader: shapes and shift, packing over shards, exact resume, DDP sharding, memmap, val pass."""

from __future__ import annotations

import json
import resource

import numpy as np
import pytest
import torch

from llmkit.data.errors import DataError
from llmkit.data.loader import TokenLoader, TokenStream, val_batches
from llmkit.data.prepare import prepare
from llmkit.data.shards import FORMAT, KIND
from llmkit.data.sources import JsonlFile

from .conftest import make_docs, write_jsonl

B, T = 3, 16


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, gpt2):
    root = tmp_path_factory.mktemp("loader")
    src = write_jsonl(root / "docs.jsonl", make_docs(150, seed=1))
    prepare(JsonlFile(src), gpt2, root / "data", val_fraction=0.2, shard_tokens=777, progress=False)
    return root / "data"


@pytest.fixture(scope="module")
def full(data_dir):
    """The train split as one array, read the slow obvious way."""
    stream = TokenStream(data_dir, "train")
    parts = [np.fromfile(data_dir / s["file"], dtype="<u2") for s in stream.index["splits"]["train"]["shards"]]
    return np.concatenate(parts).astype(np.int64)


def take(loader, n):
    return [next(loader) for _ in range(n)]


def test_shapes_shift_and_windows_come_from_the_stream(data_dir, full):
    loader = TokenLoader(data_dir, batch_size=B, seq_len=T, seed=3)
    assert len(loader.stream.shards) > 3  # windows do cross shard ends
    offset, order = loader.plan(0)
    for step in range(4):
        x, y = next(loader)
        assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
        for row, k in enumerate(order[step * B:(step + 1) * B]):
            start = offset + int(k) * T
            assert x[row].tolist() == full[start:start + T].tolist()
            assert y[row].tolist() == full[start + 1:start + T + 1].tolist()


def test_one_epoch_covers_every_window_once_then_reshuffles(data_dir):
    loader = TokenLoader(data_dir, batch_size=B, seq_len=T, seed=0)
    off0, order0 = loader.plan(0)
    assert sorted(order0.tolist()) == list(range(len(order0)))
    take(loader, loader.batches_per_epoch)
    assert loader.epoch == 0
    next(loader)
    assert loader.epoch == 1 and loader.cursor == B
    off1, order1 = loader.plan(1)
    assert (off1, order1[:10].tolist()) != (off0, order0[:10].tolist())


def test_exact_resume_matches_an_uninterrupted_run(data_dir):
    straight = TokenLoader(data_dir, batch_size=B, seq_len=T, seed=7)
    n_per_epoch = straight.batches_per_epoch
    N, M = n_per_epoch - 2, 6  # resume right before an epoch boundary, and cross it
    want = take(straight, N + M)

    first = TokenLoader(data_dir, batch_size=B, seq_len=T, seed=7)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(take(first, N), want[:N]))
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON round trip
    resumed = TokenLoader(data_dir, batch_size=B, seq_len=T, seed=7)
    resumed.load_state_dict(state)
    got = take(resumed, M)
    for (gx, gy), (wx, wy) in zip(got, want[N:]):
        assert torch.equal(gx, wx) and torch.equal(gy, wy)
    assert resumed.epoch == 1


def test_resume_refuses_a_different_order(data_dir):
    state = TokenLoader(data_dir, batch_size=B, seq_len=T, seed=7).state_dict()
    for kwargs, key in (({"seed": 8}, "seed"), ({"seq_len": T + 1}, "seq_len"), ({"batch_size": B + 1}, "global_batch"),
                        ({"split": "val", "batch_size": 1}, "split")):
        other = TokenLoader(data_dir, **{"batch_size": B, "seq_len": T, "seed": 7, **kwargs})
        with pytest.raises(DataError, match=f"{key} was"):
            other.load_state_dict(state)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_ranks_partition_the_single_process_global_batch(data_dir, world_size):
    steps = 2 * TokenLoader(data_dir, batch_size=B * world_size, seq_len=T).batches_per_epoch + 1  # 2 epochs
    single = take(TokenLoader(data_dir, batch_size=B * world_size, seq_len=T, seed=5), steps)
    ranks = [take(TokenLoader(data_dir, batch_size=B, seq_len=T, seed=5, rank=r, world_size=world_size), steps)
             for r in range(world_size)]
    for step in range(steps):
        x = torch.cat([ranks[r][step][0] for r in range(world_size)])
        y = torch.cat([ranks[r][step][1] for r in range(world_size)])
        assert torch.equal(x, single[step][0]) and torch.equal(y, single[step][1])
    # ranks are disjoint within a step
    rows = {tuple(row.tolist()) for r in range(world_size) for row in ranks[r][0][0]}
    assert len(rows) == B * world_size


def test_state_from_one_process_resumes_on_two(data_dir):
    one = TokenLoader(data_dir, batch_size=2 * B, seq_len=T, seed=1)
    take(one, 3)
    state = one.state_dict()
    want = next(one)[0]
    two = [TokenLoader(data_dir, batch_size=B, seq_len=T, seed=1, rank=r, world_size=2) for r in range(2)]
    for loader in two:
        loader.load_state_dict(state)
    assert torch.equal(torch.cat([next(loader)[0] for loader in two]), want)


def test_no_shuffle_walks_the_stream_in_order(data_dir, full):
    loader = TokenLoader(data_dir, batch_size=2, seq_len=T, shuffle=False)
    x, _ = next(loader)
    assert x.flatten().tolist() == [*full[:T], *full[T:2 * T]]


def test_val_batches_walk_every_token_once_and_shard_over_ranks(data_dir):
    stream = TokenStream(data_dir, "val")
    vals = np.concatenate([np.fromfile(data_dir / s["file"], dtype="<u2")
                           for s in stream.index["splits"]["val"]["shards"]]).astype(np.int64)
    n_win = (len(vals) - 1) // T
    batches = list(val_batches(data_dir, batch_size=B, seq_len=T))
    assert sum(len(x) for x, _ in batches) == n_win
    assert torch.cat([x for x, _ in batches]).flatten().tolist() == vals[:n_win * T].tolist()
    assert torch.cat([y for _, y in batches]).flatten().tolist() == vals[1:n_win * T + 1].tolist()
    single = list(val_batches(data_dir, batch_size=2 * B, seq_len=T))
    r0 = list(val_batches(data_dir, batch_size=B, seq_len=T, rank=0, world_size=2))
    r1 = list(val_batches(data_dir, batch_size=B, seq_len=T, rank=1, world_size=2))
    merged = [torch.cat([a[0]] + ([r1[i][0]] if i < len(r1) else [])) for i, a in enumerate(r0)]
    assert all(torch.equal(m, s[0]) for m, s in zip(merged, single)) and len(merged) == len(single)
    assert len(list(val_batches(data_dir, batch_size=B, seq_len=T, max_batches=2))) == 2


def test_bytes_per_token_comes_from_the_index(data_dir):
    loader = TokenLoader(data_dir, split="val", batch_size=1, seq_len=T)
    info = loader.index["splits"]["val"]
    assert loader.bytes_per_token == pytest.approx(info["bytes"] / info["tokens"])
    assert 1.5 < loader.bytes_per_token < 6


def test_too_little_data_and_bad_ranks_are_one_line_errors(data_dir):
    with pytest.raises(DataError, match="fewer than one global batch"):
        TokenLoader(data_dir, split="val", batch_size=64, seq_len=1024)
    with pytest.raises(DataError, match="rank=2"):
        TokenLoader(data_dir, batch_size=B, seq_len=T, rank=2, world_size=2)
    with pytest.raises(DataError, match="split 'test'"):
        TokenLoader(data_dir, split="test")
    with pytest.raises(DataError, match="not a prepared data directory"):
        TokenLoader(data_dir.parent)


def test_truncated_shard_is_detected(data_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(data_dir, copy)
    shard = copy / "train_000001.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(DataError, match="train_000001.bin.*index says"):
        TokenLoader(copy, batch_size=B, seq_len=T)


def test_shards_are_memory_mapped_not_read(tmp_path):
    """A 4 GB (sparse) shard: a loader that read it whole would take seconds and gigabytes."""
    n_tokens = 2 << 30  # uint16 -> 4 GiB on disk, but no blocks allocated
    with open(tmp_path / "train_000000.bin", "wb") as f:
        f.truncate(2 * n_tokens)
    index = {"format": FORMAT, "kind": KIND, "dtype": "uint16", "vocab_size": 50257,
             "tokenizer": {"sha256": "x"},
             "splits": {"train": {"docs": 1, "bytes": n_tokens, "tokens": n_tokens,
                                  "shards": [{"file": "train_000000.bin", "tokens": n_tokens}]}}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    loader = TokenLoader(tmp_path, batch_size=4, seq_len=1024)
    assert all(isinstance(m, np.memmap) for m in loader.stream.shards)
    x, y = next(loader)
    assert x.shape == (4, 1024) and int(x.abs().sum()) == 0
    grew_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grew_mib < 512  # the window permutation is ~16 MB; the shard itself is 4 GiB
