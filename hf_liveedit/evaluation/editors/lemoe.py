"""LEMoE (Wang and Li, EMNLP 2024): a new LoRA expert per edit batch, routed by learned keys.

Our reading of LEMoE, on peft's LoRA:

- **Experts.** Each edit batch adds one peft LoRA adapter (rank 8, alpha 16, no dropout) on the
  MLP projections (``gate_proj``, ``up_proj``, ``down_proj``) of one decoder layer (default the
  last), trained alone while every earlier expert stays frozen (LEMoE's "module insertion").
  The protocol edits one record at a time, so a batch is one edit and N edits make N experts.
  Training: AdamW, lr 2e-4, 100 steps (the LiveEdit paper's setting), on the target's
  cross-entropy with the input routed to the new expert.
- **Routing (KV anchor routing).** An input's query is the mean, over its image and prompt
  tokens, of the hidden states entering the expert layer, L2-normalised. Each expert has a key;
  the input goes to the expert with the most similar key (top-1, cosine) at prefill, and keeps
  it while decoding. The key is learned with the expert: it starts at the edit's query (its
  anchor) and is trained with a routing cross-entropy over ``cos / 0.1`` that sends the new
  anchor to the new key and every earlier anchor to its own key. As in an MoE adaptor there is
  no "no expert" route: once edits exist, every input (also unrelated ones) passes one expert.
- Mixed batches use peft's per-sample ``adapter_names`` on the LoRA layers.

Reset unloads peft (the original modules come back) and restores the ``requires_grad`` flags
peft changed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from torch import nn

from hf_liveedit.evaluation.cases import Sample
from hf_liveedit.evaluation.editors.base import Editor, answer_loss, train_only
from hf_liveedit.evaluation.editors.hooks import LayerTail, StepSpans
from hf_liveedit.evaluation.metrics import answer_window


class LEMoEEditor(Editor):
    """LoRA experts with learned routing keys (see the module docstring).

    Args:
        model: the base VLLM.
        processor: its processor.
        layer: decoder layer carrying the experts (default: the last).
        rank, alpha: LoRA rank and alpha.
        lr: AdamW learning rate (expert and key).
        steps: optimisation steps per edit.
        temperature: of the routing cross-entropy.
    """

    name = "LEMoE"

    def __init__(
        self,
        model: nn.Module,
        processor: Any,
        layer: int | None = None,
        rank: int = 8,
        alpha: int = 16,
        lr: float = 2e-4,
        steps: int = 100,
        temperature: float = 0.1,
    ):
        super().__init__(model, processor)
        self.layer = self.backbone.num_layers - 1 if layer is None else layer
        self.lr, self.steps, self.temperature = lr, steps, temperature
        mlp = self.backbone.decoder_layers()[self.layer].mlp
        self.targets = [
            name
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and any(module is child for child in mlp.children())
        ]
        self.lora_config = LoraConfig(
            r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=self.targets
        )
        self.spans = StepSpans(self.backbone)
        self.tail = LayerTail(model, self.backbone, self.layer)
        self.keys = torch.zeros(0, self.backbone.hidden_size, device=self.device)
        self.anchors = torch.zeros(0, self.backbone.hidden_size, device=self.device)
        self.route: list[str] | None = None  # adapter name per sample of the current batch
        self.forced: str | None = None  # while training: every sample uses this expert
        self.query: torch.Tensor | None = None
        self.peft_model = None
        self._lora_handles: list[Any] = []
        self._requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
        self._router = self.backbone.decoder_layers()[self.layer].register_forward_pre_hook(
            self._choose_experts, with_kwargs=True
        )

    # --- routing --------------------------------------------------------------------------------
    def _choose_experts(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.peft_model is None:
            return
        hidden = args[0] if args else kwargs["hidden_states"]
        if self.spans.decoding:
            return  # keep the prefill's choice
        spans = self.spans.require()
        mask = (spans.image | spans.prompt).to(hidden.dtype)[..., None]
        query = F.normalize(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float(), dim=-1)
        self.query = query
        if self.forced is not None:
            self.route = [self.forced] * len(query)
            return
        nearest = (query @ F.normalize(self.keys, dim=-1).T).argmax(dim=1)
        self.route = [self._expert_name(int(index)) for index in nearest]

    def _pass_route(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "adapter_names": self.route}

    @staticmethod
    def _expert_name(index: int) -> str:
        return f"expert_{index}"

    # --- editing --------------------------------------------------------------------------------
    def _add_expert(self) -> str:
        name = self._expert_name(len(self.keys))
        if self.peft_model is None:
            self.peft_model = get_peft_model(self.model, self.lora_config, adapter_name=name)
            self._lora_handles = [
                module.register_forward_pre_hook(self._pass_route, with_kwargs=True)
                for module in self.model.modules()
                if isinstance(module, LoraLayer)
            ]
        else:
            self.peft_model.add_adapter(name, self.lora_config)
        return name

    def edit(self, sample: Sample) -> None:
        inputs = self.build_inputs([sample.image], [sample.prompt], [sample.target])
        labels = inputs["labels"]
        keep = answer_window(labels)
        with self.spans.answers(labels):
            captured = self.tail.capture(inputs)
        name = self._add_expert()
        self.forced = name
        try:
            with torch.no_grad():
                self.tail.logits(captured, keep)  # computes the edit's query (its anchor)
            anchor = self.query[0].detach()
            anchors = torch.cat([self.anchors, anchor[None]])
            key = anchor.clone()
            trained = [key] + [p for n, p in self.model.named_parameters() if f".{name}." in n]
            optimizer = torch.optim.AdamW(trained, lr=self.lr)
            with train_only(self.model, trained):
                for _ in range(self.steps):
                    optimizer.zero_grad()
                    keys = F.normalize(torch.cat([self.keys, key[None]]), dim=-1)
                    routing = F.cross_entropy(
                        anchors @ keys.T / self.temperature,
                        torch.arange(len(anchors), device=self.device),
                    )
                    loss = answer_loss(self.tail.logits(captured, keep), labels) + routing
                    loss.backward()
                    optimizer.step()
        finally:
            self.forced = None
        self.keys = torch.cat([self.keys, key.detach()[None]])
        self.anchors = anchors

    def reset(self) -> None:
        for handle in self._lora_handles:
            handle.remove()
        self._lora_handles = []
        if self.peft_model is not None:
            self.peft_model.unload()
            self.peft_model = None
            for name, parameter in self.model.named_parameters():
                parameter.requires_grad_(self._requires_grad[name])
        self.keys, self.anchors = self.keys[:0], self.anchors[:0]
        self.route = self.query = None

    def close(self) -> None:
        self.reset()
        self._router.remove()
        self.spans.remove()
