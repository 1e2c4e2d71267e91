"""``hf-liveedit demo``: apply edits and show answers before and after."""

from __future__ import annotations

import argparse
import random
import textwrap
from pathlib import Path

from hf_liveedit.commands import ADAPTER_CONFIGS, UsageError, check_path, positive_int, reading

HELP = "Apply a few edits to a VLLM and print its answers before and after each edit."

#: Probes shown for each edit: label, image field, question field (None: asked as is, text only).
PROBES = (
    ("edit", "image", "src"),
    ("rephrase", "image", "rephrase"),
    ("other image", "image_rephrase", "src"),
    ("neighbour", "neighbour", "src"),
    ("unrelated", "m_loc", "m_loc_q"),
    ("unrelated text", None, "loc"),
)
GENERALITY = {"edit", "rephrase", "other image"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's flags.

    Args:
        parser: The sub-command's parser.
    """
    parser.add_argument(
        "--backbone",
        choices=["default", "tiny"],
        default="default",
        help="Which model to edit. 'default': the embedded LLaVA with the packaged trained "
        "generator and edits from the benchmark's test split; the benchmark (about 1.5 min) and "
        "the backbone (about 1 min) are built into the cache first if missing. 'tiny': a random "
        "tiny LLaVA with a rigged router (seconds; a smoke test of the mechanics, not of "
        "quality).",
    )
    parser.add_argument(
        "--generator", default=None, help="LiveEdit adapter folder (default: the packaged one)"
    )
    parser.add_argument(
        "--benchmark-dir", default=None, help="benchmark folder (default: the cache's)"
    )
    parser.add_argument(
        "--num-edits", type=positive_int, help="edits to apply (default 5; default backbone only)"
    )
    parser.add_argument(
        "--seed", type=int, help="which test records to pick (default 0; default backbone only)"
    )
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=8, help="answer length (default 8)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo on the chosen backbone.

    Args:
        args: Parsed flags.

    Returns:
        0 on success.
    """
    if args.backbone == "tiny":
        # the tiny demo makes its own generator and edits: these would be silently ignored
        given = [
            flag
            for flag in ("generator", "benchmark_dir", "num_edits", "seed")
            if getattr(args, flag) is not None
        ]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag} applies to --backbone default only")
        return _run_tiny(args)
    args.num_edits = 5 if args.num_edits is None else args.num_edits
    args.seed = 0 if args.seed is None else args.seed
    # checked before the benchmark and backbone are built (minutes on a first run)
    if args.generator:
        check_path("--generator", args.generator, "dir", containing=ADAPTER_CONFIGS)
    if args.benchmark_dir:  # built there when missing
        check_path("--benchmark-dir", args.benchmark_dir, "new_dir")
    return _run_default(args)


def _ensure_built(benchmark_dir: str | None) -> None:
    """Build what the first run needs and is missing: the benchmark, then the backbone.

    Each long step says what it does and about how long it takes; its progress bars carry the
    estimate of the time left.
    """
    from hf_liveedit.data.benchmark import build_benchmark, default_benchmark_dir
    from hf_liveedit.embedded import build_default_backbone, default_backbone_built

    benchmark = default_benchmark_dir() if benchmark_dir is None else benchmark_dir
    if not (Path(benchmark) / "test.json").is_file():
        print(
            "first run: building the benchmark once (Debian packages of flags, maps and photos; "
            "about 1.5 min on 2 cores)",
            flush=True,
        )
        build_benchmark(benchmark, fill_preds=False)
    if not default_backbone_built():
        print(
            "first run: assembling the default backbone once from its packaged parts (about "
            "1 min on 2 cores)",
            flush=True,
        )
        build_default_backbone()


def _answers(liveedit, images, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy answers, first line only."""
    inputs = liveedit.build_inputs(images, prompts)
    tokens = liveedit.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    texts = liveedit.processor.batch_decode(
        tokens[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    return [text.strip().split("\n", 1)[0].strip() for text in texts]


def _pick_records(dataset, count: int, seed: int) -> list[dict]:
    """``count`` test records, spread over the relations (one per relation, then repeats)."""
    rng = random.Random(seed)
    by_relation: dict[str, list[int]] = {}
    for index, relation in enumerate(dataset["relation"]):
        by_relation.setdefault(relation, []).append(index)
    pools = [rng.sample(indices, len(indices)) for indices in by_relation.values()]
    rng.shuffle(pools)
    order = [pool[i] for i in range(max(map(len, pools))) for pool in pools if i < len(pool)]
    records = [dataset[index] for index in order[:count]]
    _add_neighbours(dataset, records, rng)
    return records


def _add_neighbours(dataset, records: list[dict], rng: random.Random) -> None:
    """Give each record a neighbour: the picture of another entity, same relation, not edited.

    Asking the record's question about it must give the unedited answer (neighbourhood
    locality): the edit is about one entity, not about every picture of its kind.
    """
    edited = {(record["entity"], record["relation"]) for record in records}
    pairs = list(zip(dataset["entity"], dataset["relation"]))
    for record in records:
        candidates = [
            index
            for index, (entity, relation) in enumerate(pairs)
            if relation == record["relation"]
            and entity != record["entity"]
            and (entity, relation) not in edited
        ]
        neighbour = dataset[rng.choice(candidates)]
        record["neighbour"] = neighbour["image"]
        record["neighbour_path"] = neighbour["image_path"]


def _run_default(args: argparse.Namespace) -> int:
    import torch

    from hf_liveedit import LiveEditModel
    from hf_liveedit.data import format_prompt, load_benchmark
    from hf_liveedit.embedded import load_default_backbone
    from hf_liveedit.pretrained import default_generator_dir

    _ensure_built(args.benchmark_dir)
    dataset = load_benchmark(args.benchmark_dir, "test")
    if args.num_edits > len(dataset):
        raise UsageError(f"--num-edits {args.num_edits}: the test split has {len(dataset)} records")
    torch.manual_seed(args.seed)
    model, processor = load_default_backbone()
    processor.tokenizer.padding_side = "left"  # batched generation continues on the right
    generator = args.generator or default_generator_dir()
    with reading(f"--generator {generator}"):  # e.g. a generator made for another backbone
        liveedit = LiveEditModel.from_pretrained(model, generator, processor=processor)
    records = _pick_records(dataset, args.num_edits, args.seed)

    def ask(label: str, image_field: str | None, question_field: str) -> tuple[list, list[str]]:
        if image_field is None:  # text locality questions are asked as they are
            return None, [record[question_field] for record in records]
        images = [record[image_field] for record in records]
        return images, [format_prompt(record[question_field]) for record in records]

    def answer_all() -> dict[str, list[str]]:
        with torch.no_grad():
            return {
                label: _answers(liveedit, *ask(label, image, question), args.max_new_tokens)
                for label, image, question in PROBES
            }

    before = answer_all()
    liveedit.add_edits(
        [record["image"] for record in records],
        [format_prompt(record["src"]) for record in records],
        [record["alt"] for record in records],
    )
    after = answer_all()

    print(
        "backbone: the embedded default LLaVA (SmolLM2-135M-Instruct + EfficientNet-Lite0)\n"
        f"generator: {args.generator or 'the packaged one (hf_liveedit.pretrained)'}\n"
        f"{len(records)} edits from the benchmark's test split (never seen in training) were "
        "applied one after another; answers before and after all of them:"
    )
    hits = {label: 0 for label, _, _ in PROBES}
    for index, record in enumerate(records):
        print(
            f"\n[{index + 1}/{len(records)}] {record['relation']}, {record['entity']}: "
            f"true answer {record['answer']!r}, edited to {record['alt']!r}"
        )
        for label, image_field, question_field in PROBES:
            old, new = before[label][index], after[label][index]
            if label in GENERALITY:
                ok = new.strip().lower().startswith(record["alt"].strip().lower())
                verdict = "edited" if ok else "not edited"
            else:
                ok = new == old
                verdict = "unchanged" if ok else "CHANGED"
            hits[label] += ok
            where = f"  [{record[image_field + '_path']}]" if image_field else "  [no image]"
            question = textwrap.shorten(record[question_field], 64) + where
            print(f"  {label:<15}{question}")
            print(f"  {'':<15}before {old!r}  ->  after {new!r}  ({verdict})")
    summary = ", ".join(f"{label} {hits[label]}/{len(records)}" for label, _, _ in PROBES)
    print(f"\nedited or unchanged as intended: {summary}")
    return 0


def _run_tiny(args: argparse.Namespace) -> int:
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

    edits = [(tiny_image(0), "What is the capital?", "Lyon"), (tiny_image(1), "Name it.", "Paris")]
    print("backbone: tiny random LLaVA (mechanics only; see README for real results)")
    for image, prompt, target in edits:
        before = _answers(liveedit, image, prompt, args.max_new_tokens)[0]
        liveedit.add_edit(image, prompt, target)
        after = _answers(liveedit, image, prompt, args.max_new_tokens)[0]
        print(f"edit {prompt!r} -> {target!r}: before {before!r}, after {after!r}")
    text_only = liveedit.build_inputs(None, "What is the capital?")
    with torch.no_grad():
        edited = liveedit(**text_only).logits
        with liveedit.disable_adapter():
            same = torch.equal(edited, liveedit(**text_only).logits)
    print(f"{len(liveedit.edits)} edits stored; text-only input unchanged: {same}")
    return 0
