"""A memory bank chosen from a stream of feature vectors in time linear in their number and
memory bounded whatever it is: composable coresets for k-center (Indyk et al., PODS 2014),
each chunk reduced on its own by the exact greedy (``coreset.greedy_in_space``), the
reductions pooled, and the bank chosen by the same greedy over the pool.

- A chunk of at most ``CHUNK`` vectors keeps ``OVERSAMPLE`` times the bank's share of them
  (all of them when that is 1 or more): a greedy of n·share steps over n vectors, so a fixed
  cost per vector.
- The pool holds at most ``POOL_PER_BANK`` × the bank's size limit; when it holds more, it is
  halved chunk by chunk by the same greedy. So memory is bounded by the pool and one chunk,
  and each vector is reduced a bounded number of times on average (the halvings see an ever
  smaller share of the stream).
- The bank: the greedy over the pool, of ``ratio`` × the vectors seen, at most ``limit``.

Every choice is made in PatchCore's seeded random projection, as the exact greedy makes it.
Chunks carry a key (the group of training images they came from) and the pool is kept in
key order, so processes that reduce a share of the chunks each, merged, give the pool of one
process, and so the same bank, as long as no pool was halved.

A vector lies within ``reach`` of the pool (the largest chunk radius, plus each halving's
radius) and so within ``reach`` + the bank greedy's radius of the bank: the coverage radius
bound a fit reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from aeinspect.nets.coreset import (
    PROJECTION_DIMS,
    greedy_in_space,
    one_thread,
    random_projection,
)

BANK_LIMIT = 16384  # the bank's default largest size: segment's nearest search grows with it
CHUNK = 4096  # vectors reduced by one greedy: its cost per vector is the share kept of them
OVERSAMPLE = 4  # a chunk keeps this many times the bank's share of its vectors
POOL_PER_BANK = 4  # the pool holds at most this many times the bank's size limit
HALVING = 2**31  # seeds of the halvings start here, above every chunk key


@dataclass(frozen=True)
class Reduction:
    """What a stream was reduced to, to be merged with other processes' (all on the CPU).

    Attributes:
        vectors: (n, D) float32 pooled vectors, in key order.
        keys: (n,) int64 key of the chunk each came from.
        seen: how many vectors the stream held.
        reach: an upper bound on any seen vector's distance to the pool (projected space).
    """

    vectors: torch.Tensor
    keys: torch.Tensor
    seen: int
    reach: float


@dataclass(frozen=True)
class BankChoice:
    """The bank chosen from a stream.

    Attributes:
        vectors: (K, D) float32 bank vectors.
        seen: the vectors of the stream.
        pooled: the vectors the bank was chosen from.
        radius: the bank greedy's coverage radius over the pool.
        radius_bound: an upper bound on the coverage radius over every seen vector.
        halvings: how often a pool was halved.
        projected: whether the distances are in the random projection.
    """

    vectors: torch.Tensor
    seen: int
    pooled: int
    radius: float
    radius_bound: float
    halvings: int
    projected: bool


class StreamingCoreset:
    """Feed vectors with ``add``, close each chunk group with ``end_chunk``, merge other
    processes' ``reduction()`` with ``merge``, and choose the bank with ``finish``.

    Args:
        dimension: D, the vectors' length.
        ratio: the bank's share of the vectors seen, in (0, 1].
        limit: the bank's largest size.
        seed: seeds the projection and every greedy's first vector.
        projection_dims: the projection's dimensions (0: none).
    """

    def __init__(
        self, *, dimension: int, ratio: float, limit: int, seed: int,
        projection_dims: int = PROJECTION_DIMS,
    ) -> None:  # fmt: skip
        if not 0 < ratio <= 1 or limit < 1:
            raise ValueError(
                f"a bank takes a ratio in (0, 1] and a limit ≥ 1, got {ratio}, {limit}"
            )
        self.dimension, self.ratio, self.limit, self.seed = dimension, ratio, limit, seed
        self.projection_dims = projection_dims
        self.keep = min(1.0, OVERSAMPLE * ratio)
        self.pool_limit = POOL_PER_BANK * limit
        self.seen, self.reach, self.halvings = 0, 0.0, 0
        self.peak_held = 0  # the most vectors held at once, buffer and pool
        self._buffer: list[torch.Tensor] = []
        self._parts = 0  # chunks reduced of the current key
        self._pool: list[tuple[torch.Tensor, torch.Tensor]] = []  # (keys, vectors)

    @property
    def held(self) -> int:
        """Vectors held now, buffered and pooled."""
        return sum(len(v) for v in self._buffer) + sum(len(v) for _, v in self._pool)

    def add(self, vectors: torch.Tensor, key: int) -> None:
        """Take (n, D) float32 ``vectors`` of the chunk group ``key`` (n ≥ 0); every ``CHUNK``
        of them are reduced as they come."""
        self.seen += len(vectors)
        self._buffer.append(vectors.detach().to("cpu", torch.float32))
        self.peak_held = max(self.peak_held, self.held)
        while sum(len(v) for v in self._buffer) >= CHUNK:
            buffered = torch.cat(self._buffer)
            self._buffer = [buffered[CHUNK:]]
            self._reduce_chunk(buffered[:CHUNK], key)

    def end_chunk(self, key: int) -> None:
        """Reduce what is left of the chunk group ``key``; the next group starts afresh."""
        rest = torch.cat(self._buffer) if self._buffer else torch.empty(0, self.dimension)
        self._buffer = []
        if len(rest):
            self._reduce_chunk(rest, key)
        self._parts = 0

    def _reduce_chunk(self, vectors: torch.Tensor, key: int) -> None:
        seed = _seed(self.seed, key, self._parts)
        self._parts += 1
        kept, radius = self._greedy(vectors, math.ceil(self.keep * len(vectors)), seed)
        self.reach = max(self.reach, radius)
        self._pool.append((torch.full((len(kept),), key, dtype=torch.int64), vectors[kept]))
        self.peak_held = max(self.peak_held, self.held + len(vectors))
        if sum(len(v) for _, v in self._pool) > self.pool_limit:
            self._halve()

    def _greedy(self, vectors: torch.Tensor, count: int, seed: int) -> tuple[torch.Tensor, float]:
        """The (count,) indices of the ``vectors`` the greedy keeps, ascending, and its
        radius; every index when ``count`` covers them all."""
        if count >= len(vectors):
            return torch.arange(len(vectors)), 0.0
        with one_thread():
            space = random_projection(vectors, self.projection_dims or vectors.shape[1], self.seed)
            coreset = greedy_in_space(space, count, seed=seed)
        return coreset.indices.sort().values, coreset.radius

    def _halve(self) -> None:
        """The pool, chunk by chunk, to half its size."""
        keys, vectors = self._pooled()
        halved, radius = [], 0.0
        pieces = math.ceil(len(vectors) / CHUNK)
        parts = zip(keys.tensor_split(pieces), vectors.tensor_split(pieces), strict=True)
        for index, (part_keys, part) in enumerate(parts):
            seed = _seed(self.seed, HALVING + self.halvings, index)
            kept, part_radius = self._greedy(part, math.ceil(len(part) / 2), seed)
            halved.append((part_keys[kept], part[kept]))
            radius = max(radius, part_radius)
        self._pool = halved
        self.reach += radius
        self.halvings += 1

    def _pooled(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._pool:
            return torch.empty(0, dtype=torch.int64), torch.empty(0, self.dimension)
        keys = torch.cat([k for k, _ in self._pool])
        order = torch.sort(keys, stable=True).indices
        return keys[order], torch.cat([v for _, v in self._pool])[order]

    def reduction(self) -> Reduction:
        """This stream's pool, to merge into another process's (``end_chunk`` first)."""
        keys, vectors = self._pooled()
        return Reduction(vectors, keys, self.seen, self.reach)

    def merge(self, reductions: list[Reduction]) -> None:
        """Replace this stream's pool by the union of ``reductions`` (this one's among them),
        in key order, halved while larger than the pool's limit."""
        self._pool = [(r.keys, r.vectors) for r in reductions if len(r.vectors)]
        self.seen = sum(r.seen for r in reductions)
        self.reach = max(r.reach for r in reductions)
        self._pool = [self._pooled()] if self._pool else []
        while sum(len(v) for _, v in self._pool) > self.pool_limit:
            self._halve()

    def finish(self, progress: Callable[[int, int], None] | None = None) -> BankChoice:
        """The bank: the greedy over the pool of ``ratio`` × the vectors seen, at most
        ``limit``; ``progress(done, total)`` hears of its steps.

        Raises:
            ValueError: nothing was seen.
        """
        _, pool = self._pooled()
        if not len(pool):
            raise ValueError("no feature vectors to choose a memory bank from")
        count = min(max(1, round(self.ratio * self.seen)), self.limit, len(pool))
        projected = 0 < self.projection_dims < pool.shape[1]
        radius, bank = 0.0, pool
        if count < len(pool):
            with one_thread():  # a product's sums, and so the bank, the same at any threads
                space = random_projection(pool, self.projection_dims or pool.shape[1], self.seed)
            # the greedy on every thread: over the pool a step's work is large enough
            coreset = greedy_in_space(space, count, seed=self.seed, progress=progress)
            bank, radius = pool[coreset.indices], coreset.radius
        elif progress is not None:
            progress(count, count)
        return BankChoice(bank, self.seen, len(pool), radius, self.reach + radius,
                          self.halvings, projected)  # fmt: skip


def _seed(*entropy: int) -> int:
    """A seed drawn from several non-negative integers."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])
