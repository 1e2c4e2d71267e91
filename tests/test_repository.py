"""ExpertRepository: growth, removal, casting, validation."""

from __future__ import annotations

import pytest
import torch

from hf_liveedit.modules import ExpertBatch
from hf_liveedit.repository import EditRecord, ExpertRepository


def batch(count: int, seed: int) -> ExpertBatch:
    generator = torch.Generator().manual_seed(seed)
    return ExpertBatch(
        up=torch.randn(count, 2, 8, generator=generator),
        down=torch.randn(count, 2, 8, generator=generator),
        phi=torch.randn(count, 3, 4, generator=generator),
        psi=torch.randn(count, 3, 4, generator=generator),
    )


def records(count: int) -> list[EditRecord]:
    return [EditRecord.new(f"prompt {i}", f"target {i}", None) for i in range(count)]


def test_growth_keeps_every_row_and_removal_compacts():
    repository = ExpertRepository(rank=2, hidden_size=8, num_queries=3, module_dim=4)
    parts = [batch(count, seed) for seed, count in enumerate([1, 20, 7])]
    stored = records(28)
    repository.add(parts[0], stored[:1])
    repository.add(parts[1], stored[1:21])
    repository.add(parts[2], stored[21:])
    expected = torch.cat([part.up for part in parts])
    assert torch.equal(repository.up, expected)
    removed = repository.remove(stored[5].id)
    assert removed == stored[5] and len(repository) == 27
    assert torch.equal(repository.up, torch.cat([expected[:5], expected[6:]]))
    assert [record.id for record in repository] == [
        record.id for record in stored if record is not stored[5]
    ]


def test_cast_to_half_precision_halves_storage():
    repository = ExpertRepository(rank=2, hidden_size=8, num_queries=3, module_dim=4)
    repository.add(batch(3, 0), records(3))
    full = sum(t.numel() * t.element_size() for t in repository.state_dict().values())
    repository.to(dtype=torch.float16)
    half = sum(t.numel() * t.element_size() for t in repository.state_dict().values())
    assert half * 2 == full and repository.up.dtype == torch.float16
    repository.add(batch(1, 1), records(1))
    assert repository.phi.dtype == torch.float16 and len(repository) == 4


def test_wrong_shapes_are_rejected_without_change():
    repository = ExpertRepository(rank=2, hidden_size=8, num_queries=3, module_dim=4)
    repository.add(batch(2, 0), records(2))
    bad = batch(1, 1)
    bad.up = torch.randn(1, 2, 9)
    with pytest.raises(ValueError, match="another model"):
        repository.add(bad, records(1))
    with pytest.raises(ValueError, match="another model"):
        repository.add(batch(2, 1), records(1))
    assert len(repository) == 2 and repository.up.shape == (2, 2, 8)
