"""The hook on decoder layer ``l_e`` that routes each input to its experts and fuses them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .kernels import Backend, fuse_experts, route_and_fuse
from .modules import LiveEditModules, Spans
from .repository import ExpertRepository


class StopForward(Exception):
    """Raised by the hook in capture mode: nothing after layer ``l_e`` needs to run."""


def layer_output_hidden(output: Any) -> torch.Tensor:
    """The hidden states of a decoder layer's output (a tensor, or a tuple starting with one)."""
    return output[0] if isinstance(output, tuple) else output


def replace_layer_output_hidden(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class EditLayerHook:
    """Forward hook on layer ``l_e``.

    Before each language-model step, :class:`~hf_liveedit.model.LiveEditModel` tells the hook
    whether it is a prefill or a decoding step and the batch's :class:`Spans` (from the step's
    ``input_ids``, or from the wrapper call's when the step only sees embeddings). At
    prefill the hook routes (hard filter + soft weights) and caches the ``[B, N]`` weights; at
    decoding steps it applies the cached weights to the new positions, so each sample keeps the
    experts chosen from its own image and prompt.

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
        self.enabled = True
        self.step_spans: Spans | None = None
        self.call_spans: Spans | None = None
        self.decoding = False
        self.cached_weights: torch.Tensor | None = None
        self.capture = False
        self.captured: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        hidden = layer_output_hidden(output)
        if self.capture:
            self.captured = hidden
            raise StopForward
        if not self.enabled or len(self.repository) == 0:
            return output
        if self.decoding:
            fused = self._apply_cached(hidden)
        else:
            fused = self._route(hidden)
        return replace_layer_output_hidden(output, fused)

    def _route(self, hidden: torch.Tensor) -> torch.Tensor:
        spans = self.step_spans if self.step_spans is not None else self.call_spans
        if spans is None or spans.image.shape != hidden.shape[:2]:
            raise RuntimeError(
                "LiveEdit could not match the layer's hidden states to input positions: call the "
                "model with `input_ids` (not `inputs_embeds`)."
            )
        repo, norm = self.repository, self.modules.expert_norm
        features = self.modules.input_features(hidden, spans)
        fused, weights = route_and_fuse(
            hidden,
            features.phi,
            features.psi,
            features.phi_sentinel,
            features.routable,
            repo.phi,
            repo.psi,
            repo.up,
            repo.down,
            norm.weight,
            norm.bias,
            norm.eps,
            self.modules.soft_routing_visual_weight,
            backend=self.backend,
        )
        self.cached_weights = weights
        return fused

    def _apply_cached(self, hidden: torch.Tensor) -> torch.Tensor:
        weights = self.cached_weights
        if weights is None or weights.shape != (hidden.shape[0], len(self.repository)):
            raise RuntimeError(
                "A decoding step arrived without routing from a prefill over the same batch and "
                "repository; run the prompt through the model first."
            )
        norm = self.modules.expert_norm
        return fuse_experts(
            hidden,
            weights,
            self.repository.up,
            self.repository.down,
            norm.weight,
            norm.bias,
            norm.eps,
            backend=self.backend,
        )
