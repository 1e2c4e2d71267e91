"""The hook on decoder layer ``l_e`` that routes each input to its experts and fuses them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .kernels import Backend, fuse_experts, route_and_fuse
from .modules import ExpertBatch, LiveEditModules, Spans
from .repository import ExpertRepository


class StopForward(Exception):
    """Raised by the hook in capture mode: nothing after layer ``l_e`` needs to run."""


def layer_output_hidden(output: Any) -> torch.Tensor:
    """The hidden states of a decoder layer's output (a tensor, or a tuple starting with one)."""
    return output[0] if isinstance(output, tuple) else output


def replace_layer_output_hidden(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@dataclass
class CallState:
    """Routing state of one forward or ``generate`` call; it travels with the call.

    Attributes:
        call_spans: spans of the wrapper call's ``input_ids``, for language models that only
            see embeddings (e.g. BLIP-2's).
        step_spans: spans of the current language-model step's ``input_ids``.
        decoding: whether the current step decodes new positions after a prefill.
        experts: the repository as it was at prefill; its decoding steps use the same experts.
        weights: ``[B, N]`` routing weights decided at prefill.
        override: experts to use instead of the repository's (e.g. candidates being refined).
        fixed_spans: use ``call_spans`` even where a step sees ``input_ids`` (the call's spans
            mark answer tokens that the step's own ``input_ids`` cannot show).
    """

    call_spans: Spans | None = None
    step_spans: Spans | None = None
    decoding: bool = False
    experts: ExpertBatch | None = None
    weights: torch.Tensor | None = None
    override: ExpertBatch | None = None
    fixed_spans: bool = False


class EditLayerHook:
    """Forward hook on layer ``l_e``: routes each input to its experts and fuses them.

    Before each language-model step, :class:`~hf_liveedit.model.LiveEditModel` tells the hook
    whether it is a prefill or a decoding step and the batch's :class:`Spans` (from the step's
    ``input_ids``, or from the wrapper call's when the step only sees embeddings). At prefill the
    hook takes a snapshot of the repository, routes (hard filter + soft weights) and keeps the
    ``[B, N]`` weights; decoding steps apply them to the new positions, so each sample keeps the
    experts chosen from its own image and prompt.

    The hook holds no per-call state: the :class:`CallState` of a call, whether the adapter is
    disabled, and capture/recording requests live in context variables, which every thread (and
    asyncio task) has its own copy of. Concurrent calls from several threads therefore route
    independently, and an edit added or removed during a call takes effect at the next call.

    Args:
        modules: the trainable LiveEdit modules (input extractor, sentinel, expert LayerNorm).
        repository: the stored experts.
        backend: routing/fusion implementation (see :mod:`hf_liveedit.kernels`).
    """

    def __init__(
        self, modules: LiveEditModules, repository: ExpertRepository, backend: Backend = "auto"
    ):
        self.modules = modules
        self.repository = repository
        self.backend = backend
        self._new_context_variables()

    def _new_context_variables(self) -> None:
        key = f"liveedit-{id(self):x}"
        self._call: ContextVar[CallState | None] = ContextVar(f"{key}-call", default=None)
        self._enabled: ContextVar[bool] = ContextVar(f"{key}-enabled", default=True)
        self._capture: ContextVar[list | None] = ContextVar(f"{key}-capture", default=None)
        self._record: ContextVar[list | None] = ContextVar(f"{key}-record", default=None)

    def __getstate__(self) -> dict:
        # context variables cannot be copied or pickled; a copy starts with fresh ones
        return {key: value for key, value in self.__dict__.items() if key[:1] != "_"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._new_context_variables()

    @contextlib.contextmanager
    def call(
        self, spans: Spans | None, experts: ExpertBatch | None = None, fixed_spans: bool = False
    ) -> Iterator[None]:
        """A fresh :class:`CallState` for one wrapper call (see its attributes)."""
        state = CallState(call_spans=spans, override=experts, fixed_spans=fixed_spans)
        token = self._call.set(state)
        try:
            yield
        finally:
            self._call.reset(token)

    def before_step(self, decoding: bool, spans: Spans | None) -> None:
        """Called before each language-model step (a prefill, or decoding after one)."""
        state = self._call.get()
        if state is None:  # the base model called directly, outside the wrapper
            state = CallState()
            self._call.set(state)
        state.decoding = decoding
        state.step_spans = None if state.fixed_spans else spans

    @contextlib.contextmanager
    def disabled(self) -> Iterator[None]:
        """Calls made in this context (this thread or task only) are not edited."""
        token = self._enabled.set(False)
        try:
            yield
        finally:
            self._enabled.reset(token)

    @contextlib.contextmanager
    def capturing(self) -> Iterator[list[torch.Tensor]]:
        """Forwards in this context stop at layer ``l_e``; its unedited output is appended."""
        captured: list[torch.Tensor] = []
        token = self._capture.set(captured)
        try:
            yield captured
        finally:
            self._capture.reset(token)

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[torch.Tensor]]:
        """Each prefill in this context appends its ``[B, N]`` routing weights."""
        recorded: list[torch.Tensor] = []
        token = self._record.set(recorded)
        try:
            yield recorded
        finally:
            self._record.reset(token)

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        hidden = layer_output_hidden(output)
        captured = self._capture.get()
        if captured is not None:
            captured.append(hidden)
            raise StopForward
        if not self._enabled.get():
            return output
        state = self._call.get() or CallState()
        if state.decoding:
            fused = self._apply_prefill_routing(hidden, state)
        else:
            fused = self._route(hidden, state)
        return output if fused is None else replace_layer_output_hidden(output, fused)

    def _route(self, hidden: torch.Tensor, state: CallState) -> torch.Tensor | None:
        experts = state.override if state.override is not None else self.repository.snapshot()
        state.experts = experts
        state.weights = None
        if experts.up.shape[0] == 0:
            return None
        spans = state.step_spans if state.step_spans is not None else state.call_spans
        if spans is None or spans.image.shape != hidden.shape[:2]:
            raise RuntimeError(
                "LiveEdit could not match the layer's hidden states to input positions: call the "
                "model with `input_ids` (not `inputs_embeds`)."
            )
        norm = self.modules.expert_norm
        features = self.modules.input_features(hidden, spans)
        fused, weights = route_and_fuse(
            hidden,
            features.phi,
            features.psi,
            features.phi_sentinel,
            features.routable,
            experts.phi,
            experts.psi,
            experts.up,
            experts.down,
            norm.weight,
            norm.bias,
            norm.eps,
            self.modules.soft_routing_visual_weight,
            # the Triton kernels have no backward: experts being refined need the reference
            backend="torch" if experts.up.requires_grad else self.backend,
        )
        state.weights = weights
        recorded = self._record.get()
        if recorded is not None:
            recorded.append(weights)
        return fused

    def _apply_prefill_routing(self, hidden: torch.Tensor, state: CallState) -> torch.Tensor | None:
        experts, weights = state.experts, state.weights
        if experts is None:
            raise RuntimeError(
                "A decoding step arrived without a prefill over the same batch; run the prompt "
                "through the model first."
            )
        if weights is None:  # nothing was stored at prefill
            return None
        if weights.shape[0] != hidden.shape[0]:
            raise RuntimeError(
                f"A decoding step over {hidden.shape[0]} sequences follows a prefill over "
                f"{weights.shape[0]}; run the prompt through the model first."
            )
        norm = self.modules.expert_norm
        return fuse_experts(
            hidden,
            weights,
            experts.up,
            experts.down,
            norm.weight,
            norm.bias,
            norm.eps,
            backend=self.backend,
        )
