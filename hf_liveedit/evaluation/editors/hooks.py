"""Shared machinery of the training baselines: step spans and re-running the top layers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import BatchFeature

from hf_liveedit.backbones import BackboneSpec
from hf_liveedit.modules import Spans


class StepSpans:
    """Image / prompt / answer positions of the language model's current step.

    The hooks of GRACE and LEMoE need to know where the prompt ends, as LiveEdit's hook does; a
    pre-hook on the adapter's step module records the spans at each prefill (from the call's
    ``input_ids``, ``attention_mask`` and ``labels``) and whether the step is a decoding step.
    Scoring drops ``labels`` from the model call (so that only the answer window's logits are
    computed); :meth:`answers` supplies them instead.

    Args:
        adapter: the backbone adapter of the model.
    """

    def __init__(self, adapter: BackboneSpec):
        self.backbone = adapter
        self.spans: Spans | None = None
        self.decoding = False
        self._labels: torch.Tensor | None = None
        self._handle = adapter.step_module().register_forward_pre_hook(
            self._before_step, with_kwargs=True
        )

    def _before_step(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        self.decoding = cache is not None and cache.get_seq_length() > 0
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if not self.decoding and input_ids is not None:
            labels = kwargs.get("labels", self._labels)
            self.spans = self.backbone.spans(input_ids, kwargs.get("attention_mask"), labels)

    @contextlib.contextmanager
    def answers(self, labels: torch.Tensor) -> Iterator[None]:
        """Within this context, calls without ``labels`` take their answer positions from ``labels``."""
        self._labels = labels
        try:
            yield
        finally:
            self._labels = None

    def last_prompt_position(self) -> torch.Tensor:
        """``[B]`` index of each sequence's last prompt token (the token before its answer)."""
        spans = self.require()
        positions = torch.arange(spans.prompt.shape[1], device=spans.prompt.device)
        return torch.where(spans.prompt, positions, -1).amax(dim=1)

    def require(self) -> Spans:
        if self.spans is None:
            raise RuntimeError("no model call has been seen yet: call the model with input_ids")
        return self.spans

    def remove(self) -> None:
        self._handle.remove()


class _Captured(Exception):
    """Raised by the capture hook: nothing after the tail's first layer needs to run."""


@dataclass
class TailInputs:
    """What decoder layer ``start`` received for one batch: its hidden states and other arguments."""

    hidden: torch.Tensor
    args: tuple
    kwargs: dict[str, Any]


class LayerTail:
    """Run the language model from decoder layer ``start`` to the logits, on captured inputs.

    FT-L, TP, LEMoE and GRACE change only layers ``>= start``, so the input of layer ``start``
    does not depend on what they train: it is captured once per edit (:meth:`capture`) and each
    optimisation step runs only the tail (:meth:`logits`). The gradients are the same as with a
    full forward pass; only the frozen bottom of the model is not recomputed.

    Args:
        model: the VLLM; its decoder (``get_decoder()``) must have a final ``norm`` (Llama-style
            language models: LLaVA, Qwen2-VL, Idefics3).
        adapter: its backbone adapter.
        start: index of the first decoder layer of the tail.
    """

    def __init__(self, model: nn.Module, adapter: BackboneSpec, start: int):
        self.model = model
        self.layers = adapter.decoder_layers()
        if not 0 <= start < len(self.layers):
            raise ValueError(f"start layer {start} out of range 0..{len(self.layers) - 1}")
        self.start = start
        self.norm = getattr(model.get_decoder(), "norm", None)
        if self.norm is None:
            raise TypeError(
                f"{type(model).__name__}'s decoder has no final `norm`: the training baselines "
                "support Llama-style language models only"
            )
        self.head = model.get_output_embeddings()

    @torch.no_grad()
    def capture(self, inputs: BatchFeature) -> TailInputs:
        """Run the model on ``inputs`` up to layer ``start`` and keep that layer's inputs."""
        captured: list[TailInputs] = []

        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if args:
                captured.append(TailInputs(args[0], args[1:], dict(kwargs)))
            else:
                rest = {key: value for key, value in kwargs.items() if key != "hidden_states"}
                captured.append(TailInputs(kwargs["hidden_states"], (), rest))
            raise _Captured

        handle = self.layers[self.start].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            self.model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
        except _Captured:
            pass
        finally:
            handle.remove()
        return captured[0]

    def logits(self, inputs: TailInputs, keep: int) -> torch.Tensor:
        """Logits ``[B, keep, V]`` of the last ``keep`` positions, through the tail (with grad)."""
        hidden = inputs.hidden
        for layer in self.layers[self.start :]:
            output = layer(hidden, *inputs.args, **inputs.kwargs)
            hidden = output[0] if isinstance(output, tuple) else output
        return self.head(self.norm(hidden[:, -keep:]))
