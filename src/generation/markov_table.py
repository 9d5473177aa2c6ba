"""The automaton behind the Markov writer (src/generation/markov.py): one direction's counts.

Keys are hashed (FNV-1a over piece ids, 64 bits) into sorted arrays per order, with the keys' pieces
kept beside them so that a lookup is exact; every state owns a slice of the transition arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAD, BOS, EOS = 0, 1, 2  # PAD matches no key; BOS pads a line's start, EOS ends it
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _searchsorted(table: np.ndarray, needles: np.ndarray, side: str = "left") -> np.ndarray:
    """np.searchsorted with the needles sorted first: numpy then narrows each search from the last
    result, which halves the time for thousands of random needles in a large table."""
    order = np.argsort(needles)
    out = np.empty(len(needles), dtype=np.int64)
    out[order] = np.searchsorted(table, needles[order], side=side)
    return out


def _mix(h: np.ndarray, ids: np.ndarray) -> np.ndarray:
    # FNV-1a over ids; uint64 arithmetic wraps, which is the point
    return (h ^ (ids.astype(np.uint64) + np.uint64(1))) * _FNV_PRIME


class Table:
    """The counts of one direction as an automaton.

    States: order 0 (one state, the unigram counts), then every key of 1..order pieces, sorted by
    hash within its order, then one absorbing state after a line's end. Each state owns a slice of
    the transition arrays: the next piece, its count (as an inclusive running sum over all
    transitions) and `dest`, the state the writer is in after that piece: the longest suffix of
    (key + piece) known with at least `min_choices` continuations, else the longest known one, else
    order 0. A walk step is then three gathers per row, whatever the order.
    """

    def __init__(self, arrays: dict[str, np.ndarray], order: int) -> None:
        self.order = order
        self.next_ids = arrays["next_ids"]
        self.cum_end = arrays["cum_end"]
        self.dest = arrays["dest"]
        self.state_base = arrays["state_base"]  # count mass before each state's first transition
        self.state_total = arrays["state_total"]
        self.state_choices = arrays["state_choices"]  # distinct continuations
        self.hashes = [arrays[f"hashes_{k}"] for k in range(1, order + 1)]
        self.keys = [arrays[f"keys_{k}"].reshape(-1, k) for k in range(1, order + 1)]
        self.first_state = arrays["first_state"]  # global index of each order's first state
        self.absorbing = len(self.state_total) - 1
        self._prepare_draws()

    def _prepare_draws(self) -> None:
        # One record per unit of count mass holding the transition's piece and what a draw from the
        # state it leads to needs (where that state's mass starts and how much it has), so a walk
        # step is one gather: the piece written now and the next draw's range come together.
        # Records, not parallel arrays, because each gather of a random row costs a cache miss
        # whatever its width. The per-state records start a walk. Derived here, not stored.
        # 32-bit where the counts allow it: smaller arrays gather faster.
        counts = np.diff(self.cum_end, prepend=0)
        mass = int(self.cum_end[-1]) if len(self.cum_end) else 0
        index = np.int32 if mass < 2**31 and len(self.state_total) < 2**31 else np.int64
        # float32 draws are exact enough while no state's count passes 2**24
        real = np.float32 if int(self.state_total.max(initial=0)) < 2**24 else np.float64
        self._index, self._real = index, real
        self._state_draw = np.empty(len(self.state_total), dtype=[("base", index), ("total", real)])
        self._state_draw["base"] = self.state_base
        self._state_draw["total"] = self.state_total
        dest = np.repeat(self.dest, counts)
        # padded to a power-of-two size: numpy's take copies those sizes by a fast path
        fields = [("next", np.int32), ("base", index), ("total", real)]
        size = sum(np.dtype(t).itemsize for _, t in fields)
        self._slot = np.zeros(mass, dtype=np.dtype({"names": [f for f, _ in fields],
                                                     "formats": [t for _, t in fields],
                                                     "itemsize": 1 << (size - 1).bit_length()}))
        self._slot["next"] = np.repeat(self.next_ids, counts)
        self._slot["base"] = self.state_base[dest]
        self._slot["total"] = self.state_total[dest]
        # the absorbing state has one unit of mass: every draw in it lands on this slot
        self._absorbing_slot = int(self.state_base[self.absorbing]) if len(self.state_base) else -1

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"next_ids": self.next_ids, "cum_end": self.cum_end, "dest": self.dest,
               "state_base": self.state_base, "state_total": self.state_total,
               "state_choices": self.state_choices, "first_state": self.first_state}
        for k in range(1, self.order + 1):
            out[f"hashes_{k}"] = self.hashes[k - 1]
            out[f"keys_{k}"] = self.keys[k - 1].reshape(-1)
        return out

    @classmethod
    def build(cls, lines: Sequence[np.ndarray], order: int, min_choices: int) -> Table:
        """Counts of every key of 1..order pieces before each piece (and each line's end)."""
        pad = np.full(order, BOS, dtype=np.int32)
        parts = []
        for ids in lines:
            parts += [pad, ids.astype(np.int32), np.array([EOS], dtype=np.int32)]
        seq = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        targets = np.flatnonzero(seq != BOS)  # every piece and line end; BOS is never a target
        nexts = seq[targets]
        uni_next, uni_count = np.unique(nexts, return_counts=True)
        next_parts, count_parts = [uni_next.astype(np.int32)], [uni_count.astype(np.int64)]
        key_parts = [np.full((len(uni_next), order), PAD, dtype=np.int32)]  # each transition's key
        choices, totals = [len(uni_next)], [int(uni_count.sum())]
        arrays: dict[str, np.ndarray] = {}
        first_state = [0]
        h = np.full(len(targets), _FNV_OFFSET, dtype=np.uint64)
        n_states = 1
        for k in range(1, order + 1):
            h = _mix(h, seq[targets - k])
            keys = np.stack([seq[targets - j] for j in range(k, 0, -1)], axis=1)  # oldest first
            sort = np.lexsort((nexts, h))
            hs, ns, ks = h[sort], nexts[sort], keys[sort]
            new_key = np.ones(len(hs), dtype=bool)
            new_key[1:] = hs[1:] != hs[:-1]
            new_pair = new_key.copy()
            new_pair[1:] |= ns[1:] != ns[:-1]
            key_start = np.flatnonzero(new_key)
            # equal hashes must be equal keys (a 64-bit collision is astronomically unlikely)
            owner = np.cumsum(new_key) - 1
            if not np.array_equal(ks, ks[key_start][owner]):
                raise RuntimeError(f"markov: hash collision between two keys of order {k}")
            pair_start = np.flatnonzero(new_pair)
            pair_count = np.diff(np.append(pair_start, len(hs)))
            pair_owner = owner[pair_start]
            arrays[f"hashes_{k}"] = hs[key_start]
            arrays[f"keys_{k}"] = ks[key_start].astype(np.int32).reshape(-1)
            next_parts.append(ns[pair_start].astype(np.int32))
            count_parts.append(pair_count.astype(np.int64))
            padded = np.full((len(pair_start), order), PAD, dtype=np.int32)
            padded[:, order - k:] = ks[pair_start]
            key_parts.append(padded)
            n_keys = len(key_start)
            choices.extend(np.bincount(pair_owner, minlength=n_keys).tolist())
            totals.extend(np.bincount(pair_owner, weights=pair_count, minlength=n_keys).astype(np.int64).tolist())
            first_state.append(n_states)
            n_states += n_keys
        # the absorbing state: a finished line stays finished
        next_parts.append(np.array([EOS], dtype=np.int32))
        count_parts.append(np.array([1], dtype=np.int64))
        choices.append(1)
        totals.append(1)
        counts = np.concatenate(count_parts)
        total = np.asarray(totals, dtype=np.int64)
        arrays["next_ids"] = np.concatenate(next_parts)
        arrays["cum_end"] = np.cumsum(counts)
        arrays["state_base"] = np.concatenate([[0], np.cumsum(total)[:-1]]).astype(np.int64)
        arrays["state_total"] = total
        arrays["state_choices"] = np.asarray(choices, dtype=np.int32)
        arrays["first_state"] = np.asarray(first_state, dtype=np.int64)
        arrays["dest"] = np.zeros(len(counts), dtype=np.int32)
        table = cls(arrays, order)
        # where each transition leads: the state of (key + piece), its oldest piece dropped
        keys = np.concatenate(key_parts)
        shifted = np.concatenate([keys[:, 1:], arrays["next_ids"][:len(keys), None]], axis=1)
        dest = np.full(len(counts), n_states, dtype=np.int32)
        for lo in range(0, len(shifted), 1 << 16):
            part = slice(lo, min(lo + (1 << 16), len(shifted)))
            dest[part] = table.states(shifted[part], min_choices)
        dest[arrays["next_ids"] == EOS] = n_states
        table.dest = arrays["dest"] = dest
        table._prepare_draws()
        return table

    def states(self, ctx: np.ndarray, min_choices: int) -> np.ndarray:
        """The state of each row of `ctx` ([B, order] piece ids, newest last; PAD = unknown): its
        longest key with at least `min_choices` continuations, else its longest known key, else
        the unigram state (0)."""
        rows = len(ctx)
        best = np.full(rows, -1, dtype=np.int64)
        longest = np.full(rows, -1, dtype=np.int64)
        h = np.full(rows, _FNV_OFFSET, dtype=np.uint64)
        found_at: list[np.ndarray] = []
        for k in range(1, self.order + 1):
            h = _mix(h, ctx[:, -k])
            table = self.hashes[k - 1]
            if len(table) == 0:
                found_at.append(np.full(rows, -1, dtype=np.int64))
                continue
            pos = np.minimum(_searchsorted(table, h), len(table) - 1)
            hit = table[pos] == h
            for j in range(1, k + 1):  # column by column: cheaper than a 2-D compare and all()
                hit &= self.keys[k - 1][pos, -j] == ctx[:, -j]
            found_at.append(np.where(hit, self.first_state[k] + pos, -1))
        for k in range(self.order, 0, -1):
            state = found_at[k - 1]
            known = state >= 0
            longest = np.where((longest < 0) & known, state, longest)
            rich = known & (self.state_choices[np.maximum(state, 0)] >= min_choices)
            best = np.where((best < 0) & rich, state, best)
        chosen = np.where(best >= 0, best, longest)
        return np.where(chosen >= 0, chosen, 0)

    def walk(self, states: np.ndarray, max_pieces: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Continue from each of `states` up to `max_pieces` pieces or its line end. Returns the
        pieces ([B, max_pieces]; EOS from a row's end on) and each row's length (-1: no end)."""
        out, lengths = self.walk_steps(states, max_pieces, rng)
        return np.ascontiguousarray(out.T), lengths

    def walk_steps(self, states: np.ndarray, max_pieces: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """walk(), its pieces step-major ([max_pieces, B]: row t holds every line's piece t), as the
        walk writes them; callers that gather the pieces themselves skip a transpose."""
        rows = len(states)
        out = np.full((max_pieces, rows), EOS, dtype=np.int32)
        if max_pieces == 0 or rows == 0:
            return out, np.full(rows, -1, dtype=np.int64)
        draw = self._state_draw.take(states)
        u = rng.random(rows, dtype=self._real)
        u *= draw["total"]
        slot = u.astype(self._index)
        slot += draw["base"]
        live: np.ndarray | None = None  # rows still writing, once finished ones have been dropped
        for step in range(max_pieces):
            record = self._slot.take(slot)
            if live is None:
                out[step] = record["next"]
            else:
                out[step, live] = record["next"]
            if step == max_pieces - 1:
                break
            base = record["base"]
            # Finished rows keep drawing from the absorbing state's one slot, which stays in cache,
            # so they cost little; dropping them costs a gather of every live row. Measured: worth
            # it only once many have finished, so look every 8 steps and drop them when half have.
            if step % 8 == 7:
                going = base != self._absorbing_slot
                n_going = int(np.count_nonzero(going))
                if n_going == 0:
                    break
                if 2 * n_going <= len(going):
                    live = np.flatnonzero(going) if live is None else live[going]
                    record = record[going]
                    base = record["base"]
            u = rng.random(len(record), dtype=self._real)
            u *= record["total"]
            slot = u.astype(self._index)
            slot += base
        # a finished row holds EOS from its end on (the absorbing state writes nothing else), so
        # its length is its count of other pieces; an unfinished one has no EOS in its last step
        lengths = np.where(out[-1] == EOS, np.count_nonzero(out != EOS, axis=0), -1)
        return out, lengths
