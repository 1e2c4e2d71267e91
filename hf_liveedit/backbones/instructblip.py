"""InstructBLIP (``InstructBlipForConditionalGeneration``) with a decoder-only language model."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image
from transformers import BatchFeature

from .blip2 import Blip2Spec


class InstructBlipSpec(Blip2Spec):
    """BLIP-2's layout; the Q-Former also reads the prompt (``qformer_input_ids``).

    InstructBLIP processors have no chat template; the prompt is the bare instruction,
    ``"{prompt}"``, as the checkpoints were tuned on.
    """

    model_class_names = ("InstructBlipForConditionalGeneration",)
    model_types = ("instructblip",)
    prompt_format = "{prompt}"
    unaligned_keys = frozenset({"qformer_input_ids", "qformer_attention_mask"})

    def process(self, images: Sequence[Image.Image] | None, texts: Sequence[str]) -> BatchFeature:
        """The processor's inputs, with the Q-Former's prompt copy padded on the right.

        The processor pads ``qformer_input_ids`` on the language model's side (left, for
        generation), but the Q-Former (BERT) counts positions from the first token, padding
        included: a left-padded prompt would be read at shifted positions, so a sample's image
        features, hence its routing, would depend on the rest of the batch.
        """
        inputs = super().process(images, texts)
        if "qformer_input_ids" in inputs:
            qformer = self.require_processor().qformer_tokenizer(
                list(texts), padding=True, padding_side="right", return_tensors="pt"
            )
            inputs["qformer_input_ids"] = qformer["input_ids"]
            inputs["qformer_attention_mask"] = qformer["attention_mask"]
        return inputs
