"""Do edits take as well when the target is a string the generator was never trained to write?

Splits the scored records of an ``hf-liveedit evaluate run`` folder on the packaged benchmark's
test split in two: targets that are a value of their relation in the train split (a training
record's answer or target, so a generator trained with fresh targets has written them) and
targets that are not. Prints Rel, T-Gen and their exact match for each half, per editor and N::

    .venv/bin/python scripts/target_novelty.py docs/results/liveedit-stage5-2938-2026-12-07
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from hf_liveedit.data import load_benchmark
from hf_liveedit.data.benchmark.facts import normalize
from hf_liveedit.data.targets import CounterfactualTargets

#: Per-record metrics reported for each half.
METRICS = ("rel", "t_gen", "rel_em", "t_gen_em")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="an evaluate run folder (chunks.jsonl)")
    parser.add_argument("--benchmark-dir", help="benchmark folder (default: the cache)")
    args = parser.parse_args()

    pools = CounterfactualTargets(load_benchmark(args.benchmark_dir, "train", images=False)).pools
    known = {relation: {normalize(v) for v in values} for relation, values in pools.items()}
    test = load_benchmark(args.benchmark_dir, "test", images=False)
    test = test.select_columns(["relation", "alt"])

    groups: dict[tuple[str, int, bool], list[dict]] = defaultdict(list)
    with (args.results / "chunks.jsonl").open() as lines:
        for line in lines:
            chunk = json.loads(line)
            for record in chunk["records"]:
                target = test[record["index"]]
                seen = normalize(target["alt"]) in known.get(target["relation"], set())
                groups[chunk["editor"], chunk["num_edits"], seen].append(record)

    print("| editor | N | target in train split | scored | " + " | ".join(METRICS) + " |")
    print("|---|---:|---|---:|" + "---:|" * len(METRICS))
    for (editor, size, seen), records in sorted(groups.items()):
        cells = []
        for metric in METRICS:
            values = [r[metric] for r in records if r.get(metric) is not None]
            cells.append(f"{100 * sum(values) / len(values):.1f}" if values else "-")
        answer = "yes" if seen else "no"
        print(f"| {editor} | {size} | {answer} | {len(records)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
