"""Seconds per generator training step (forward + backward) by how much of the batch is cached.

With ``cache_hidden_states``, rows already seen skip the frozen layers up to ``l_e``; the rows
of a batch that are not cached run those layers alone. Before that, one uncached row sent the
whole batch's edited rows through the full model (the "nothing cached" row), which is what
batches with fresh counterfactual targets always paid. Prints one Markdown table; all rows in
one run.

    python benchmarks/bench_training_step.py --backbone default --repeats 2
    python benchmarks/bench_training_step.py --backbone tiny        # seconds, for a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from hf_liveedit.trainers import LiveEditDataCollator, LiveEditTrainingModel
from hf_liveedit.trainers.cache import HiddenStateCache

from hf_liveedit import LiveEditConfig, LiveEditModel, get_liveedit_model
from hf_liveedit.data.targets import CounterfactualTargets


def load(backbone: str, batch_size: int) -> tuple[LiveEditModel, list[dict]]:
    """The trainable model and ``2 * batch_size`` training records (with relation columns)."""
    if backbone == "tiny":
        from hf_liveedit.testing.tiny_models import tiny_image, tiny_llava

        model, processor = tiny_llava()
        liveedit = get_liveedit_model(
            model, LiveEditConfig(module_dim=32, num_heads=4), processor=processor
        )
        records = [
            {
                "src": f"What is in picture {i}?",
                "rephrase": f"Name what picture {i} shows.",
                "alt": f"thing {i}",
                "answer": f"object {i}",
                "relation": "picture/content",
                "image": tiny_image(i),
                "image_rephrase": tiny_image(100 + i),
                "m_loc": tiny_image(200 + i),
                "m_loc_q": "What colour is it?",
                "m_loc_a": "red",
            }
            for i in range(2 * batch_size)
        ]
        return liveedit, records
    from hf_liveedit.data.mmedit import load_benchmark
    from hf_liveedit.embedded import load_default_backbone
    from hf_liveedit.pretrained import default_generator_dir

    model, processor = load_default_backbone()
    liveedit = LiveEditModel.from_pretrained(
        model, default_generator_dir(), processor=processor, is_trainable=True
    )
    records = load_benchmark(split="train")
    return liveedit, [records[i] for i in range(2 * batch_size)]


def step_seconds(model: LiveEditTrainingModel, batch: dict, prepare: Callable[[], None]) -> float:
    """One forward + backward of the summed loss terms, after ``prepare`` (not timed)."""
    prepare()
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    sum(model(**batch).values()).backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=["default", "tiny"], default="default")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    liveedit, records = load(args.backbone, args.batch_size)
    first, second = records[: args.batch_size], records[args.batch_size :]
    half = args.batch_size // 2
    mixed = first[:half] + second[:half]

    def collate(chosen: list[dict], fresh: bool = False) -> dict:
        torch.manual_seed(0)
        pools = CounterfactualTargets(records) if fresh else None
        return LiveEditDataCollator(
            liveedit, fresh_targets=pools, fresh_target_rate=1.0 if fresh else 0.0
        )(chosen)

    cached = LiveEditTrainingModel(liveedit, cache_hidden_states=True).train()
    uncached = LiveEditTrainingModel(liveedit).train()
    batch, mixed_batch, fresh_batch = collate(first), collate(mixed), collate(first, fresh=True)
    step_seconds(cached, batch, lambda: None)  # checks the cached path once (fast_path)
    if not cached.cache.fast_path:
        raise SystemExit("the cached path does not reproduce the full forward for this backbone")

    def fill(*batches: dict) -> Callable[[], None]:
        """An empty cache, then the given batches' rows cached (untimed)."""

        def prepare() -> None:
            cached.cache = HiddenStateCache()
            cached.cache.fast_path = True
            with torch.no_grad():
                for seen in batches:
                    cached(**seen)

        return prepare

    scenarios = [
        ("cache off", uncached, batch, lambda: None),
        ("nothing cached (before: any batch with a new row)", cached, batch, fill()),
        ("half the records cached", cached, mixed_batch, fill(batch)),
        ("fresh targets, locality rows cached", cached, fresh_batch, fill(batch)),
        ("every row cached", cached, batch, fill(batch)),
    ]
    times = {name: [] for name, *_ in scenarios}
    for _ in range(args.repeats):  # interleaved, so that drift hits every row alike
        for name, model, chosen, prepare in scenarios:
            times[name].append(step_seconds(model, chosen, prepare))
    rows = len(batch["row_kind"])
    print(
        f"\n### Training step, {args.backbone} backbone, {args.batch_size} records "
        f"({rows} edited rows), median of {args.repeats}, {args.threads} threads\n"
    )
    print("| batch | s per step | vs cache off |")
    print("|---|---:|---:|")
    base = statistics.median(times[scenarios[0][0]])
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"| {name} | {median:.2f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
