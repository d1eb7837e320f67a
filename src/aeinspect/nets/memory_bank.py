"""A memory bank of feature vectors and the distance of a query to its nearest one, in
chunks of bounded memory; its shape is the data's (``resizable``), set by ``fill`` when a
kind is fitted and by ``load_state_dict`` when a model file is loaded."""

from __future__ import annotations

import torch

from aeinspect.nets.resizable import ResizableBuffers

BANK_CHUNK = 1024  # bank vectors compared with the queries at once: (Q, 1024) products


class MemoryBank(ResizableBuffers):
    """``forward`` maps (Q, D) float32 queries to (Q,) float32 Euclidean distances to the
    nearest of the bank's (K, D) vectors.

    The nearest vector is found by the matrix-product expansion ‖b‖² − 2 q·b on data centred
    on the bank's mean (which shrinks the norms, and so float32's cancellation), in static
    chunks of ``BANK_CHUNK`` bank vectors (an ONNX export unrolls them); its distance is then
    computed directly, ‖q − b‖: float32-exact unless two bank vectors are tied to within the
    expansion's error (about 1e-4), and then off by at most that.

    Args:
        dimension: D.
    """

    resizable = ("centre", "bank", "norms")

    def __init__(self, dimension: int) -> None:
        super().__init__()
        self.register_buffer("centre", torch.zeros(dimension))
        self.register_buffer("bank", torch.zeros(0, dimension))  # centred
        self.register_buffer("norms", torch.zeros(0))  # ‖bank‖², centred

    def fill(self, vectors: torch.Tensor) -> None:
        """Hold the (K, D) ``vectors``, K ≥ 1."""
        vectors = vectors.detach().to(torch.float32)
        self.centre = vectors.mean(dim=0)
        self.bank = (vectors - self.centre).contiguous()
        self.norms = (self.bank * self.bank).sum(dim=1)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        centred = queries - self.centre
        best, index = self._chunk(centred, 0)
        for start in range(BANK_CHUNK, len(self.bank), BANK_CHUNK):
            value, found = self._chunk(centred, start)
            closer = value < best
            best, index = torch.where(closer, value, best), torch.where(closer, found, index)
        return torch.linalg.vector_norm(centred - self.bank.index_select(0, index), dim=1)

    def _chunk(self, centred: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """min over bank vectors start… of ‖b‖² − 2 q·b, and their index."""
        bank = self.bank[start : start + BANK_CHUNK]
        value, found = torch.addmm(self.norms[start : start + BANK_CHUNK], centred, bank.T,
                                   alpha=-2.0).min(dim=1)  # fmt: skip
        return value, found + start
