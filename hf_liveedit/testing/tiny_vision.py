"""A tiny convolutional vision tower registered as a transformers model.

It exists so tests can check that LiveEdit makes no assumption about the vision tower beyond what
`LlavaForConditionalGeneration` itself needs: a model whose output has `hidden_states`, a tuple
whose last element is `[batch, num_patches, hidden_size]`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling


class TinyConvVisionConfig(PretrainedConfig):
    """Configuration of `TinyConvVisionModel` (fields are dataclass fields in transformers 5).

    `patch_size` is the total stride of the two convolutions, so an image of `image_size` pixels
    gives `(image_size // patch_size) ** 2` output tokens.
    """

    model_type = "hf_liveedit_tiny_conv_vision"

    num_channels: int = 3
    hidden_size: int = 32
    intermediate_channels: int = 16
    image_size: int = 32
    patch_size: int = 8
    initializer_range: float = 0.02


class TinyConvVisionModel(PreTrainedModel):
    """Two strided convolutions whose output grid is flattened into `[B, N, C]` tokens."""

    config_class = TinyConvVisionConfig
    config: TinyConvVisionConfig
    base_model_prefix = "tiny_conv_vision"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: TinyConvVisionConfig) -> None:
        super().__init__(config)
        first_stride = config.patch_size // 2
        self.stem = nn.Conv2d(
            config.num_channels, config.intermediate_channels, first_stride, stride=first_stride
        )
        self.proj = nn.Conv2d(config.intermediate_channels, config.hidden_size, 2, stride=2)
        self.norm = nn.LayerNorm(config.hidden_size)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, **kwargs: object) -> BaseModelOutputWithPooling:
        """Encodes images into patch tokens.

        Args:
            pixel_values: `[B, num_channels, H, W]` images.
            **kwargs: Ignored (LLaVA passes `return_dict`, `output_hidden_states`, ...).

        Returns:
            An output whose `last_hidden_state` and single `hidden_states` entry are `[B, N, C]`.
        """
        features = self.proj(nn.functional.gelu(self.stem(pixel_values)))
        tokens = self.norm(features.flatten(2).transpose(1, 2))
        return BaseModelOutputWithPooling(
            last_hidden_state=tokens, pooler_output=tokens.mean(1), hidden_states=(tokens,)
        )


AutoConfig.register(TinyConvVisionConfig.model_type, TinyConvVisionConfig, exist_ok=True)
AutoModel.register(TinyConvVisionConfig, TinyConvVisionModel, exist_ok=True)
