"""Routing stage: train LiveEdit's router against every training edit at once.

LiveEdit's end-to-end losses (:class:`~hf_liveedit.trainers.LiveEditTrainingModel`) contrast an
edit only with the other samples of its batch (8 on a CPU). At inference the hard filter must
reject all but the input's own edit among thousands, and the paper's soft score sees only the
prompt, so every kept edit of one relation gets the same weight. This stage (beyond the paper)
trains only the routing parts, both feature extractors and the vision sentinel, against a bank of
every training edit; the generator and therefore the experts' ``U``, ``V`` are left as they are:

* the frozen model's layer-``l_e`` states of each record's edit input, rephrased prompt, other
  image and locality image are computed once (:func:`collect_routing_states`), keeping only the
  image and prompt positions that routing reads;
* each step takes a batch of records; their inputs are scored against the edit-side features of
  the whole bank (refreshed without gradient every ``refresh_steps`` steps; the batch's own
  edits carry gradients), so every other training edit, including those of the same relation and
  those of the same picture, is a negative;
* losses (``sim`` as in routing; ``LSE_tau`` a smooth maximum at temperature ``tau``):
  ``rank``: cross-entropy of the own edit against every bank edit and the sentinel (edit,
  rephrase and other-image inputs); ``gate``: the sentinel must sit ``margin`` below the own edit
  and ``margin`` above the smooth maximum of the others (edit and rephrase inputs: the same
  picture, where the decision is possible; another rendering passes only if it is recognised);
  ``locality``: the sentinel ``margin`` above every edit for locality images; ``soft``: the own
  edit's soft score (:func:`hf_liveedit.routing.routing_scores`, with the config's
  ``soft_routing_visual_weight``) must win the softmax over the bank and have a high sigmoid.

With the image-key filter (``hard_routing="image_key"``), nothing of the hard filter trains and
every edit of another picture is filtered out, so the stage trains only the soft score, over
each input's *kept set* (the edits whose picture passes the filter, computed once from the
fixed keys; their features are recomputed with gradients at every step, no stale bank):
:func:`kept_set_losses`, ``soft``: the own edit must win the softmax over its kept set and have
a high sigmoid; ``reject``: every other kept edit (another relation of the same picture) must
have a low sigmoid, because when it is the only edit kept the softmax gives it all the weight.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hf_liveedit.config import HARD_ROUTING
from hf_liveedit.model import LiveEditModel
from hf_liveedit.modules import ImageKey, Spans
from hf_liveedit.routing import routing_scores

__all__ = [
    "ROUTING_INPUTS",
    "RoutingStageArguments",
    "RoutingStates",
    "choose_image_key_threshold",
    "collect_routing_states",
    "image_key_false_keep_rates",
    "kept_by_image_key",
    "kept_set_losses",
    "routing_diagnostics",
    "set_image_key_threshold",
    "train_routing",
    "use_image_key",
]

#: The inputs of each record the stage uses: name -> (image field, question field).
ROUTING_INPUTS = {
    "edit": ("image", "src"),
    "rephrase": ("image", "rephrase"),
    "other_image": ("image_rephrase", "src"),
    "locality": ("m_loc", "m_loc_q"),
}


@dataclass
class RoutingStageArguments:
    """Settings of :func:`train_routing`."""

    steps: int = field(
        default=600,
        metadata={"help": "Optimizer steps (0 with image_key: fit the filter, train nothing)."},
    )
    batch_size: int = field(default=32, metadata={"help": "Records per step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    margin: float = field(
        default=1.0, metadata={"help": "Margin of the gate and locality terms, in sim units."}
    )
    temperature: float = field(
        default=0.2, metadata={"help": "tau of the smooth maximum over the other edits."}
    )
    refresh_steps: int = field(
        default=20, metadata={"help": "Recompute the bank's edit-side features every N steps."}
    )
    soft_routing_visual_weight: float = field(
        default=1.0,
        metadata={
            "help": "Set on the adapter's config before training (LiveEditConfig."
            "soft_routing_visual_weight; 0 keeps the paper's prompt-only soft score)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Random seed (batches)."})
    hard_routing: str = field(
        default="sentinel",
        metadata={
            "help": "'sentinel': train the learned hard filter (extractors and sentinel); "
            "'image_key': switch the adapter to the image-key filter (LiveEditConfig."
            "hard_routing), fit the key on the training pictures, pick its threshold on "
            "held-out training entities and train only the soft score."
        },
    )
    image_key_positions: int = field(
        default=16, metadata={"help": "With image_key: LiveEditConfig.image_key_positions."}
    )
    image_key_threshold: float | None = field(
        default=None,
        metadata={
            "help": "With image_key: the cosine threshold; None picks the smallest one at which "
            "held-out neighbours and locality pictures keep an edit at most "
            "max_false_keep_rate of the time."
        },
    )
    max_false_keep_rate: float = field(
        default=0.01,
        metadata={"help": "With image_key and no threshold given: see image_key_threshold."},
    )

    def __post_init__(self) -> None:
        for name, minimum in (("steps", 0), ("batch_size", 1), ("refresh_steps", 1)):
            if getattr(self, name) < minimum:
                raise ValueError(f"{name} must be at least {minimum}, got {getattr(self, name)}")
        if self.hard_routing not in HARD_ROUTING:
            raise ValueError(
                f"hard_routing must be one of {', '.join(HARD_ROUTING)}, got {self.hard_routing!r}"
            )
        if self.image_key_positions < 1:
            raise ValueError(
                f"image_key_positions must be at least 1, got {self.image_key_positions}"
            )
        if not 0 <= self.max_false_keep_rate <= 1:
            raise ValueError(
                f"max_false_keep_rate must be in [0, 1], got {self.max_false_keep_rate}"
            )
        if self.image_key_threshold is not None and not -1 <= self.image_key_threshold < 1:
            raise ValueError(
                f"image_key_threshold must be a cosine in [-1, 1), got {self.image_key_threshold}"
            )
        for name in ("learning_rate", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass
class RoutingStates:
    """Layer-``l_e`` states of many inputs, packed as image tokens then prompt tokens.

    Routing reads only these positions (and cross-attention ignores order), so a packed row
    gives exactly the features of the full sequence.

    Attributes:
        hidden: ``[N, L, d]`` float16 states.
        image: ``[N, L]`` bool, image positions.
        prompt: ``[N, L]`` bool, prompt positions.
    """

    hidden: torch.Tensor
    image: torch.Tensor
    prompt: torch.Tensor

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def select(self, index: Sequence[int]) -> RoutingStates:
        """The rows ``index`` only."""
        index = torch.as_tensor(list(index), dtype=torch.long)
        return RoutingStates(self.hidden[index], self.image[index], self.prompt[index])

    def batch(self, index: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, Spans]:
        """Rows ``index`` as ``(hidden in dtype, spans)``."""
        image, prompt = self.image[index], self.prompt[index]
        return self.hidden[index].to(dtype), Spans(image, prompt, torch.zeros_like(image))


@torch.no_grad()
def collect_routing_states(
    liveedit: LiveEditModel,
    images: Sequence,
    prompts: Sequence[str],
    batch_size: int = 16,
    desc: str = "routing states",
) -> RoutingStates:
    """Run the frozen model up to layer ``l_e`` on each (image, prompt) and pack what routing reads.

    Args:
        liveedit: The model (its adapter is not applied: the states are the frozen model's).
        images: One image per input (PIL images or paths).
        prompts: One prompt per input, as edits are given.
        batch_size: Inputs per forward.
        desc: Progress bar label.

    Returns:
        The packed states, on the CPU.
    """
    rows = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc):
        inputs = liveedit.build_inputs(
            list(images[start : start + batch_size]), list(prompts[start : start + batch_size])
        )
        hidden = liveedit.hidden_states_at_edit_layer(inputs)
        spans = liveedit.backbone.spans(inputs["input_ids"], inputs.get("attention_mask"))
        for row in range(hidden.shape[0]):
            image, prompt = hidden[row, spans.image[row]], hidden[row, spans.prompt[row]]
            rows.append((image.half().cpu(), prompt.half().cpu()))
    length = max(len(image) + len(prompt) for image, prompt in rows)
    size = rows[0][0].shape[-1] if rows else 0
    packed = torch.zeros(len(rows), length, size, dtype=torch.float16)
    image_mask = torch.zeros(len(rows), length, dtype=torch.bool)
    prompt_mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for row, (image, prompt) in enumerate(rows):
        packed[row, : len(image)] = image
        packed[row, len(image) : len(image) + len(prompt)] = prompt
        image_mask[row, : len(image)] = True
        prompt_mask[row, len(image) : len(image) + len(prompt)] = True
    return RoutingStates(packed, image_mask, prompt_mask)


def _edit_features(liveedit: LiveEditModel, states: RoutingStates, index: torch.Tensor):
    """Edit-side ``(phi_e, psi_e)`` of rows ``index`` (as ``make_experts`` computes them)."""
    modules = liveedit.liveedit_modules
    return modules.edit_features(*states.batch(index, modules.sentinel.dtype))


@torch.no_grad()
def _bank_features(liveedit: LiveEditModel, states: RoutingStates, chunk: int = 256):
    parts = [
        _edit_features(liveedit, states, torch.arange(start, min(start + chunk, len(states))))
        for start in range(0, len(states), chunk)
    ]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _smooth_max(values: torch.Tensor, exclude: torch.Tensor | None, tau: float) -> torch.Tensor:
    """``tau * logsumexp(values / tau)`` per row, leaving out ``exclude`` (a column per row)."""
    if exclude is not None:
        values = values.scatter(1, exclude[:, None], float("-inf"))
    return tau * torch.logsumexp(values / tau, dim=1)


def routing_losses(
    liveedit: LiveEditModel,
    inputs: dict[str, RoutingStates],
    records: torch.Tensor,
    bank_phi: torch.Tensor,
    bank_psi: torch.Tensor,
    args: RoutingStageArguments,
) -> dict[str, torch.Tensor]:
    """The stage's loss terms for one batch of records (see the module docstring).

    Args:
        liveedit: The model whose routing parts train.
        inputs: The packed states of every record for each of :data:`ROUTING_INPUTS`.
        records: ``[B]`` record indices of the batch (rows of every ``inputs`` entry).
        bank_phi, bank_psi: ``[N, k, d_m]`` edit-side features of every record (no gradient).
        args: Margin, temperature.

    Returns:
        ``{"rank", "gate", "locality", "soft"}``, scalars.
    """
    modules = liveedit.liveedit_modules
    dtype = modules.sentinel.dtype
    own_phi, own_psi = _edit_features(liveedit, inputs["edit"], records)
    phi_all = bank_phi.to(dtype).index_put((records,), own_phi)
    psi_all = bank_psi.to(dtype).index_put((records,), own_psi)

    def scores(name: str):
        hidden, spans = inputs[name].batch(records, dtype)
        features = modules.input_features(hidden, spans)
        return routing_scores(
            features.phi,
            features.psi,
            features.phi_sentinel,
            phi_all,
            psi_all,
            modules.soft_routing_visual_weight,
        )

    rank, gate, soft = [], [], []
    for name in ("edit", "rephrase", "other_image"):
        visual, threshold, soft_scores = scores(name)
        own_soft = soft_scores.gather(1, records[:, None]).squeeze(1)
        soft.append(
            F.cross_entropy(soft_scores, records, reduction="none") - F.logsigmoid(own_soft)
        )
        own_visual = visual.gather(1, records[:, None]).squeeze(1)
        candidates = torch.cat([visual, threshold[:, None]], dim=1)
        rank.append(F.cross_entropy(candidates, records, reduction="none"))
        if name != "other_image":
            others = _smooth_max(visual, records, args.temperature)
            gate.append(
                F.softplus(args.margin - (own_visual - threshold))
                + F.softplus(args.margin - (threshold - others))
            )
    visual, threshold, _ = scores("locality")
    locality = F.softplus(args.margin - (threshold - _smooth_max(visual, None, args.temperature)))
    return {
        "rank": torch.cat(rank).mean(),
        "gate": torch.cat(gate).mean(),
        "locality": locality.mean(),
        "soft": torch.cat(soft).mean(),
    }


@torch.no_grad()
def _unit_image_keys(liveedit: LiveEditModel, states: RoutingStates) -> torch.Tensor:
    """``[N, k * d_m]`` unit-norm image keys of every row (their dot products are cosines)."""
    modules = liveedit.liveedit_modules
    parts = []
    for chunk in torch.arange(len(states)).split(256):
        hidden, spans = states.batch(chunk, modules.sentinel.dtype)
        parts.append(modules.image_key(hidden, spans.image).flatten(1).float())
    return F.normalize(torch.cat(parts), dim=-1)


@torch.no_grad()
def kept_by_image_key(liveedit: LiveEditModel, pictures: RoutingStates) -> torch.Tensor:
    """``[N, N]`` bool: whether row ``i``'s picture keeps row ``j``'s edit (image-key filter)."""
    keys = _unit_image_keys(liveedit, pictures)
    threshold = liveedit.liveedit_modules.image_key_threshold
    return (keys @ keys.T > threshold) | torch.eye(len(keys), dtype=torch.bool)


def kept_set_losses(
    liveedit: LiveEditModel,
    inputs: dict[str, RoutingStates],
    records: torch.Tensor,
    kept: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The soft score's terms over each input's kept set (image-key filter; module docstring).

    Args:
        liveedit: The model whose prompt features train.
        inputs: Packed states of every record for each of :data:`ROUTING_INPUTS`.
        records: ``[B]`` record indices of the batch.
        kept: ``[N, N]`` from :func:`kept_by_image_key` over ``inputs["edit"]``.

    Returns:
        ``{"soft", "reject"}``, scalars (``reject`` is 0 when no input keeps another edit).
    """
    modules = liveedit.liveedit_modules
    dtype = modules.sentinel.dtype
    rows = kept[records]  # [B, N]
    candidates = rows.any(dim=0).nonzero().squeeze(1)  # every edit some input keeps, sorted
    phi, psi = _edit_features(liveedit, inputs["edit"], candidates)  # with gradients
    mask = rows[:, candidates]  # [B, C]
    own = torch.searchsorted(candidates, records)
    batch = torch.arange(len(records))
    others = mask.clone()
    others[batch, own] = False
    soft, reject = [], []
    for name in ("edit", "rephrase"):  # the inputs whose own edit the filter keeps
        hidden, spans = inputs[name].batch(records, dtype)
        features = modules.input_features(hidden, spans)
        _, _, scores = routing_scores(
            features.phi,
            features.psi,
            features.phi_sentinel,
            phi,
            psi,
            modules.soft_routing_visual_weight,
        )
        logits = scores.masked_fill(~mask, float("-inf"))
        soft.append(
            F.cross_entropy(logits, own, reduction="none") - F.logsigmoid(scores[batch, own])
        )
        reject.append(F.softplus(scores[others]))
    rejected = torch.cat(reject)
    return {
        "soft": torch.cat(soft).mean(),
        "reject": rejected.mean() if len(rejected) else rejected.new_zeros(()),
    }


def use_image_key(liveedit: LiveEditModel, pictures: RoutingStates, positions: int) -> None:
    """Switch ``liveedit`` to the image-key hard filter, fitted on ``pictures``.

    Args:
        liveedit: The model (its config and modules change; experts it stores keep their keys,
            so call this before storing edits).
        pictures: Layer-``l_e`` states of training edit inputs.
        positions: ``G`` (``LiveEditConfig.image_key_positions``).
    """
    config, modules = liveedit.liveedit_config, liveedit.liveedit_modules
    key = ImageKey(pictures.hidden.shape[-1], positions, config.num_queries, config.module_dim)
    key.fit(pictures.hidden, pictures.image)
    modules.image_key = key.to(device=modules.sentinel.device, dtype=modules.sentinel.dtype)
    config.hard_routing, config.image_key_positions = "image_key", positions


@torch.no_grad()
def image_key_false_keep_rates(
    liveedit: LiveEditModel,
    bank: RoutingStates,
    probes: dict[str, RoutingStates],
    thresholds: Sequence[float],
) -> dict[str, list[float]]:
    """How often inputs that should keep nothing keep some edit of ``bank``, per threshold.

    Args:
        liveedit: A model with the image-key filter.
        bank: Edit inputs of the stored edits.
        probes: Name -> inputs that must keep nothing (other entities' pictures, unrelated
            pictures).
        thresholds: Cosine thresholds to evaluate.

    Returns:
        Name -> the fraction of that name's probes keeping an edit, one per threshold.
    """
    bank_keys = _unit_image_keys(liveedit, bank)
    rates = {}
    for name, states in probes.items():
        best = (_unit_image_keys(liveedit, states) @ bank_keys.T).amax(dim=1)
        rates[name] = [(best > t).float().mean().item() for t in thresholds]
    return rates


def choose_image_key_threshold(
    liveedit: LiveEditModel,
    bank: RoutingStates,
    probes: dict[str, RoutingStates],
    max_rate: float,
) -> tuple[float, dict[str, list[float]]]:
    """The smallest threshold on a 0.01 grid in [0.5, 0.99] at which every probe kind keeps an
    edit at most ``max_rate`` of the time (0.99 if none), set on the model's config and modules.

    Returns:
        ``(threshold, {"threshold": grid, <probe>: rates})``.
    """
    grid = [round(0.5 + 0.01 * i, 2) for i in range(50)]
    rates = image_key_false_keep_rates(liveedit, bank, probes, grid)
    chosen = next(
        (t for i, t in enumerate(grid) if all(r[i] <= max_rate for r in rates.values())), grid[-1]
    )
    set_image_key_threshold(liveedit, chosen)
    return chosen, {"threshold": grid, **rates}


def set_image_key_threshold(liveedit: LiveEditModel, threshold: float) -> None:
    """Set ``LiveEditConfig.image_key_threshold`` on the model's config and its modules."""
    liveedit.liveedit_config.image_key_threshold = threshold
    liveedit.liveedit_modules.image_key_threshold = threshold


def train_routing(
    liveedit: LiveEditModel,
    inputs: dict[str, RoutingStates],
    args: RoutingStageArguments,
    train_records: Sequence[int] | None = None,
) -> list[dict[str, float]]:
    """Train the extractors and the sentinel of ``liveedit`` against the bank of all records.

    Sets ``liveedit.liveedit_config.soft_routing_visual_weight`` (and the modules') to
    ``args.soft_routing_visual_weight`` first. Only routing parameters change. With the
    image-key filter, only the soft score trains, over each input's kept set
    (:func:`kept_set_losses`).

    Args:
        liveedit: The model; its generator stays as it is.
        inputs: Packed states of every record for each of :data:`ROUTING_INPUTS` (same rows).
        args: The stage's settings.
        train_records: Rows to train on (default: all); the bank always holds every row, so
            rows left out serve as a validation set of unseen edits.

    Returns:
        One log entry per 10 steps: the step and the mean of each term.
    """
    modules = liveedit.liveedit_modules
    liveedit.liveedit_config.soft_routing_visual_weight = args.soft_routing_visual_weight
    modules.soft_routing_visual_weight = args.soft_routing_visual_weight
    parameters = [
        *modules.edit_extractor.parameters(),
        *modules.input_extractor.parameters(),
        modules.sentinel,
    ]
    trained = {id(p) for p in parameters}
    frozen = [p for p in modules.parameters() if id(p) not in trained]
    for p in frozen:
        p.requires_grad_(False)
    for p in parameters:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate, weight_decay=0.0)
    warmup = max(1, args.steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    pool = list(train_records) if train_records is not None else list(range(len(inputs["edit"])))
    # image-key filter: the kept sets are fixed (the keys do not train), no bank to refresh
    kept = kept_by_image_key(liveedit, inputs["edit"]) if modules.image_key is not None else None
    rng = random.Random(args.seed)
    order: list[int] = []
    logs, sums = [], {}
    modules.train()
    try:
        for step in (bar := tqdm(range(args.steps), desc="routing stage")):
            if kept is None and step % args.refresh_steps == 0:
                bank_phi, bank_psi = _bank_features(liveedit, inputs["edit"])
            if len(order) < args.batch_size:
                order += rng.sample(pool, len(pool))
            batch, order = order[: args.batch_size], order[args.batch_size :]
            if kept is None:
                terms = routing_losses(
                    liveedit, inputs, torch.tensor(batch), bank_phi, bank_psi, args
                )
            else:
                terms = kept_set_losses(liveedit, inputs, torch.tensor(batch), kept)
            loss = sum(terms.values())
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.item()
            if (step + 1) % 10 == 0 or step + 1 == args.steps:
                count = 10 if (step + 1) % 10 == 0 else (step + 1) % 10
                logs.append({"step": step + 1, **{k: round(v / count, 5) for k, v in sums.items()}})
                bar.set_postfix({k: f"{v:.3f}" for k, v in logs[-1].items() if k != "step"})
                sums = {}
    finally:
        modules.eval()
        for p in [*parameters, *frozen]:
            p.requires_grad_(False)
    return logs


@torch.no_grad()
def routing_diagnostics(
    liveedit: LiveEditModel,
    inputs: dict[str, RoutingStates],
    edited: Sequence[int],
    unedited: Sequence[int] = (),
    same_picture: Sequence[int] = (),
) -> dict[str, float]:
    """How inference routing treats inputs when the edits of rows ``edited`` are stored.

    Uses :func:`hf_liveedit.routing.compute_routing` with the edit-side features of the rows
    ``edited`` of ``inputs["edit"]`` as the repository.

    Args:
        liveedit: The model.
        inputs: Packed states of every row for each of :data:`ROUTING_INPUTS`.
        edited: Rows whose edits are stored; their inputs are scored against their own edit.
        unedited: Rows whose edits are not stored; their edit inputs (the same question on
            another entity's picture) are neighbours, which should keep nothing.
        same_picture: Rows whose edits are not stored but whose picture carries a stored edit
            (another relation of the same entity): their edit inputs should keep nothing either.

    Returns:
        ``bank`` (stored edits); per input kind of :data:`ROUTING_INPUTS` but locality:
        ``<kind>_own_kept`` (fraction of inputs that keep their own edit), ``<kind>_kept`` (mean
        edits kept), ``<kind>_own_weight`` (mean weight of the own edit); ``locality_any_kept``,
        ``locality_kept``; with ``unedited``: ``neighbour_any_kept``, ``neighbour_kept``,
        ``neighbour_weight`` (mean total weight the neighbours give to stored edits); the same
        three with ``same_picture``.
    """
    from hf_liveedit.routing import compute_routing

    modules = liveedit.liveedit_modules
    dtype = modules.sentinel.dtype
    bank_phi, bank_psi = _bank_features(liveedit, inputs["edit"].select(edited))

    def route(name: str, rows: Sequence[int]) -> torch.Tensor:
        weights = []
        for chunk in torch.as_tensor(list(rows), dtype=torch.long).split(64):
            hidden, spans = inputs[name].batch(chunk, dtype)
            features = modules.input_features(hidden, spans)
            weights.append(
                compute_routing(
                    features.phi,
                    features.psi,
                    features.phi_sentinel,
                    bank_phi,
                    bank_psi,
                    features.routable,
                    modules.soft_routing_visual_weight,
                )
            )
        return torch.cat(weights)

    result: dict[str, float] = {"bank": float(len(edited))}
    own = torch.arange(len(edited))
    for name in ROUTING_INPUTS:
        weights = route(name, edited)
        kept = weights > 0
        if name == "locality":
            result["locality_any_kept"] = kept.any(dim=1).float().mean().item()
            result["locality_kept"] = kept.sum(dim=1).float().mean().item()
            continue
        own_weight = weights.gather(1, own[:, None]).squeeze(1)
        result[f"{name}_own_kept"] = (own_weight > 0).float().mean().item()
        result[f"{name}_kept"] = kept.sum(dim=1).float().mean().item()
        result[f"{name}_own_weight"] = own_weight.mean().item()
    for prefix, rows in (("neighbour", unedited), ("same_picture", same_picture)):
        if len(rows):
            weights = route("edit", rows)
            result[f"{prefix}_any_kept"] = (weights > 0).any(dim=1).float().mean().item()
            result[f"{prefix}_kept"] = (weights > 0).sum(dim=1).float().mean().item()
            result[f"{prefix}_weight"] = weights.sum(dim=1).mean().item()
    return {k: round(v, 4) for k, v in result.items()}
