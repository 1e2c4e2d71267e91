"""Model-level performance of LiveEdit: add_edit latency, bytes per edit, generate throughput.

Prints three Markdown tables. Ratios are measured in one run, interleaving the edited and the
unedited model, because this machine is noisy.

    python benchmarks/bench_model.py --backbone default --sizes 0 100 1000 10000
    python benchmarks/bench_model.py --backbone tiny            # seconds, for a smoke test
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from hf_liveedit import LiveEditConfig, LiveEditModel, get_liveedit_model
from hf_liveedit.modules import ExpertBatch
from hf_liveedit.repository import TENSOR_NAMES, EditRecord


def load(backbone: str, generator: str | None) -> tuple[LiveEditModel, list[tuple], list[tuple]]:
    """The edited model, an endless supply of edit triples, and a few query (image, prompt) pairs."""
    if backbone == "tiny":
        from hf_liveedit.testing.tiny_models import tiny_image, tiny_llava

        model, processor = tiny_llava()
        config = LiveEditConfig(module_dim=64, num_heads=4)
        pool = [
            (tiny_image(seed), f"What is shown in picture {seed}?", f"thing {seed}")
            for seed in range(64)
        ]
    else:
        from hf_liveedit.data.mmedit import load_benchmark
        from hf_liveedit.data.prompts import format_prompt
        from hf_liveedit.embedded import load_default_backbone

        model, processor = load_default_backbone()
        config = LiveEditConfig()
        records = load_benchmark(split="test")
        pool = [
            (records[i]["image"], format_prompt(question), records[i]["alt"])
            for i in range(len(records))
            for question in (records[i]["src"], records[i]["rephrase"])
        ]
    if generator:
        liveedit = LiveEditModel.from_pretrained(
            model, generator, processor=processor, load_experts=False
        )
    else:
        liveedit = get_liveedit_model(model, config, processor=processor)
    queries = [(image, prompt) for image, prompt, _ in pool[:: max(1, len(pool) // 8)][:8]]
    return liveedit, pool, queries


def edit_stream(pool: list[tuple]) -> Iterator[tuple]:
    """Distinct edits: the pool, then again with numbered targets."""
    for round_index in itertools.count():
        for image, prompt, target in pool:
            yield image, prompt, target if round_index == 0 else f"{target} {round_index}"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_add_edit(liveedit: LiveEditModel, pool: list[tuple], repeats: int) -> None:
    """add_edit latency against one base prefill, without and with verified edits (N = 1 each)."""
    config = liveedit.liveedit_config
    print(f"\n### add_edit latency (median of {repeats}, one stored edit at a time)\n")
    print(
        "| verify_edits | add_edit (ms) | base prefill (ms) | ratio (target <= 1.2 without) "
        "| took on the edit input | refine steps (mean) |\n|---|---|---|---|---|---|"
    )
    for verify in (False, True):
        config.verify_edits = verify
        edit_times, prefill_times, records = [], [], []
        for image, prompt, target in pool[:repeats]:
            inputs = liveedit.build_inputs(image, prompt)
            with torch.no_grad(), liveedit.disable_adapter():
                prefill_times.append(timed(lambda: liveedit(**inputs)))  # noqa: B023
            with warnings.catch_warnings():  # edits that miss are counted below
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                edit_id = liveedit.add_edit(image, prompt, target)
                edit_times.append(time.perf_counter() - start)
            records.append(liveedit.get_edit(edit_id))
            liveedit.clear_edits()
        edit, prefill = statistics.median(edit_times), statistics.median(prefill_times)
        took = f"{sum(r.took for r in records)}/{len(records)}" if verify else "not checked"
        steps = statistics.mean(r.refine_steps for r in records)
        print(
            f"| {verify} | {edit * 1e3:.1f} | {prefill * 1e3:.1f} | {edit / prefill:.2f} "
            f"| {took} | {steps:.1f} |",
            flush=True,
        )
    config.verify_edits = False


def bench_storage(liveedit: LiveEditModel, pool: list[tuple], count: int) -> None:
    print(f"\n### bytes per edit ({count} edits saved)\n")
    print("| expert_dtype | tensor bytes / edit | experts.safetensors + edits.json bytes / edit |")
    print("|---|---|---|")
    images, prompts, targets = zip(*pool[:count])
    for dtype in ("float32", "float16", "bfloat16"):
        liveedit.clear_edits()
        liveedit.repository.to(dtype=getattr(torch, dtype))
        liveedit.add_edits(images, prompts, targets, batch_size=16, progress=False)
        tensor_bytes = sum(
            t.element_size() * t[0].numel() for t in liveedit.repository.state_dict().values()
        )
        with tempfile.TemporaryDirectory() as folder:
            liveedit.save_experts(folder)
            on_disk = sum(p.stat().st_size for p in Path(folder).iterdir())
        print(f"| {dtype} | {tensor_bytes} | {on_disk / count:.0f} |")
    liveedit.clear_edits()
    liveedit.repository.to(dtype=liveedit.liveedit_config.torch_expert_dtype)


def repeat_stored(liveedit: LiveEditModel, count: int, keys: torch.Tensor | None = None) -> None:
    """Store ``count`` more edits that repeat the stored experts cyclically (new ids).

    Routing and fusion costs depend only on how many experts are stored and kept, not on how
    they were made, so this fills a large repository without paying ``add_edit`` for each.
    With ``keys`` (``[P, k, d_m]`` visual keys of P pictures), the new edits take those keys in
    turn instead of repeating the stored ones, so the hard filter sees edits spread over P
    pictures, as distinct edits would be, rather than copies of the same ones.
    """
    repository = liveedit.repository
    index = torch.arange(count) % len(repository)
    experts = ExpertBatch(**{name: repository.tensor(name)[index] for name in TENSOR_NAMES})
    if keys is not None:
        experts.phi = keys[torch.arange(count) % len(keys)].to(experts.phi.dtype)
    stored = repository.records
    repository.add(
        experts,
        [EditRecord.new(stored[i].prompt, stored[i].target, stored[i].image_sha256) for i in index],
    )


def picture_keys(liveedit: LiveEditModel, folder: Path, batch_size: int = 16) -> torch.Tensor:
    """The edit-side visual keys ``phi`` of every picture under ``folder`` (one question each)."""
    from tqdm.auto import tqdm

    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    prompt = "What is shown in this picture?"
    keys = []
    for start in tqdm(range(0, len(paths), batch_size), desc=f"keys of {len(paths)} pictures"):
        chunk = [str(p) for p in paths[start : start + batch_size]]
        inputs = liveedit.build_inputs(chunk, [prompt] * len(chunk))
        hidden = liveedit.hidden_states_at_edit_layer(inputs)
        spans = liveedit.backbone.spans(inputs["input_ids"], inputs["attention_mask"])
        keys.append(liveedit.liveedit_modules.edit_features(hidden, spans)[0])
    return torch.cat(keys)


def bench_generate(
    liveedit: LiveEditModel,
    pool: list[tuple],
    queries: list[tuple],
    sizes: list[int],
    new_tokens: int,
    generate_up_to: int | None = None,
    keys: torch.Tensor | None = None,
) -> None:
    print(
        f"\n### generate throughput ({len(queries)} prompts, batch 1, {new_tokens} new tokens, greedy)\n"
    )
    if generate_up_to is not None:
        spread = (
            f" with the visual keys of {len(keys)} benchmark pictures in turn"
            if keys is not None
            else ""
        )
        print(
            f"Edits beyond the first {generate_up_to} repeat the generated experts (new ids)"
            f"{spread}.\n"
        )
    print(
        "| stored edits | tokens/s edited | tokens/s unedited | ratio | experts kept per input (mean) |"
    )
    print("|---|---|---|---|---|")
    stream = edit_stream(pool)
    inputs = [liveedit.build_inputs(image, prompt) for image, prompt in queries]

    def run() -> tuple[float, float]:
        kept = 0.0
        start = time.perf_counter()
        for one in inputs:
            with liveedit.record_routing() as routing:
                liveedit.generate(
                    **one, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
                )
            kept += sum(float((weights > 0).sum()) for weights in routing)
        return time.perf_counter() - start, kept / len(inputs)

    for size in sizes:
        cap = size if generate_up_to is None else min(size, generate_up_to)
        missing = cap - len(liveedit.edits)
        if missing > 0:
            images, prompts, targets = zip(*itertools.islice(stream, missing))
            liveedit.add_edits(images, prompts, targets, batch_size=16, progress=missing > 64)
        if size > len(liveedit.edits):
            repeat_stored(liveedit, size - len(liveedit.edits), keys)
        edited_times, base_times, kept = [], [], 0.0
        for _ in range(2):  # interleave to share the machine's noise
            with liveedit.disable_adapter():
                base_times.append(run()[0])
            seconds, kept = run()
            edited_times.append(seconds)
        tokens = len(inputs) * new_tokens
        edited, base = tokens / min(edited_times), tokens / min(base_times)
        print(
            f"| {size} | {edited:.1f} | {base:.1f} | {edited / base:.3f} | {kept:.1f} |", flush=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=["tiny", "default"], default="default")
    parser.add_argument(
        "--generator", default=None, help="trained generator folder (save_pretrained format)"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 100, 1000, 10000])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20, help="edits timed for add_edit latency")
    parser.add_argument(
        "--generate-up-to",
        type=int,
        default=None,
        help="make at most this many experts with add_edits; larger sizes repeat them",
    )
    parser.add_argument(
        "--spread-over-pictures",
        action="store_true",
        help="repeated edits take the visual keys of the benchmark's pictures in turn (default "
        "backbone): edits on thousands of pictures for the hard filter, not copies",
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["add_edit", "storage", "generate"],
        help="tables to skip",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    liveedit, pool, queries = load(args.backbone, args.generator)
    print(f"backbone: {args.backbone}; torch threads: {torch.get_num_threads()}")
    with torch.no_grad():
        if "add_edit" not in args.skip:
            bench_add_edit(liveedit, pool, args.repeats)
        if "storage" not in args.skip:
            bench_storage(liveedit, pool, min(64, len(pool)))
        if "generate" not in args.skip:
            keys = None
            if args.spread_over_pictures:
                from hf_liveedit.data.benchmark.paths import default_benchmark_dir

                keys = picture_keys(liveedit, default_benchmark_dir() / "images")
            bench_generate(
                liveedit, pool, queries, args.sizes, args.new_tokens, args.generate_up_to, keys
            )


if __name__ == "__main__":
    main()
