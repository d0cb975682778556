"""Load test of `llmkit serve`: concurrent streaming clients vs sequential batch-1 decoding, one run.

    python bench/serve.py [--clients 32] [--max-batch 32] [--min-tokens 16] [--max-tokens 96] [--seq 8] [--rounds 5]

A live server (uvicorn on 127.0.0.1, SmolLM2-135M-Instruct, fp32 or
--weights packed) gets --clients
chat requests at once, each streaming (SSE) with a random prompt length and a
random max_tokens; 20% of the clients hang up after a few tokens. Reported:
aggregate generated tok/s over the wall time, time to first token (p50/p95),
inter-token latency (p50/p95), errors, slots left after the run, and RSS growth;
with --rounds N the load repeats N times and RSS is printed after each round (a soak).
The baseline is the same engine decoding requests one at a time (batch 1, no
server) on --seq of the same requests, in the same process, half before and half
after the load phase (a shared machine's load drifts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import socket
import statistics
import sys
import threading
import time

WORDS = ("the of and to in is was for on that with as by at from his her it an are were which this be or had "
         "not but what all when there can one use each how said if do will up other about out many then them").split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb() -> float:
    """Resident set size now (not the peak), from /proc, after glibc returns its free heap pages
    (malloc_trim), so the number tracks live memory rather than the allocator's high-water mark."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the plain RSS
        pass
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def make_requests(n: int, lo: int, hi: int, seed: int = 0):
    rnd = random.Random(seed)
    reqs = []
    for i in range(n):
        filler = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(5, 120)))
        prompt = f"Here are some words: {filler}. Write a short story about request {i}."
        reqs.append({"prompt": prompt, "max_tokens": rnd.randint(lo, hi),
                     "hang_up_after": rnd.randint(2, 8) if rnd.random() < 0.2 else None})
    return reqs


async def client(http, url, spec, out):
    body = {"model": "smollm2", "messages": [{"role": "user", "content": spec["prompt"]}],
            "max_tokens": spec["max_tokens"], "temperature": 0.8, "seed": 1, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    stamps, tokens, status = [], 0, None
    try:
        async with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
            status = r.status_code
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                ev = json.loads(line[6:])
                if "error" in ev:
                    status = "stream-error"
                if ev.get("usage"):
                    tokens = ev["usage"]["completion_tokens"]
                elif ev["choices"] and ev["choices"][0]["delta"].get("content"):
                    stamps.append(time.perf_counter())
                    if spec["hang_up_after"] and len(stamps) >= spec["hang_up_after"]:
                        tokens = len(stamps)
                        break  # leaving the block closes the connection: the server must cancel
    except Exception as e:  # noqa: BLE001 - a bench counts failures instead of stopping
        status = f"exception {type(e).__name__}"
    out.append({"status": status, "ttft": stamps[0] - t0 if stamps else None, "tokens": tokens or len(stamps),
                "gaps": [b - a for a, b in zip(stamps, stamps[1:])], "hung_up": bool(spec["hang_up_after"])})


async def load(url, specs):
    import httpx

    out = []
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=len(specs) + 4)) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http, url, s, out) for s in specs))
        return out, time.perf_counter() - t0


def sequential(lm, specs):
    from llmkit.generate import Engine, SamplingParams
    from llmkit.generate.api import prompt_ids

    engine = Engine(lm.model, lm.tokenizer)
    tokens, t0 = 0, time.perf_counter()
    for s in specs:
        ids = prompt_ids(lm, s["prompt"], chat=True)
        out = engine.generate([ids], SamplingParams(max_tokens=s["max_tokens"], temperature=0.8, seed=1))[0]
        tokens += len(out.token_ids)
    return tokens, time.perf_counter() - t0


def drive(server, sched, url, specs, a, out: dict) -> None:
    """On a helper thread: start HTTP, run the load (and the soak rounds), stop the scheduler."""
    thread = threading.Thread(target=server.run, daemon=True)
    try:
        thread.start()
        while not server.started:
            time.sleep(0.05)
        asyncio.run(load(url, specs[:2]))  # warm-up
        results, wall = asyncio.run(load(url, specs))
        time.sleep(1.0)
        soak = [rss_mb()]
        for r in range(1, a.rounds):  # memory soak: the same load again; RSS after each round must level off
            more, w = asyncio.run(load(url, make_requests(a.clients, a.min_tokens, a.max_tokens, seed=r)))
            results += more
            soak.append(rss_mb())
            print(f"round {r + 1}/{a.rounds}: {sum(x['tokens'] for x in more) / w:.1f} tok/s, "
                  f"RSS {soak[-1]:.0f} MB", flush=True)
        out.update(results=results, wall=wall, soak=soak, leaked=sched.running + sched.waiting)
        server.should_exit = True
        thread.join(30)
    finally:
        sched.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--min-tokens", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--seq", type=int, default=8, help="requests in the sequential batch-1 baseline")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the load this many times (memory soak)")
    ap.add_argument("--weights", default="float", choices=["float", "packed"],
                    help="the GGUF's Q4_1 blocks expanded to float32 (serve's default) or run packed")
    a = ap.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)  # an oversubscribed machine punishes multi-threaded tiny ops

    import uvicorn

    from llmkit.formats.loader import load_model
    from llmkit.serve.app import create_app
    from llmkit.serve.state import ServeConfig

    lm = load_model("smollm2", device="cpu", dtype="float32", keep_quantized=a.weights == "packed")
    specs = make_requests(a.clients, a.min_tokens, a.max_tokens)
    app = create_app(lm, ServeConfig(max_batch=a.max_batch, max_queue=4 * a.clients, served_name="smollm2"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    url = f"http://127.0.0.1:{port}"
    seq_specs = [s for s in specs if not s["hang_up_after"]][:a.seq]
    half = max(len(seq_specs) // 2, 1)
    before = sequential(lm, seq_specs[:half])  # the machine's load drifts: measure before and after
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sched = app.state.llmkit.scheduler.hold()  # as `llmkit serve`: the model on this thread, HTTP on others
    out: dict = {}
    helper = threading.Thread(target=drive, args=(server, sched, url, specs, a, out), daemon=True)
    helper.start()
    sched.run(keep_going=helper.is_alive)
    helper.join(30)
    results, wall, soak, leaked = out["results"], out["wall"], out["soak"], out["leaked"]
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    after = sequential(lm, seq_specs[half:]) if len(seq_specs) > half else (0, 0.0)
    seq_tokens, seq_time = before[0] + after[0], before[1] + after[1]
    errors = [r for r in results if r["status"] != 200]
    first = results[:a.clients]  # the measured round; later rounds are the soak
    tokens = sum(r["tokens"] for r in first)
    ttft = [r["ttft"] for r in results if r["ttft"] is not None]
    gaps = [g for r in results for g in r["gaps"]]
    agg, seq = tokens / wall, seq_tokens / seq_time
    print(f"weights {a.weights}; clients {a.clients} (hung up early: {sum(r['hung_up'] for r in first)}), max_batch {a.max_batch}, "
          f"max_tokens {a.min_tokens}..{a.max_tokens}")
    print(f"errors for well-formed requests: {len(errors)} {[e['status'] for e in errors][:5]}")
    print(f"slots in use after the run: {leaked}; peak RSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MB")
    print(f"served: {tokens} tokens in {wall:.1f} s = {agg:.1f} tok/s aggregate")
    print(f"TTFT p50 {pct(ttft, 0.5):.2f} s, p95 {pct(ttft, 0.95):.2f} s; "
          f"inter-token p50 {pct(gaps, 0.5) * 1000:.0f} ms, p95 {pct(gaps, 0.95) * 1000:.0f} ms")
    print(f"sequential batch-1: {seq_tokens} tokens in {seq_time:.1f} s = {seq:.1f} tok/s ({len(seq_specs)} requests)")
    print(f"ratio: {agg / seq:.2f}x aggregate throughput (target >= 3x)")
    if len(soak) > 1:
        print(f"memory soak, RSS after each of {len(soak)} rounds: {', '.join(f'{m:.0f}' for m in soak)} MB")
    print(f"mean tokens per client stream: {statistics.mean(r['tokens'] for r in first):.1f}")
    sys.exit(1 if errors or leaked else 0)


if __name__ == "__main__":
    main()
