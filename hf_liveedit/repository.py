"""The expert repository: every stored edit's low-rank expert and routing features."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from .modules import ExpertBatch

TENSOR_NAMES = ("up", "down", "phi", "psi")


class UnknownEditError(KeyError, ValueError):
    """No stored edit has the given id (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class EditRecord:
    """Metadata of one stored edit.

    Attributes:
        id: unique edit id (returned by ``add_edit``).
        prompt: the edit prompt ``p_e``.
        target: the desired answer ``o_e``.
        image_sha256: SHA-256 of the edit image's RGB pixels and size (None for text-only edits).
        created_at: UNIX time of the edit.
    """

    id: str
    prompt: str
    target: str
    image_sha256: str | None
    created_at: float

    @classmethod
    def new(cls, prompt: str, target: str, image_sha256: str | None) -> EditRecord:
        """A record with a fresh id and the current time."""
        return cls(uuid.uuid4().hex[:16], prompt, target, image_sha256, time.time())

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)


class ExpertRepository:
    """Growable storage of experts ``U, V`` ``[N, r, d]`` and features ``phi, psi`` ``[N, k, d_m]``.

    Storage grows by doubling, so adding one edit is amortised O(1) even with thousands stored;
    :attr:`up`, :attr:`down`, :attr:`phi`, :attr:`psi` are views of the first ``N`` rows.

    Args:
        rank: ``r``.
        hidden_size: ``d``.
        num_queries: ``k``.
        module_dim: ``d_m``.
        dtype: storage dtype.
        device: storage device.
    """

    def __init__(
        self,
        rank: int,
        hidden_size: int,
        num_queries: int,
        module_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        self.shapes = {
            "up": (rank, hidden_size),
            "down": (rank, hidden_size),
            "phi": (num_queries, module_dim),
            "psi": (num_queries, module_dim),
        }
        self.dtype = dtype
        self._storage = {
            name: torch.empty((0, *shape), dtype=dtype, device=device)
            for name, shape in self.shapes.items()
        }
        self._records: list[EditRecord] = []

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[EditRecord]:
        return iter(list(self._records))

    @property
    def records(self) -> list[EditRecord]:
        """Metadata of the stored edits, in insertion order (a copy)."""
        return list(self._records)

    @property
    def device(self) -> torch.device:
        return self._storage["up"].device

    def tensor(self, name: str) -> torch.Tensor:
        """The first ``N`` rows of one stored tensor (``up``, ``down``, ``phi`` or ``psi``)."""
        return self._storage[name][: len(self)]

    up = property(lambda self: self.tensor("up"), doc="``U``, ``[N, r, d]``.")
    down = property(lambda self: self.tensor("down"), doc="``V``, ``[N, r, d]``.")
    phi = property(lambda self: self.tensor("phi"), doc="``phi_e``, ``[N, k, d_m]``.")
    psi = property(lambda self: self.tensor("psi"), doc="``psi_e``, ``[N, k, d_m]``.")

    def index_of(self, edit_id: str) -> int:
        """Position of an edit; :class:`UnknownEditError` naming the id if it is not stored."""
        for position, record in enumerate(self._records):
            if record.id == edit_id:
                return position
        raise UnknownEditError(
            f"No edit with id {edit_id!r} in the repository ({len(self)} edits stored)"
        )

    def add(self, experts: ExpertBatch, records: Sequence[EditRecord]) -> None:
        """Append a batch of experts with their metadata (validated before anything changes)."""
        new = {name: getattr(experts, name).detach() for name in TENSOR_NAMES}
        self._check_shapes(new, len(records))
        start, end = len(self), len(self) + len(records)
        for name, value in new.items():
            storage = self._storage[name]
            if end > storage.shape[0]:
                grown = storage.new_empty((max(end, 2 * storage.shape[0], 16), *self.shapes[name]))
                grown[:start] = storage[:start]
                self._storage[name] = storage = grown
            storage[start:end] = value.to(device=storage.device, dtype=self.dtype)
        self._records.extend(records)

    def remove(self, edit_id: str) -> EditRecord:
        """Delete one edit; returns its record."""
        position = self.index_of(edit_id)
        for storage in self._storage.values():
            storage[position : len(self) - 1] = storage[position + 1 : len(self)].clone()
        return self._records.pop(position)

    def clear(self) -> None:
        """Delete every edit."""
        self._records.clear()
        self._storage = {name: value[:0].clone() for name, value in self._storage.items()}

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> ExpertRepository:
        """Move and/or cast the storage (in place); returns ``self``."""
        self.dtype = dtype or self.dtype
        self._storage = {
            name: value.to(device=device, dtype=self.dtype) for name, value in self._storage.items()
        }
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Contiguous copies of the stored tensors, for safetensors."""
        return {name: self.tensor(name).contiguous().cpu() for name in TENSOR_NAMES}

    def load(self, tensors: dict[str, torch.Tensor], records: Sequence[EditRecord]) -> None:
        """Replace the content with saved tensors and records (validated first)."""
        missing = [name for name in TENSOR_NAMES if name not in tensors]
        if missing:
            raise ValueError(f"Expert file lacks tensors {missing}")
        self._check_shapes(tensors, len(records))
        self.clear()
        self.add(ExpertBatch(**{name: tensors[name] for name in TENSOR_NAMES}), records)

    def _check_shapes(self, tensors: dict[str, torch.Tensor], count: int) -> None:
        for name in TENSOR_NAMES:
            expected = (count, *self.shapes[name])
            if tuple(tensors[name].shape) != expected:
                raise ValueError(
                    f"Expert tensor {name!r} has shape {tuple(tensors[name].shape)}, expected "
                    f"{expected}: the experts were made for another model or configuration"
                )
