"""Greedy coreset subsampling of a memory bank (PatchCore's, Roth et al. 2022): the k-center
greedy, each step adding the vector farthest from those chosen, in a seeded random
projection, made fast by exact triangle-inequality pruning.

A plain step measures every vector's distance to the new centre: an (N, d) pass per step,
13 minutes and more for the 380,000 feature vectors of the magnetic tiles. Here a vector x,
whose nearest centre so far is a at distance dist[x], can only come closer to a new centre
c if d(c, a) < 2·dist[x] (the triangle inequality): one pass over N scalars finds those, and
only their distances are computed, a few per cent of N after the first steps. Every distance
is computed directly as ‖x − c‖, never by the norm expansion, so it is bit-identical however
the vectors are batched, and the choice equals the plain greedy's exactly (a test).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

PROJECTION_DIMS = 128  # PatchCore's: distances are kept to about ±10 % (Johnson–Lindenstrauss)
DENSE_ABOVE = 0.3  # a step measures every vector when more than this share are candidates
ROUNDING = 4 * 2.0**-24  # relative float32 rounding of one distance, per dimension (+3)
EXPANSION_ROUNDING = 2.0**-21  # of ‖a‖² + ‖c‖² − 2 a·c, relative to ‖a‖² + ‖c‖², per dimension
PROGRESS_STEPS = 256  # a progress callback hears of every this many greedy steps


@dataclass(frozen=True)
class Coreset:
    """A greedy coreset.

    Attributes:
        indices: (count,) int64 indices of the chosen vectors, in the order chosen.
        radius: the coverage radius: the largest distance of any vector to its nearest
            chosen one, in the space the choice was made in (the projection, when used).
        projected: whether that space is the random projection.
    """

    indices: torch.Tensor
    radius: float
    projected: bool


def random_projection(vectors: torch.Tensor, dims: int, seed: int) -> torch.Tensor:
    """(N, D) float32 vectors through a seeded Gaussian matrix of variance 1/dims, which keeps
    squared distances in expectation: (N, dims); the vectors themselves when D ≤ dims."""
    vectors = vectors.detach().to(torch.float32).contiguous()
    if vectors.shape[1] <= dims:
        return vectors
    generator = torch.Generator().manual_seed(seed)
    return vectors @ (torch.randn(vectors.shape[1], dims, generator=generator) / dims**0.5)


def greedy_coreset(
    vectors: torch.Tensor, count: int, *, seed: int, projection_dims: int = PROJECTION_DIMS
) -> Coreset:
    """The k-center greedy coreset of ``count`` of the (N, D) float32 ``vectors``: a first
    vector drawn with ``seed``, then at each step the one farthest from those chosen (ties: the
    lowest index), in a random projection to ``projection_dims`` (0: none).

    Memory: the (N, d) projection, the chosen (count, d) vectors and a few (N,) arrays; never
    an N × N or N × count matrix. It runs on one torch thread: its steps are small and wait
    on each other, and measured faster so.

    Raises:
        ValueError: ``count`` not in [1, N].
    """
    total = len(vectors)
    if not 1 <= count <= total:
        raise ValueError(f"a coreset of {total} vectors takes 1 to {total} of them, not {count}")
    with one_thread():
        space = random_projection(vectors, projection_dims or vectors.shape[1], seed)
        coreset = greedy_in_space(space, count, seed=seed)
    return Coreset(coreset.indices, coreset.radius, space.shape[1] < vectors.shape[1])


def greedy_in_space(
    space: torch.Tensor, count: int, *, seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> Coreset:  # fmt: skip
    """The k-center greedy of ``count`` of the (N, d) float32 vectors ``space`` as they are
    (no projection): the first drawn with ``seed``, each next the farthest from those chosen.
    ``progress(done, count)`` hears of every
    ``PROGRESS_STEPS`` steps and of the last. The caller chooses the threads
    (``one_thread`` for the measured fastest)."""
    total = len(space)
    if not 1 <= count <= total:
        raise ValueError(f"a coreset of {total} vectors takes 1 to {total} of them, not {count}")
    first = int(torch.randint(total, (1,), generator=torch.Generator().manual_seed(seed)))
    chosen, distance = _choose(space, count, first, progress)
    radius = float(distance.clamp_min(0).max())  # the chosen carry −inf: they are 0 away
    return Coreset(chosen, radius, projected=False)


def _choose(
    space: torch.Tensor, count: int, first: int, progress: Callable[[int, int], None] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The greedy steps over (N, d) ``space``: the chosen indices (count,) and every vector's
    distance to its nearest chosen one (N,), −inf for the chosen themselves."""
    total, dims = space.shape
    half = 0.5 / (1 + ROUNDING * (dims + 3))  # the test's margin covers float32 rounding
    chosen = torch.empty(count, dtype=torch.int64)
    centres = torch.empty(count, dims)
    squares = torch.empty(count)  # ‖centre‖²
    slack = EXPANSION_ROUNDING * (dims + 3)
    distance = torch.full((total,), float("inf"))
    nearest = torch.zeros(total, dtype=torch.int64)  # the index in ``chosen`` of that centre
    measure = _Distances(dims)
    centre = first
    for step in range(count):
        chosen[step], centres[step] = centre, space[centre]
        squares[step] = centres[step].dot(centres[step])
        candidates = None  # every vector
        if step:
            between = _lower_distances(centres[:step], squares[:step], centres[step],
                                       squares[step], slack) * half  # fmt: skip
            candidates = (between.index_select(0, nearest) < distance).nonzero().squeeze(1)
            if len(candidates) > DENSE_ABOVE * total:
                candidates = None
        _update(measure(space, space[centre], candidates), step, candidates, distance, nearest)
        distance[centre] = -math.inf  # never chosen again, even where vectors repeat
        centre = int(distance.argmax())
        if progress is not None and ((step + 1) % PROGRESS_STEPS == 0 or step + 1 == count):
            progress(step + 1, count)
    return chosen, distance


def _lower_distances(
    previous: torch.Tensor, squares: torch.Tensor, centre: torch.Tensor,
    centre_square: torch.Tensor, slack: float,
) -> torch.Tensor:  # fmt: skip
    """Lower bounds of the distances of the (n, d) ``previous`` centres to the (d,) ``centre``
    from one matrix-vector product: ‖a‖² + ‖c‖² − 2 a·c less its float32 rounding, ``slack``
    × (‖a‖² + ‖c‖²). A lower bound only widens the candidates, so the choice stays the plain
    greedy's; one pass over the centres instead of the three of a direct difference."""
    both = squares + centre_square
    squared = torch.addmv(both, previous, centre, alpha=-2.0)
    squared -= slack * both
    return squared.clamp_min_(0).sqrt_()


def _update(
    new: torch.Tensor,
    step: int,
    candidates: torch.Tensor | None,
    distance: torch.Tensor,
    nearest: torch.Tensor,
) -> None:
    """Lower ``distance`` and ``nearest`` (N,) in place where ``new``, the distances of the
    ``candidates`` (all vectors when None) to centre ``step``, is smaller."""
    if candidates is None:
        closer = new < distance
        torch.where(closer, new, distance, out=distance)
        nearest.masked_fill_(closer, step)
        return
    closer = new < distance.index_select(0, candidates)
    moved = candidates[closer]
    distance[moved] = new[closer]
    nearest[moved] = step


class _Distances:
    """‖row − centre‖ of rows of an (N, d) array, through a reused buffer of ``chunk`` rows:
    bounded memory, and each row's value the same whichever rows share the call."""

    def __init__(self, dims: int, chunk: int = 4096) -> None:
        self.buffer = torch.empty(chunk, dims)
        self.out = torch.empty(0)

    def __call__(
        self, rows: torch.Tensor, centre: torch.Tensor, which: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(n,) distances of ``rows[which]`` (all rows when None) to the (d,) ``centre``; a
        view of a buffer, valid until the next call."""
        count = len(rows) if which is None else len(which)
        if len(self.out) < count:
            self.out = torch.empty(max(count, 2 * len(self.out)))
        for start in range(0, count, len(self.buffer)):
            end = min(start + len(self.buffer), count)
            part = self.buffer[: end - start]
            block = rows[start:end] if which is None else torch.index_select(
                rows, 0, which[start:end], out=part)  # fmt: skip
            torch.linalg.vector_norm(torch.sub(block, centre, out=part), dim=1,
                                     out=self.out[start:end])  # fmt: skip
        return self.out[:count]


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread for the duration (the projection included, so that the result
    does not depend on the caller's setting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
