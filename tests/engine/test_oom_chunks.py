"""Per-sample scoring halves its chunk on out of memory (one predicate, ``errors.is_out_of_memory``)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from initscore.errors import ResourceError
from initscore.scores import gradcosine


class Picky(nn.Module):
    """An MLP that runs out of memory on chunks larger than ``limit`` samples."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"out of memory: {x.shape[0]} samples")
        return self.body(x)


def test_chunk_halves_until_it_fits_and_scores_equal():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,))
    net = Picky(limit=2)
    ref = Picky(limit=100)
    ref.load_state_dict(net.state_dict())
    got = gradcosine(net, (x, y), mode="sample", chunk_size=8)
    want = gradcosine(ref, (x, y), mode="sample", chunk_size=8)
    assert got.gc == pytest.approx(want.gc, rel=1e-6) and got.gn == pytest.approx(want.gn, rel=1e-6)


def test_one_sample_that_does_not_fit_is_a_resource_error():
    x, y = torch.randn(4, 3, 2, 2), torch.randint(0, 3, (4,))
    with pytest.raises(ResourceError, match="one per-sample gradient"):
        gradcosine(Picky(limit=0), (x, y), mode="sample", chunk_size=4)
