"""``hf-liveedit demo``: apply edits and show answers before and after."""

from __future__ import annotations

import argparse

HELP = "Apply a few edits to a VLLM and print its answers before and after each edit."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backbone",
        choices=["tiny"],
        default="tiny",
        help="Which model to edit. 'tiny': a random tiny LLaVA with a rigged router (a smoke "
        "test of the mechanics, not of quality).",
    )
    parser.add_argument("--max-new-tokens", type=int, default=6)


def run(args: argparse.Namespace) -> int:
    import torch

    from hf_liveedit import LiveEditConfig, get_liveedit_model
    from hf_liveedit.testing.tiny_models import tiny_image, tiny_llava

    model, processor = tiny_llava()
    torch.manual_seed(0)
    liveedit = get_liveedit_model(
        model, LiveEditConfig(module_dim=32, num_heads=4, expert_scale=50.0), processor=processor
    )
    # An untrained generator routes at random; make each edit route to its own input.
    modules = liveedit.liveedit_modules
    with torch.no_grad():
        modules.sentinel.zero_()
        modules.input_extractor.look_in.v_proj.bias.zero_()
        modules.edit_extractor.load_state_dict(modules.input_extractor.state_dict())

    def answer(image, prompt: str) -> str:
        inputs = liveedit.build_inputs(image, prompt)
        tokens = liveedit.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
        return processor.decode(tokens[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    edits = [(tiny_image(0), "What is the capital?", "Lyon"), (tiny_image(1), "Name it.", "Paris")]
    print("backbone: tiny random LLaVA (mechanics only; see README for real results)")
    for image, prompt, target in edits:
        before = answer(image, prompt)
        liveedit.add_edit(image, prompt, target)
        after = answer(image, prompt)
        print(f"edit {prompt!r} -> {target!r}: before {before!r}, after {after!r}")
    text_only = liveedit.build_inputs(None, "What is the capital?")
    with torch.no_grad():
        edited = liveedit(**text_only).logits
        with liveedit.disable_adapter():
            same = torch.equal(edited, liveedit(**text_only).logits)
    print(f"{len(liveedit.edits)} edits stored; text-only input unchanged: {same}")
    return 0
