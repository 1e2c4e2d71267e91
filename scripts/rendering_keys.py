"""Can an image key route *other renderings* of an edited entity to its edit (M-Gen)?

Measures, on the training split only, how often the image key of another rendering of an entity
(a CIA-factbook or flagpy flag, an emoji, a region map: the benchmark's ``image_rephrase``) passes
the filter for that entity's edit picture, and how often other entities' pictures pass it too.
Entity-level cross-validation: in each of ``--folds`` folds the key is fitted on the other folds'
entities; the held-out entities are split in two, the first half's edits are stored, their other
renderings are the probes that should pass, and the second half's pictures and renderings (never
edited) and every locality picture are probes that should not.

Keys (``--positions`` segments, :class:`hf_liveedit.modules.ImageKey`'s layout):

* ``pca``: the packaged key's fit (centre and principal directions of training pictures);
* ``learned``: the projection trained with an InfoNCE loss, renderings as anchors and their
  entity's edit picture as the positive among all training entities' edit pictures.

Filters: ``fixed`` is ``train-router``'s threshold (smallest cosine at which the held-out pictures
and locality pictures keep some stored training edit at most 1% of the time, as a 99th
percentile); ``t / m`` keeps an
edit when the cosine exceeds ``t`` *and* exceeds by ``m`` the input's best cosine with a reference
bank of training pictures (edit pictures and renderings).

The states come from ``hf-liveedit train-router --states_cache FILE`` (layer-``l_e`` states of
every training record's edit, other-image and locality inputs)::

    .venv/bin/python scripts/rendering_keys.py --states FILE
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from hf_liveedit.data import load_benchmark
from hf_liveedit.modules import ImageKey

#: ``image_rephrase_source`` -> the kind of rendering it is.
KINDS = {
    "cia-factbook": "flags",
    "flagpy": "flags",
    "emojione": "emoji",
    "noto-emoji": "emoji",
    "kgeography-maps": "maps",
}


def select(states: dict, rows: torch.Tensor) -> dict:
    """The packed states (``hidden``, ``image``) of ``rows`` only."""
    return {"hidden": states["hidden"][rows], "image": states["image"][rows]}


def unit_keys(key: ImageKey, states: dict) -> torch.Tensor:
    """``[N, k * d_m]`` unit-norm image keys (their dot products are the filter's cosines)."""
    return F.normalize(key(states["hidden"], states["image"]).flatten(1), dim=-1)


def fit_key(
    pictures: dict, other: dict, entity: torch.Tensor, learned: bool, steps: int, positions: int
) -> ImageKey:
    """The packaged key's fit on ``pictures``, then optionally InfoNCE steps on its projection.

    Args:
        pictures: training edit inputs' packed float32 states (``hidden``, ``image``).
        other: their other renderings' packed states, same rows.
        entity: ``[N]`` entity ids of the rows.
        learned: train the projection.
        steps: InfoNCE steps.
        positions: ``G``.
    """
    key = ImageKey(pictures["hidden"].shape[-1], positions, num_queries=4, module_dim=256)
    key.fit(pictures["hidden"], pictures["image"])
    if not learned:
        return key
    first = {}  # one picture per entity (an entity's records share their edit picture)
    for row, name in enumerate(entity.tolist()):
        first.setdefault(name, row)
    entity_rows = torch.tensor(list(first.values()))
    anchors = select(pictures, entity_rows)
    positive = (entity[:, None] == entity[entity_rows][None]).float().argmax(1)
    key.projection.requires_grad_(True)
    optimizer = torch.optim.Adam([key.projection], lr=1e-2)
    for _ in range(steps):
        entities, renderings = unit_keys(key, anchors), unit_keys(key, other)
        loss = F.cross_entropy(renderings @ entities.T / 0.05, positive) + F.cross_entropy(
            entities @ entities.T / 0.05, torch.arange(len(entity_rows))
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    key.projection.requires_grad_(False)
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--states", required=True, help="train-router --states_cache file")
    parser.add_argument("--benchmark-dir", default=None)
    parser.add_argument("--positions", type=int, default=16)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150, help="InfoNCE steps of 'learned'")
    args = parser.parse_args()

    data = load_benchmark(args.benchmark_dir, "train")
    saved = torch.load(args.states, weights_only=False)
    edit, other, locality = (
        {"hidden": saved[n]["hidden"].float(), "image": saved[n]["image"]}
        for n in ("edit", "other_image", "locality")
    )
    names = sorted(set(data["entity"]))
    entity = torch.tensor([names.index(name) for name in data["entity"]])
    kind = [KINDS.get(source, "other") for source in data["image_rephrase_source"]]
    filters = ["fixed"] + [(t, m) for t in (0.5, 0.8, 0.9) for m in (0.0, 0.05, 0.1)]

    print("| key | filter | flags | emoji | maps | neighbour pairs kept | locality pairs kept |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for learned in (False, True):
        counts = {f: torch.zeros(5, 2) for f in filters}
        for fold in range(args.folds):
            train = (entity % args.folds != fold).nonzero()[:, 0]
            held = sorted(set((entity % args.folds == fold).nonzero()[:, 0].tolist()))
            stored = torch.tensor([r for r in held if entity[r] // args.folds % 2 == 0])
            unedited = torch.tensor([r for r in held if entity[r] // args.folds % 2 == 1])
            key = fit_key(
                select(edit, train),
                select(other, train),
                entity[train],
                learned,
                args.steps,
                args.positions,
            )
            with torch.no_grad():
                edit_keys, other_keys = unit_keys(key, edit), unit_keys(key, other)
                locality_keys = unit_keys(key, locality)
            bank = edit_keys[stored]
            train_bank = edit_keys[train]
            references = torch.cat([train_bank, other_keys[train]])
            probes = {
                "own": other_keys[stored],
                "neighbour": torch.cat([edit_keys[unedited], other_keys[unedited]]),
                "locality": locality_keys,
            }
            cosine = {name: k @ bank.T for name, k in probes.items()}
            best_reference = {name: (k @ references.T).amax(1) for name, k in probes.items()}
            # about train-router's rule: at most 1% of held-out and locality pictures keep a training edit
            fixed = max(
                float((k @ train_bank.T).amax(1).quantile(0.99))
                for k in (edit_keys[held], locality_keys)
            )
            own = entity[stored][:, None] == entity[stored][None]
            for f in filters:
                t, m = (fixed, None) if f == "fixed" else f
                kept = {}
                for name in probes:
                    kept[name] = cosine[name] > t
                    if m is not None:
                        kept[name] &= cosine[name] > best_reference[name][:, None] + m
                hit = (kept["own"] & own).any(1)
                for column, label in enumerate(("flags", "emoji", "maps")):
                    rows = torch.tensor([kind[r] == label for r in stored.tolist()])
                    counts[f][column] += torch.tensor([hit[rows].sum(), rows.sum()])
                counts[f][3] += torch.tensor([kept["neighbour"].sum(), kept["neighbour"].numel()])
                counts[f][4] += torch.tensor([kept["locality"].sum(), kept["locality"].numel()])
        for f in filters:
            rate = (counts[f][:, 0] / counts[f][:, 1].clamp_min(1)).tolist()
            label = "fixed (train-router)" if f == "fixed" else f"t {f[0]} / m {f[1]}"
            print(
                f"| {'learned' if learned else 'pca'} | {label} | {rate[0]:.1%} | {rate[1]:.1%} "
                f"| {rate[2]:.1%} | {rate[3]:.4%} | {rate[4]:.4%} |"
            )


if __name__ == "__main__":
    main()
