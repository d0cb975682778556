"""Continuous batching: requests join and leave one running decode batch at token boundaries.

    sched = Scheduler(engine, max_batch=16, max_queue=64).start()
    req = sched.submit(prompt_ids, SamplingParams(max_tokens=32))
    for delta in req.iter(): print(delta.text, end="")      # or `async for delta in req.aiter()`
    req.cancel()                                             # frees the slot at the next token boundary

One thread owns the model: a background thread (``start()``), or the caller's own thread
(``run()``, what `llmkit serve` uses). Other torch work of the process can be sent to the
same thread with ``call(fn)`` (the server's embeddings), so one OpenMP thread team does
all the math. On a 2-core CPU a second team makes libgomp's idle workers sleep instead of
spin, and batch-1 decode then runs ~40% slower. Each loop iteration (a "step"):
  1. drops cancelled requests (their KV rows leave the cache),
  2. admits waiting requests while there is a free slot: each prompt is prefilled on
     its own, its first token sampled, and its KV rows are packed into the batch cache,
  3. runs ONE batched decode forward for every running row, samples each row with its
     own parameters (and its own constraint mask), and drops finished rows.
So a new request waits at most one decode step to start, and never for the others to finish.

Speculative decoding (``speculative=k``): while a single request is running and none is
waiting, a step guesses up to k next tokens (prompt lookup, or a same-vocabulary draft
model), runs the target once over [next, g1..gk], and emits tokens one at a time from
those logits with the row's own sampler, stopping at the first token that differs from
the guess. Each emitted token is what plain decoding would have produced from the same
logits and the same random draws, so greedy and seeded outputs are unchanged; a step
just yields 1..k+1 tokens for one weight pass. After a round with no accepted guess the
row backs off (1, 2, 4 ... 16 plain steps) so free-form chat pays almost nothing.

The batch cache is left-padded (see KVCache): all rows write the same slot. Packing
right-aligns every live row at the new shared position, which also squeezes out the
padding that finished rows left behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Iterator, Protocol, Sequence

import torch

from llmkit.core.errors import GenerationError, LLMKitError
from llmkit.generate.engine import Completion, Delta, Engine, TokenLogprob, Row
from llmkit.generate.sampling import SamplingParams, process_logits, sample, uses_penalties
from llmkit.generate.speculative import Draft, check_draft, ngram_proposal
from llmkit.model import KVCache, Transformer


GROW = 256  # cache slots added per repack beyond the longest live row
MAX_BACKOFF = 16  # most plain steps a row waits before guessing again after a miss


class QueueFullError(LLMKitError):
    """Every slot is busy and the waiting queue is full: retry later (HTTP 429)."""

    status = 429


class Constraint(Protocol):
    """Per-request token filter (see llmkit.generate.constrain)."""

    def allowed(self) -> torch.Tensor: ...  # (V,) bool: tokens allowed next (stop tokens included when done)

    def advance(self, token_id: int) -> None: ...


@dataclass
class PromptLogprobs:
    """Log-probabilities of the prompt's own tokens (the first has none): what `echo` needs."""

    tokens: list[TokenLogprob | None]


_DONE = object()


class Request:
    """A handle on one submitted generation: events arrive as Delta objects, then the end."""

    def __init__(self, rid: int, prompt: list[int], params: SamplingParams, constraint: Constraint | None,
                 prompt_logprobs: int | None):
        self.id = rid
        self.prompt = prompt
        self.params = params
        self.constraint = constraint
        self.prompt_logprobs = prompt_logprobs  # None = not wanted; N = with N top alternatives
        self.cancelled = False
        self.finished = False
        self.submitted = time.perf_counter()
        self.first_token_at: float | None = None
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._notify: Callable[[], None] | None = None
        self._wake: Callable[[], None] = lambda: None

    # -- producer side (the scheduler thread) --
    def _put(self, item) -> None:
        self._events.put(item)
        if self._notify is not None:
            self._notify()

    # -- consumer side --
    def cancel(self) -> None:
        """Stop generating; the scheduler frees the slot at its next token boundary."""
        self.cancelled = True
        self._wake()

    def iter(self) -> Iterator[Delta | PromptLogprobs | Completion]:
        while True:
            item = self._events.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def aiter(self) -> AsyncIterator[Delta | PromptLogprobs | Completion]:
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        self._notify = lambda: loop.call_soon_threadsafe(ready.set)
        while True:
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                await ready.wait()
                ready.clear()
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def result(self) -> tuple[Completion, PromptLogprobs | None]:
        """Block until done: the whole completion (and the prompt logprobs when asked for)."""
        done, plp = None, None
        for ev in self.iter():
            if isinstance(ev, PromptLogprobs):
                plp = ev
            elif isinstance(ev, Completion):
                done = ev
        assert done is not None, "the scheduler ends every request with its Completion"
        return done, plp


@dataclass
class _Live:
    """A running request: the engine's row state plus what continuous batching adds."""

    req: Request
    row: Row
    next_id: int  # the token to feed at the next decode step
    counts: torch.Tensor | None = None  # (1, V) output token counts, only with penalties
    stop_lp: TokenLogprob | None = None  # logprob of the stop token that ended the row
    kept: list[int] = field(default_factory=list)
    draft: Draft | None = None  # the draft model's cache for this row (speculation with a draft)
    backoff: int = 0  # plain steps to go before the next guess
    misses: int = 0  # rounds in a row with no accepted guess


def pack_rows(segments: Sequence[tuple[torch.Tensor, torch.Tensor]], capacity: int) -> KVCache:
    """Right-align per-row KV segments k, v (L, Hkv, len, D) into one left-padded cache.

    The shared write position becomes the longest segment; row b starts at pos - len_b.
    Positions are baked into cached keys (RoPE is applied before caching), so moving a
    row to other slots keeps it exact as long as ``start`` moves with it.
    >>> c = pack_rows([(torch.ones(1, 1, 2, 1),) * 2, (torch.ones(1, 1, 3, 1),) * 2], capacity=5)
    >>> c.pos, c.start.tolist(), c.max_len
    (3, [1, 0], 5)
    """
    lengths = [k.shape[2] for k, _ in segments]
    pos = max(lengths)
    assert capacity >= pos
    L, H, _, D = segments[0][0].shape
    k0 = segments[0][0]
    k = torch.zeros(L, len(segments), H, capacity, D, dtype=k0.dtype, device=k0.device)
    v = torch.zeros_like(k)
    for b, (sk, sv) in enumerate(segments):
        k[:, b, :, pos - sk.shape[2]:pos] = sk
        v[:, b, :, pos - sv.shape[2]:pos] = sv
    start = torch.tensor([pos - n for n in lengths], dtype=torch.long, device=k0.device)
    return KVCache(k=k, v=v, start=start, pos=pos, padded=bool((start > 0).any()))


def row_segment(cache: KVCache, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row b's live keys/values (L, Hkv, len, D) — the slots [start_b, pos)."""
    s = int(cache.start[b])
    return cache.k[:, b, :, s:cache.pos], cache.v[:, b, :, s:cache.pos]


@dataclass
class SchedulerStats:
    requests: int = 0  # admitted into the batch
    finished: int = 0
    cancelled: int = 0
    rejected: int = 0  # queue full
    prompt_tokens: int = 0
    generated_tokens: int = 0
    steps: int = 0  # batched decode forwards
    spec_rounds: int = 0  # speculative verify forwards (also counted in steps)
    spec_proposed: int = 0  # guessed tokens
    spec_accepted: int = 0  # guesses the target agreed with


class Scheduler:
    def __init__(self, engine: Engine, max_batch: int = 16, max_queue: int = 64, prefill_budget: int = 1024,
                 speculative: int = 0, draft: Transformer | None = None, max_ngram: int = 3,
                 min_ngram: int = 2):
        if max_batch < 1 or max_queue < 0:
            raise GenerationError(f"max_batch={max_batch}, max_queue={max_queue}",
                                  "max_batch must be >= 1 and max_queue >= 0")
        if speculative < 0:
            raise GenerationError(f"speculative={speculative}", "guess 0 (off) or more tokens per step")
        check_draft(engine.model, draft)
        # guesses per step when one request runs alone: prompt lookup, or the draft model when given
        self.speculative, self.draft = speculative, draft
        # prompt lookup matches n-grams of min..max tokens; a single-token match guesses wrong too often
        self.min_ngram, self.max_ngram = min_ngram, max_ngram
        self.engine = engine
        self.max_batch, self.max_queue = max_batch, max_queue
        # prompt tokens prefilled per step (at least one request): bounds the stall running rows see
        self.prefill_budget = prefill_budget
        self.stats = SchedulerStats()
        self._ids = itertools.count(1)
        self._waiting: deque[Request] = deque()
        self._live: list[_Live] = []
        self._cache: KVCache | None = None
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._running = False  # a loop is running (in our thread or the caller's)
        self._in_caller = False  # run() owns the loop: start() must not spawn a thread
        self._calls: deque[tuple[Callable[[], object], concurrent.futures.Future]] = deque()

    # ---- public API --------------------------------------------------------------------------
    @property
    def running(self) -> int:
        return len(self._live)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def alive(self) -> bool:
        return self._running and not self._stopping

    def submit(self, prompt: Sequence[int], params: SamplingParams | None = None, *,
               constraint: Constraint | None = None, prompt_logprobs: int | None = None) -> Request:
        """Queue one prompt; raises QueueFullError when every slot and the queue are taken."""
        params = params or SamplingParams()
        self.engine.prepare([prompt], [params])  # validates ids, context and params now, in the caller
        req = Request(next(self._ids), [int(t) for t in prompt], params, constraint, prompt_logprobs)
        req._wake = self._wake
        with self._cv:
            if len(self._waiting) >= self.max_queue and len(self._live) + len(self._waiting) >= self.max_batch:
                self.stats.rejected += 1
                raise QueueFullError(f"server busy: {len(self._live)} running, {len(self._waiting)} waiting",
                                     "retry after a short wait")
            self._waiting.append(req)
            self._cv.notify()
        return req

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams | None = None) -> list[Completion]:
        """Submit all prompts at once and wait: the batch forms and drains by itself."""
        reqs = [self.submit(p, params) for p in prompts]
        return [r.result()[0] for r in reqs]

    def call(self, fn: Callable[[], object]) -> concurrent.futures.Future:
        """Run fn() on the scheduler's thread between two steps; its result (or error) in the future."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            if self._stopping or not self._running:
                fut.set_exception(GenerationError("the scheduler is not running", "start the server first"))
                return fut
            self._calls.append((fn, fut))
            self._cv.notify()
        return fut

    def start(self) -> "Scheduler":
        """Run the loop in a background thread (a no-op while run() owns it in the caller's thread)."""
        if self._thread is None and not self._in_caller:
            self._stopping, self._running = False, True
            self._thread = threading.Thread(target=self._loop, name="llmkit-scheduler", daemon=True)
            self._thread.start()
        return self

    def hold(self) -> "Scheduler":
        """Reserve the loop for run() in the caller's thread: start() becomes a no-op (call before
        anything that may call start(), such as a web app's startup, can run)."""
        with self._cv:
            self._in_caller = True
        return self

    def run(self, keep_going: Callable[[], bool] = lambda: True) -> None:
        """Run the loop in this thread until stop() (from another thread) or keep_going() is False."""
        with self._cv:
            if self._thread is not None:
                raise GenerationError("the scheduler already runs in a background thread", "call hold() first")
            self._in_caller, self._stopping, self._running = True, False, True
        try:
            self._loop(keep_going)
        finally:
            with self._cv:
                self._stopping = True
            self._in_caller = False
            self._shutdown()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._shutdown()

    def _shutdown(self) -> None:
        """Fail whatever is still queued or running (called once the loop has exited)."""
        self._running = False
        for req in list(self._waiting) + [lv.req for lv in self._live]:
            self._end(req, GenerationError("the server is shutting down", "retry on another instance"))
        self._waiting.clear()
        self._live, self._cache = [], None
        while self._calls:
            self._calls.popleft()[1].set_exception(GenerationError("the server is shutting down", "retry"))

    # ---- the loop ----------------------------------------------------------------------------
    def _wake(self) -> None:
        with self._cv:
            self._cv.notify()

    def _loop(self, keep_going: Callable[[], bool] = lambda: True) -> None:
        while True:
            with self._cv:
                while not self._stopping and not self._waiting and not self._live and not self._calls:
                    if not self._cv.wait(timeout=0.5) and not keep_going():
                        return
                if self._stopping:
                    return
            self._run_calls()
            try:
                self.step()
            except Exception as e:  # a failed forward must not kill the server: fail this batch, go on
                for lv in self._live:
                    self._end(lv.req, e)
                self._live, self._cache = [], None

    def _run_calls(self) -> None:
        while self._calls:
            with self._cv:
                fn, fut = self._calls.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - handed to the caller through the future
                fut.set_exception(e)
                continue
            except BaseException as e:  # Ctrl-C while it ran: the caller hears of it, the loop stops
                fut.set_exception(e)
                raise
            fut.set_result(result)

    @torch.inference_mode()
    def step(self) -> None:
        """One token boundary: drop cancelled rows, admit waiting requests, decode one token."""
        self._drop([i for i, lv in enumerate(self._live) if lv.req.cancelled], cancelled=True)
        self._admit()
        if not self._live:
            return
        if self.speculative and len(self._live) == 1 and not self._waiting and self._speculate(self._live[0]):
            return
        cache = self._room(1)
        ids = torch.tensor([[lv.next_id] for lv in self._live], device=self.engine.device)
        logits = self.engine.model(ids, kv_cache=cache)[:, -1]  # (B, V)
        self.stats.steps += 1
        logits = logits.float().cpu()
        done = [b for b, lv in enumerate(self._live) if not self._emit(lv, logits[b])]
        self._drop(done)

    def _room(self, t: int) -> KVCache:
        """The batch cache, repacked first if it cannot take t more slots (padding squeezed out)."""
        cache = self._cache
        if cache.pos + t > cache.max_len:
            self._cache = cache = self._pack([row_segment(cache, b) for b in range(cache.batch)])
        return cache

    def _speculate(self, lv: _Live) -> bool:
        """One guess-and-verify step for the only live row; False when there is nothing to guess."""
        if lv.backoff:
            lv.backoff -= 1
            return False
        row = lv.row
        seq = row.prompt + row.tokens  # row.tokens ends with next_id, which the cache has not seen yet
        room = min(self.speculative, row.params.max_tokens - len(row.tokens) - 1,
                   self.engine.model.cfg.max_seq_len - len(seq) - 1)
        if room < 1:
            return False
        if self.draft is not None:
            if lv.draft is None:
                lv.draft = Draft(self.draft, len(row.prompt) + row.params.max_tokens + self.speculative + 1)
            guess = lv.draft.propose(seq, room)
        else:
            guess = ngram_proposal(seq, room, self.max_ngram, self.min_ngram)
        if not guess:
            return False
        cache = self._room(1 + len(guess))
        base = cache.pos
        ids = torch.tensor([[lv.next_id] + guess], device=self.engine.device)
        logits = self.engine.model(ids, kv_cache=cache)[0].float().cpu()  # (1+g, V)
        self.stats.steps += 1
        self.stats.spec_rounds += 1
        self.stats.spec_proposed += len(guess)
        n = 0  # guesses emitted: each is the token the row's own sampler picked from the target's logits
        while self._emit(lv, logits[n]):
            if n == len(guess) or lv.next_id != guess[n]:
                break
            n += 1
        self.stats.spec_accepted += n
        lv.misses = 0 if n else lv.misses + 1
        lv.backoff = min(2 ** (lv.misses - 1), MAX_BACKOFF) if lv.misses else 0
        if row.finish is not None:
            self._drop([0])
            return True
        cache.pos = base + 1 + n  # keep next_id and the accepted guesses; the rejected slots get overwritten
        if lv.draft is not None:
            lv.draft.rollback(len(seq) + n)
        return True

    def _admit(self) -> None:
        with self._cv:
            free, budget, new = self.max_batch - len(self._live), self.prefill_budget, []
            while self._waiting and len(new) < free and (not new or len(self._waiting[0].prompt) <= budget):
                budget -= len(self._waiting[0].prompt)
                new.append(self._waiting.popleft())
        new = [r for r in new if not self._skip_cancelled(r)]
        if not new:
            return
        segments = [row_segment(self._cache, b) for b in range(self._cache.batch)] if self._live else []
        for req in new:
            seg = self._prefill(req)
            if seg is not None:
                segments.append(seg)
        if segments:
            self._cache = self._pack(segments)
        else:
            self._cache = None

    def _skip_cancelled(self, req: Request) -> bool:
        if req.cancelled:
            self.stats.cancelled += 1
            self._end(req)
        return req.cancelled

    def _prefill(self, req: Request):
        """Run one prompt alone, emit its first token; its KV segment if it keeps going."""
        row = self.engine.prepare([req.prompt], [req.params])[0]
        lv = _Live(req, row, next_id=-1)
        if uses_penalties(req.params):
            vocab = self.engine.model.cfg.vocab_size
            lv.counts = torch.zeros(1, vocab, dtype=torch.long)
            if req.params.repetition_penalty != 1.0:
                row.prompt_mask = torch.zeros(1, vocab, dtype=torch.bool)
                row.prompt_mask[0, torch.tensor(req.prompt)] = True
        self.stats.requests += 1
        self.stats.prompt_tokens += len(req.prompt)
        P = len(req.prompt)
        cache = KVCache.allocate(self.engine.model.cfg, 1, P, dtype=self.engine.model.tok_emb.weight.dtype,
                                 device=self.engine.device)
        idx = torch.tensor([req.prompt], device=self.engine.device)
        full = req.prompt_logprobs is not None
        logits = self.engine.model(idx, kv_cache=cache, last_only=not full)[0].float().cpu()  # (T, V)
        if full:
            req._put(PromptLogprobs(prompt_token_logprobs(logits, req.prompt, req.prompt_logprobs)))
        if req.params.max_tokens == 0:
            self._finish(lv, "length")
            return None
        if not self._emit(lv, logits[-1]):
            return None
        self._live.append(lv)
        return row_segment(cache, 0)

    def _pack(self, segments) -> KVCache:
        """One cache for all live rows, with room for the longest remaining generation."""
        pos = max(k.shape[2] for k, _ in segments)
        left = max(lv.row.params.max_tokens - len(lv.row.tokens) for lv in self._live)
        # grow in chunks, not to max_tokens at once: a long max_tokens would reserve memory it rarely uses
        capacity = min(pos + min(left, GROW), self.engine.model.cfg.max_seq_len)
        return pack_rows(segments, max(capacity, pos + 1))

    def _emit(self, lv: _Live, logits: torch.Tensor) -> bool:
        """Sample this row's next token from its logits (V,), send the delta; False once it ends."""
        tok = self._choose(lv, logits)
        row = lv.row
        lp = Engine.token_logprob(logits, tok, row.params.logprobs) if row.params.logprobs is not None else None
        delta = self.engine.advance(row, tok, lp)
        if lv.counts is not None:
            lv.counts[0, tok] += 1
        if lv.req.constraint is not None and row.finish is None:
            lv.req.constraint.advance(tok)
        if lv.req.first_token_at is None:
            lv.req.first_token_at = time.perf_counter()
        self.stats.generated_tokens += 1
        lv.req._put(delta)
        if row.finish is not None:
            if lp is not None and tok in row.stop_ids:
                lv.stop_lp = lp
            self._finish(lv, row.finish)
            return False
        lv.next_id = tok
        return True

    def _choose(self, lv: _Live, logits: torch.Tensor) -> int:
        p = lv.row.params
        logits = logits[None]  # (1, V)
        if lv.req.constraint is not None:
            logits = logits.masked_fill(~lv.req.constraint.allowed()[None], float("-inf"))
        if p.greedy and lv.counts is None:
            return int(logits.argmax(-1))
        processed = process_logits(logits, p, lv.counts, lv.row.prompt_mask)
        return int(sample(processed, p.greedy, lv.row.generator)[0])

    def _finish(self, lv: _Live, reason: str) -> None:
        row = lv.row
        self.stats.finished += 1
        lv.req._put(Completion(row.tokens, row.stream.text, reason, len(row.prompt),
                               row.logprobs if row.params.logprobs is not None else None, lv.stop_lp))
        self._end(lv.req)

    def _drop(self, rows: list[int], cancelled: bool = False) -> None:
        if not rows:
            return
        gone = set(rows)
        for b in rows:
            if cancelled:
                self.stats.cancelled += 1
                self._end(self._live[b].req)
        keep = [b for b in range(len(self._live)) if b not in gone]
        self._live = [self._live[b] for b in keep]
        if not keep:
            self._cache = None
        else:
            self._cache.select(keep)

    @staticmethod
    def _end(req: Request, error: BaseException | None = None) -> None:
        if req.finished:
            return
        req.finished = True
        if error is not None:
            req._put(error)
        req._put(_DONE)


def prompt_token_logprobs(logits: torch.Tensor, prompt: Sequence[int], top_n: int) -> list[TokenLogprob | None]:
    """Logprob of each prompt token given the ones before it; logits (T, V) from one forward.

    The first token has no context, so it gets None (OpenAI's echo returns null there).
    """
    lp = logits[:-1].float().log_softmax(-1)  # (T-1, V): position t predicts token t+1
    target = torch.tensor(prompt[1:], dtype=torch.long)
    chosen = lp.gather(-1, target[:, None])[:, 0]  # (T-1,)
    out: list[TokenLogprob | None] = [None]
    tops = lp.topk(top_n, dim=-1) if top_n else None
    for t in range(len(prompt) - 1):
        top = [(int(i), float(v)) for i, v in zip(tops.indices[t], tops.values[t])] if tops is not None else []
        out.append(TokenLogprob(int(target[t]), float(chosen[t]), top))
    return out
