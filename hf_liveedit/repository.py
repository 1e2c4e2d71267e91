"""The expert repository: every stored edit's low-rank expert and routing features."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

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
        took: whether the greedy answer on the edit input was the target when the edit was
            added (None: not verified, see ``LiveEditConfig.verify_edits``).
        refine_steps: refinement steps its expert needed (0 when generated as is).
        rerouted: its visual key was moved so that its own edit input passes the hard filter
            (see ``LiveEditConfig.refine_routing_margin``).
    """

    id: str
    prompt: str
    target: str
    image_sha256: str | None
    created_at: float
    took: bool | None = None
    refine_steps: int = 0
    rerouted: bool = False

    @classmethod
    def new(
        cls,
        prompt: str,
        target: str,
        image_sha256: str | None,
        took: bool | None = None,
        refine_steps: int = 0,
        rerouted: bool = False,
    ) -> EditRecord:
        """A record with a fresh id and the current time."""
        now = time.time()
        edit_id = uuid.uuid4().hex[:16]
        return cls(edit_id, prompt, target, image_sha256, now, took, refine_steps, rerouted)

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return dataclasses.asdict(self)


class ExpertRepository(nn.Module):
    """Growable storage of experts ``U, V`` ``[N, r, d]`` and features ``phi, psi`` ``[N, k, d_m]``.

    The storage is module state (buffers): it moves and casts with the model (``.to()``,
    ``.half()``, ``.cuda()``), and the module's ``state_dict`` holds the ``N`` stored rows of each
    tensor. Storage grows by doubling, so adding one edit is amortised O(1) even with thousands
    stored; :attr:`up`, :attr:`down`, :attr:`phi`, :attr:`psi` are views of the first ``N`` rows.

    Thread safety: every change holds a lock, and rows a reader can see are never written in
    place (a removal builds new storage), so a :meth:`snapshot` taken for one call stays valid
    while other threads add or remove edits.

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
        super().__init__()
        self.shapes = {
            "up": (rank, hidden_size),
            "down": (rank, hidden_size),
            "phi": (num_queries, module_dim),
            "psi": (num_queries, module_dim),
        }
        for name, shape in self.shapes.items():
            empty = torch.empty((0, *shape), dtype=dtype, device=device)
            self.register_buffer(_storage_name(name), empty, persistent=False)
        self._records: list[EditRecord] = []
        self._lock = threading.RLock()

    def __getstate__(self) -> dict:
        # a lock cannot be copied or pickled: a copy gets a lock of its own
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[EditRecord]:
        return iter(self.records)

    @property
    def records(self) -> list[EditRecord]:
        """Metadata of the stored edits, in insertion order (a copy)."""
        return list(self._records)

    @property
    def device(self) -> torch.device:
        return self._storage("up").device

    @property
    def dtype(self) -> torch.dtype:
        return self._storage("up").dtype

    def _storage(self, name: str) -> torch.Tensor:
        return getattr(self, _storage_name(name))

    def tensor(self, name: str) -> torch.Tensor:
        """The first ``N`` rows of one stored tensor (``up``, ``down``, ``phi`` or ``psi``)."""
        with self._lock:
            return self._storage(name)[: len(self)]

    up = property(lambda self: self.tensor("up"), doc="``U``, ``[N, r, d]``.")
    down = property(lambda self: self.tensor("down"), doc="``V``, ``[N, r, d]``.")
    phi = property(lambda self: self.tensor("phi"), doc="``phi_e``, ``[N, k, d_m]``.")
    psi = property(lambda self: self.tensor("psi"), doc="``psi_e``, ``[N, k, d_m]``.")

    def snapshot(self) -> ExpertBatch:
        """The stored experts as they are now, consistent with each other, for one call.

        Later additions and removals do not change what the snapshot shows.
        """
        with self._lock:
            return ExpertBatch(*(self._storage(name)[: len(self)] for name in TENSOR_NAMES))

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
        with self._lock:
            known = {record.id for record in self._records}
            clashes = [record.id for record in records if record.id in known]
            if clashes or len({record.id for record in records}) != len(records):
                raise ValueError(f"Edit ids must be unique; repeated: {clashes or 'in the batch'}")
            start, end = len(self), len(self) + len(records)
            for name, value in new.items():
                storage = self._storage(name)
                if end > storage.shape[0]:
                    grown = storage.new_empty(
                        (max(end, 2 * storage.shape[0], 16), *self.shapes[name])
                    )
                    grown[:start] = storage[:start]
                    setattr(self, _storage_name(name), grown)
                    storage = grown
                # rows >= start are beyond every snapshot taken so far: writing them is safe
                storage[start:end] = value.to(device=storage.device, dtype=storage.dtype)
            self._records.extend(records)

    def remove(self, edit_id: str) -> EditRecord:
        """Delete one edit; returns its record."""
        with self._lock:
            position = self.index_of(edit_id)
            for name in TENSOR_NAMES:
                storage = self._storage(name)
                kept = torch.cat([storage[:position], storage[position + 1 :]])
                setattr(self, _storage_name(name), kept)
            return self._records.pop(position)

    def clear(self) -> None:
        """Delete every edit."""
        with self._lock:
            self._records.clear()
            for name in TENSOR_NAMES:
                setattr(self, _storage_name(name), self._storage(name)[:0].clone())

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        # only the stored rows, under the tensor names of ``experts.safetensors``
        with self._lock:
            for name in TENSOR_NAMES:
                value = self._storage(name)[: len(self)]
                destination[prefix + name] = value if keep_vars else value.detach()

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ) -> None:
        # ``load_state_dict`` replaces the rows of the stored edits; the edit metadata comes
        # with :meth:`load` (or ``LiveEditModel.load_experts``), which can change their number.
        tensors = {
            name: state_dict[prefix + name] for name in TENSOR_NAMES if prefix + name in state_dict
        }
        missing_keys.extend(prefix + name for name in TENSOR_NAMES if name not in tensors)
        if len(tensors) < len(TENSOR_NAMES):
            return
        try:
            self._check_shapes(tensors, len(self))
        except ValueError as error:
            errors.append(f"{error} (load_state_dict keeps the number of stored edits)")
            return
        with self._lock:
            for name, value in tensors.items():
                self._storage(name)[: len(self)] = value.to(self.device, self.dtype)

    def load(self, tensors: dict[str, torch.Tensor], records: Sequence[EditRecord]) -> None:
        """Replace the content with saved tensors and records (validated first)."""
        missing = [name for name in TENSOR_NAMES if name not in tensors]
        if missing:
            raise ValueError(f"Expert file lacks tensors {missing}")
        self._check_shapes(tensors, len(records))
        with self._lock:
            previous = {name: self._storage(name) for name in TENSOR_NAMES}, list(self._records)
            self.clear()
            try:
                self.add(ExpertBatch(**{name: tensors[name] for name in TENSOR_NAMES}), records)
            except Exception:
                for name, value in previous[0].items():
                    setattr(self, _storage_name(name), value)
                self._records[:] = previous[1]
                raise

    def _check_shapes(self, tensors: dict[str, torch.Tensor], count: int) -> None:
        for name in TENSOR_NAMES:
            expected = (count, *self.shapes[name])
            if tuple(tensors[name].shape) != expected:
                raise ValueError(
                    f"Expert tensor {name!r} has shape {tuple(tensors[name].shape)}, expected "
                    f"{expected}: the experts were made for another model or configuration"
                )


def _storage_name(name: str) -> str:
    return f"{name}_storage"
