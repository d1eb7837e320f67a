"""Networks whose buffers take their shapes from the data they were fitted to (a memory
bank of feature vectors, say): such a network is built empty from its settings, and
``load_state_dict`` gives each of its ``resizable`` buffers the stored shape before it
copies the stored values in."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn


class ResizableBuffers(nn.Module):
    """A module whose buffers named in ``resizable`` may hold any shape: a state dict's
    tensor replaces the buffer's shape (and dtype) as it is loaded."""

    resizable: ClassVar[tuple[str, ...]] = ()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any,
                              **kwargs: Any) -> None:  # fmt: skip
        for name in self.resizable:
            stored = state_dict.get(prefix + name)
            if isinstance(stored, torch.Tensor):
                current = getattr(self, name)
                setattr(self, name, torch.empty_like(stored, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
