"""From a byte NFA to token masks: a lazily built DFA walked by the whole vocabulary at once.

The DFA is built on demand (subset construction), one full 256-byte row per state.
A token is allowed in DFA state d when walking its bytes from d never hits the dead
state: every NFA state that cannot reach the accept state is pruned, so any live
state can still finish. The walk runs for all tokens together with numpy: tokens
sorted by length, one gather per byte position, so a mask costs a few milliseconds
even for a 49152-token vocabulary. Masks are cached per DFA state.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from llmkit.generate.constrain.regex import NFA

DEAD = 0


class VocabIndex:
    """Token bytes as a (V, Lmax) matrix, rows sorted by length (longest first)."""

    def __init__(self, tokenizer, vocab_size: int, eos_ids):
        self.vocab_size = vocab_size
        self.eos_ids = sorted(int(i) for i in eos_ids if 0 <= i < vocab_size)
        specials = set(tokenizer.special_tokens.values())
        pieces = []
        for i in range(min(vocab_size, tokenizer.vocab_size)):
            if i in specials:
                continue  # special tokens are never text inside a constrained answer
            try:
                b = tokenizer.token_bytes(i)
            except Exception:  # unused ids in a padded vocabulary
                continue
            if b:
                pieces.append((i, b))
        pieces.sort(key=lambda p: -len(p[1]))
        self.ids = np.array([i for i, _ in pieces], dtype=np.int64)
        self.lengths = np.array([len(b) for _, b in pieces], dtype=np.int64)
        width = int(self.lengths.max()) if len(pieces) else 0
        self.bytes = np.zeros((len(pieces), width), dtype=np.int64)
        for row, (_, b) in enumerate(pieces):
            self.bytes[row, :len(b)] = np.frombuffer(b, dtype=np.uint8)
        # active[j] = how many tokens are longer than j (they are the first rows)
        self.active = [int((self.lengths > j).sum()) for j in range(width)]
        self.token_bytes = {i: b for i, b in pieces}


class DFA:
    """Lazy DFA over bytes. State 0 is dead; `accepting[s]` says whether s may end here."""

    def __init__(self, nfa: NFA):
        self.nfa = nfa
        self.live = self._coreachable(nfa)
        self.ids: dict[frozenset[int], int] = {frozenset(): DEAD}
        self.sets: list[frozenset[int]] = [frozenset()]
        self.table = np.zeros((64, 256), dtype=np.int64)
        self.filled = np.zeros(64, dtype=bool)
        self.filled[DEAD] = True  # the dead state maps everything to itself
        self.accepting: list[bool] = [False]
        self.lock = threading.Lock()
        self._closures: dict[int, frozenset[int]] = {}
        self.start = self._state(nfa.closure({nfa.start}))

    @staticmethod
    def _coreachable(nfa: NFA) -> frozenset[int]:
        back: list[list[int]] = [[] for _ in nfa.edges]
        for s, edges in enumerate(nfa.edges):
            for _, t in edges:
                back[t].append(s)
        seen, stack = {nfa.accept}, [nfa.accept]
        while stack:
            for s in back[stack.pop()]:
                if s not in seen:
                    seen.add(s)
                    stack.append(s)
        return frozenset(seen)

    def _state(self, nfa_states: frozenset[int]) -> int:
        key = nfa_states & self.live
        sid = self.ids.get(key)
        if sid is None:
            sid = len(self.sets)
            self.ids[key] = sid
            self.sets.append(key)
            self.accepting.append(self.nfa.accept in key)
            if sid >= len(self.table):
                self.table = np.concatenate([self.table, np.zeros_like(self.table)])
                self.filled = np.concatenate([self.filled, np.zeros_like(self.filled)])
        return sid

    def fill(self, sid: int) -> None:
        """Compute all 256 transitions of one state."""
        if self.filled[sid]:
            return
        targets: dict[int, set[int]] = {}
        for s in self.sets[sid]:
            for label, t in self.nfa.edges[s]:
                if label is not None:
                    for b in label:
                        targets.setdefault(b, set()).add(t)
        row = np.zeros(256, dtype=np.int64)
        by_targets: dict[frozenset[int], int] = {}  # most bytes share a target set: close each set once
        for b, ts in targets.items():
            key = frozenset(ts)
            if key not in by_targets:
                by_targets[key] = self._state(self._closure(key))
            row[b] = by_targets[key]
        self.table[sid] = row
        self.filled[sid] = True

    def _closure(self, states: frozenset[int]) -> frozenset[int]:
        out: set[int] = set()
        for s in states:
            c = self._closures.get(s)
            if c is None:
                c = self._closures[s] = self.nfa.closure({s})
            out |= c
        return frozenset(out)

    def walk(self, sid: int, data: bytes) -> int:
        for b in data:
            self.fill(sid)
            sid = int(self.table[sid, b])
            if sid == DEAD:
                break
        return sid

    def can_continue(self, sid: int) -> bool:
        self.fill(sid)
        return bool((self.table[sid] != DEAD).any())


class TokenAutomaton:
    """A compiled constraint over one vocabulary: masks per DFA state, cached."""

    def __init__(self, dfa: DFA, vocab: VocabIndex):
        self.dfa, self.vocab = dfa, vocab
        self._masks: dict[int, torch.Tensor] = {}

    def mask(self, sid: int) -> torch.Tensor:
        m = self._masks.get(sid)
        if m is None:
            with self.dfa.lock:
                m = self._masks.get(sid)
                if m is None:
                    m = self._masks[sid] = self._compute(sid)
        return m

    def _compute(self, sid: int) -> torch.Tensor:
        """(V,) bool: tokens whose bytes keep the DFA alive from sid; eos when sid may end."""
        dfa, v = self.dfa, self.vocab
        state = np.full(len(v.ids), sid, dtype=np.int64)
        for j, n in enumerate(v.active):
            cur = state[:n]
            for s in np.unique(cur):
                dfa.fill(int(s))
            state[:n] = dfa.table[cur, v.bytes[:n, j]]
        mask = torch.zeros(v.vocab_size, dtype=torch.bool)
        mask[torch.from_numpy(v.ids[state != DEAD])] = True
        if dfa.accepting[sid]:
            mask[v.eos_ids] = True
        if not mask.any():  # nothing fits (a byte no token spells): end rather than loop
            mask[v.eos_ids] = True
        return mask

    def advance(self, sid: int, token_id: int) -> int:
        data = self.vocab.token_bytes.get(token_id)
        if data is None:  # eos or a special token: the constrained text is over
            return sid
        with self.dfa.lock:
            return self.dfa.walk(sid, data)


class TokenConstraint:
    """One request's position in a TokenAutomaton (the scheduler's Constraint protocol)."""

    def __init__(self, automaton: TokenAutomaton):
        self.automaton = automaton
        self.state = automaton.dfa.start

    def allowed(self) -> torch.Tensor:
        return self.automaton.mask(self.state)

    def advance(self, token_id: int) -> None:
        self.state = self.automaton.advance(self.state, token_id)

    @property
    def done(self) -> bool:
        return self.automaton.dfa.accepting[self.state]
