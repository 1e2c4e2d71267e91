"""The method's wiring against independent references: ties, routability, losses, fusion.

Each expectation here is computed from the equations of ``docs/liveedit-method.md`` written out
by hand (float64, one term at a time), never by calling the function under test:

* hard routing keeps an expert only if its similarity is *strictly* above the sentinel's, in
  the PyTorch reference and in the Triton kernel (exact ties, on exactly representable values);
* text-only inputs are never routed unless ``edit_text_only_inputs``, even when the hard filter
  would keep an expert for them;
* the training routing losses (``l_hr`` for generality and locality inputs, ``l_sr1``,
  ``l_sr2``) and the trainer's total loss;
* the edited model's output equals ``h + sum_e w_e ReLU(LN(h) U_e^T) V_e`` applied by hand at
  layer ``l_e`` of the plain base model;
* ``disable_adapter`` restores the edits when its block raises.
"""

from __future__ import annotations

import importlib
import math
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import PROMPT, TARGET, make_liveedit, rig_routing
from hf_liveedit.kernels import compute_routing as dispatch_compute_routing
from hf_liveedit.trainers import (
    LiveEditDataCollator,
    LiveEditTrainer,
    LiveEditTrainingArguments,
    LiveEditTrainingModel,
)
from test_trainer import make_records

from hf_liveedit import routing
from hf_liveedit.testing.tiny_models import tiny_image, tiny_llava

KERNEL_MODULES = ("hf_liveedit.kernels.routing_triton", "hf_liveedit.kernels.fusion_triton")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def kernels():
    """The Triton kernel modules, interpreted on CPU when there is no GPU (as test_kernels.py)."""
    with pytest.MonkeyPatch.context() as patch:
        if not torch.cuda.is_available():
            # `triton.jit` picks interpreter or compiler when a kernel is defined: reload.
            patch.setenv("TRITON_INTERPRET", "1")
            for name in KERNEL_MODULES:
                if name in sys.modules:
                    importlib.reload(sys.modules[name])
        routing_triton, fusion_triton = (importlib.import_module(n) for n in KERNEL_MODULES)
        yield SimpleNamespace(routing=routing_triton, fusion=fusion_triton)


# --- literal equations (float64, one term at a time) -------------------------------------------


def literal_sim(a: torch.Tensor, b: torch.Tensor) -> float:
    """``sim(a, b) = (1/k) sum_j <a_j, b_j> / sqrt(d_m)`` for ``a, b`` of shape ``[k, d_m]``."""
    k, d_m = a.shape
    total = sum(float(a[j].double() @ b[j].double()) for j in range(k))
    return total / (k * math.sqrt(d_m))


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def literal_nce(positive: float, candidates: list[float]) -> float:
    """``f_nce = -log(exp(s+) / sum_j exp(s_j))`` at temperature 1."""
    top = max(candidates)
    return -(positive - top - math.log(sum(math.exp(s - top) for s in candidates)))


def literal_weights(phi_in, psi_in, phi_sentinel, phi_experts, psi_experts, routable):
    """Hard routing ``sim(phi, phi_e) > sim(phi, phi_Theta)``, then ``sigmoid(s) softmax_kept(s)``."""
    weights = torch.zeros(phi_in.shape[0], phi_experts.shape[0], dtype=torch.float64)
    for b in range(phi_in.shape[0]):
        threshold = literal_sim(phi_in[b], phi_sentinel[b])
        kept = [
            e
            for e in range(phi_experts.shape[0])
            if bool(routable[b]) and literal_sim(phi_in[b], phi_experts[e]) > threshold
        ]
        scores = {e: literal_sim(psi_in[b], psi_experts[e]) for e in kept}
        total = sum(math.exp(s) for s in scores.values())
        for e, s in scores.items():
            weights[b, e] = 1 / (1 + math.exp(-s)) * math.exp(s) / total
    return weights


# --- hard routing: exact ties with the sentinel are filtered ------------------------------------


def tie_case() -> dict[str, torch.Tensor]:
    """Integer features with k = 2, d_m = 4: every similarity is an exact multiple of 1/4.

    Input 0: threshold sim(phi, phi_Theta) = 1/4. Expert 0 ties it with the sentinel's own
    vector, expert 3 ties it with another vector, expert 1 is above it (1/2), expert 2 below
    (0). Input 1 has phi = phi_Theta = 0: every expert ties at 0 (what a text-only input with a
    zero sentinel looks like). Input 2 would keep expert 1 but is not routable.
    """
    e0, e1 = [[1.0, 0, 0, 0], [0, 0, 0, 0]], [[1.0, 0, 0, 0], [0, 1.0, 0, 0]]
    phi_in = torch.tensor([e1, [[0.0] * 4, [0.0] * 4], e1])
    phi_sentinel = torch.tensor([e0, [[0.0] * 4, [0.0] * 4], e0])
    phi_experts = torch.tensor([e0, e1, [[0.0] * 4, [0.0] * 4], [[0, 0, 1.0, 0], [0, 1.0, 0, 0]]])
    psi_in = torch.tensor([[[1.0, 2, 0, 0], [0, 0, 1, 0]]] * 3)
    psi_experts = torch.tensor(
        [
            [[1.0, 0, 0, 0], [0, 0, 0, 0]],
            [[0.0, 1, 0, 0], [0, 0, 3, 0]],
            [[2.0, 0, 0, 0], [0, 0, 0, 0]],
            [[0.0, 0, 0, 0], [0, 0, 1, 0]],
        ]
    )
    routable = torch.tensor([True, True, False])
    return dict(
        phi_in=phi_in,
        psi_in=psi_in,
        phi_sentinel=phi_sentinel,
        phi_experts=phi_experts,
        psi_experts=psi_experts,
        routable=routable,
    )


def expected_tie_weights() -> torch.Tensor:
    """Only expert 1 is kept, and only by input 0: its weight is sigmoid(s_1) with s_1 = 5/4."""
    expected = torch.zeros(3, 4, dtype=torch.float64)
    s_1 = (2 * 1 + 1 * 3) / (2 * math.sqrt(4))  # <psi_0, psi_e1> summed over both queries
    expected[0, 1] = 1 / (1 + math.exp(-s_1))
    return expected


def test_literal_weights_agree_with_the_tie_case_by_hand():
    case = tie_case()
    torch.testing.assert_close(literal_weights(**case), expected_tie_weights())


def test_reference_hard_filter_drops_exact_ties_with_the_sentinel():
    weights = routing.compute_routing(**tie_case())
    torch.testing.assert_close(weights.double(), expected_tie_weights(), rtol=1e-6, atol=0)
    assert weights[0, 0] == 0 and weights[0, 3] == 0  # exact ties: not kept
    assert torch.equal(weights[1:], torch.zeros(2, 4))


def test_triton_hard_filter_drops_exact_ties_with_the_sentinel(kernels):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    case = {name: value.to(device) for name, value in tie_case().items()}
    weights = kernels.routing.compute_routing_triton(**case).cpu()
    torch.testing.assert_close(weights.double(), expected_tie_weights(), rtol=1e-6, atol=0)
    assert weights[0, 0] == 0 and weights[0, 3] == 0
    assert torch.equal(weights[1:], torch.zeros(2, 4))
    dispatched = dispatch_compute_routing(*case.values(), backend="triton").cpu()
    assert torch.equal(dispatched, weights)


# --- text-only inputs: the routable flag, not the filter, keeps them unedited -----------------


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def plain_base_logits(inputs) -> torch.Tensor:
    """Logits of a freshly built tiny LLaVA without any LiveEdit hook (same seeded weights)."""
    base, _ = tiny_llava()
    return logits(base, inputs)


@pytest.mark.parametrize("edit_text_only_inputs", [False, True])
def test_text_only_inputs_are_routed_only_when_configured(image, edit_text_only_inputs):
    liveedit = make_liveedit(
        "llava", expert_scale=50.0, edit_text_only_inputs=edit_text_only_inputs
    )
    liveedit.add_edit(image, PROMPT, TARGET)
    text_only = liveedit.build_inputs(None, PROMPT)
    with_image = liveedit.build_inputs(image, PROMPT)
    modules, repository = liveedit.liveedit_modules, liveedit.repository

    # Input-side features of the text-only input; put the stored expert far above its threshold:
    # phi_e = 3 phi_Theta gives sim(phi, phi_e) = 3 sim(phi_Theta, phi_Theta) > the threshold.
    with torch.no_grad():
        hidden = liveedit.hidden_states_at_edit_layer(text_only)
        spans = liveedit.backbone.spans(text_only["input_ids"], text_only["attention_mask"])
        features = modules.input_features(hidden, spans)
        repository.phi[0] = 3 * features.phi_sentinel[0]
        repository.psi[0] = features.psi[0]
    assert (
        literal_sim(features.phi[0], repository.phi[0])
        > literal_sim(features.phi[0], features.phi_sentinel[0]) + 1e-3
    ), "the hard filter must keep the expert for this input"
    routable = literal_weights(
        features.phi,
        features.psi,
        features.phi_sentinel,
        repository.phi,
        repository.psi,
        torch.tensor([True]),
    )
    assert routable[0, 0] > 0.1

    assert features.routable.tolist() == [edit_text_only_inputs]
    with torch.no_grad():
        image_spans = liveedit.backbone.spans(with_image["input_ids"], with_image["attention_mask"])
        image_hidden = liveedit.hidden_states_at_edit_layer(with_image)
        assert modules.input_features(image_hidden, image_spans).routable.tolist() == [True]

    with liveedit.record_routing() as routing:
        edited = logits(liveedit, text_only)
    if edit_text_only_inputs:
        torch.testing.assert_close(routing[-1].double(), routable, rtol=1e-4, atol=1e-6)
        assert (edited - plain_base_logits(text_only)).abs().max() > 1e-2
    else:
        assert torch.equal(routing[-1], torch.zeros(1, 1))
        assert torch.equal(edited, plain_base_logits(text_only))


# --- training losses against the method's formulas ---------------------------------------------


@pytest.fixture(scope="module")
def training_batch():
    """A 3-record training batch, its loss terms, and the layer-l_e features computed apart."""
    liveedit = make_liveedit("llava", expert_scale=5.0, edit_text_only_inputs=True)
    torch.manual_seed(0)
    batch = LiveEditDataCollator(liveedit)(make_records(3))
    with torch.no_grad():
        terms = LiveEditTrainingModel(liveedit)(**batch)
        # Independently: the frozen layer-l_e states of the same rows, and the trainable modules
        # applied to them directly.
        edited = batch["edited"]
        hidden = liveedit.hidden_states_at_edit_layer(edited)
        spans = liveedit.backbone.spans(
            edited["input_ids"], edited["attention_mask"], edited["labels"]
        )
        experts = liveedit.liveedit_modules.make_experts(hidden, spans)
        features = liveedit.liveedit_modules.input_features(hidden, spans)
    return SimpleNamespace(
        liveedit=liveedit, batch=batch, terms=terms, experts=experts, features=features
    )


def test_hard_routing_losses_pull_to_the_own_edit_and_push_locality_below_the_sentinel(
    training_batch,
):
    batch, experts, features = training_batch.batch, training_batch.experts, training_batch.features
    pair_input, pair_edit = batch["pair_input"].tolist(), batch["pair_edit"].tolist()
    loc_rows = (batch["row_kind"] == 3).nonzero().squeeze(1).tolist()
    assert len(pair_input) == 3 and len(loc_rows) == 3

    def scores(row: int) -> tuple[list[float], float]:
        """sim(phi_i, phi_e) for every batch edit, and sim(phi_i, phi_Theta) of the row."""
        phi_i = features.phi[row]
        to_edits = [literal_sim(phi_i, experts.phi[edit]) for edit in pair_edit]
        return to_edits, literal_sim(phi_i, features.phi_sentinel[row])

    hr_edit = []
    for own, row in enumerate(pair_input):
        to_edits, to_sentinel = scores(row)
        hr_edit.append(literal_nce(to_edits[own], [*to_edits, to_sentinel]))
    hr_loc = []
    for row in loc_rows:
        to_edits, to_sentinel = scores(row)
        hr_loc.append(literal_nce(to_sentinel, [*to_edits, to_sentinel]))
        # the data is not degenerate: the sentinel and the first edit score differently
        assert abs(to_sentinel - to_edits[0]) > 1e-3
    terms = training_batch.terms
    torch.testing.assert_close(terms["hr_edit"].double(), torch.tensor(sum(hr_edit) / 3).double())
    torch.testing.assert_close(terms["hr_loc"].double(), torch.tensor(sum(hr_loc) / 3).double())


def test_soft_routing_losses_use_the_own_expert_and_a_different_negative(training_batch):
    batch, experts, features = training_batch.batch, training_batch.experts, training_batch.features
    pair_input, pair_edit = batch["pair_input"].tolist(), batch["pair_edit"].tolist()
    negative = batch["negative_record"].tolist()
    assert all(other != own for own, other in enumerate(negative))
    loc_rows = (batch["row_kind"] == 3).nonzero().squeeze(1).tolist()

    sr1, sr2 = [], []
    for own, row in enumerate(pair_input):
        psi_i = features.psi[row]
        to_edits = [literal_sim(psi_i, experts.psi[edit]) for edit in pair_edit]
        to_loc = [literal_sim(psi_i, experts.psi[loc]) for loc in loc_rows]
        # l_sr1 = -log sigmoid(s_own) - log(1 - sigmoid(s_other)); 1 - sigmoid(x) = sigmoid(-x)
        sr1.append(-log_sigmoid(to_edits[own]) - log_sigmoid(-to_edits[negative[own]]))
        assert abs(to_edits[own] - to_edits[negative[own]]) > 1e-3
        # l_sr2 = f_nce(psi_i, psi_e(own), {psi_e(generality)} u {psi_e(locality)})
        sr2.append(literal_nce(to_edits[own], [*to_edits, *to_loc]))
    terms = training_batch.terms
    torch.testing.assert_close(terms["sr1"].double(), torch.tensor(sum(sr1) / 3).double())
    torch.testing.assert_close(terms["sr2"].double(), torch.tensor(sum(sr2) / 3).double())


def test_total_loss_is_the_weighted_sum_of_every_term(training_batch, tmp_path):
    liveedit, batch = training_batch.liveedit, training_batch.batch
    args = LiveEditTrainingArguments(
        output_dir=str(tmp_path),
        report_to=[],
        rel_weight=1.5,
        gen_weight=0.5,
        loc_weight=7.0,
        hard_routing_weight=3.0,
        soft_routing_weight=0.25,
    )
    trainer = LiveEditTrainer(liveedit, args=args)
    with torch.no_grad():
        loss, terms = trainer.compute_loss(trainer.model, batch, return_outputs=True)
    for term, value in terms.items():
        assert abs(float(value)) > 1e-6, f"{term} is 0 in this batch: the check would be blind"
    expected = (
        1.5 * terms["rel"]
        + 0.5 * (terms["gen_text"] + terms["gen_image"])
        + 7.0 * (terms["loc_image"] + terms["loc_text"])
        + 3.0 * (terms["hr_edit"] + terms["hr_loc"])
        + 0.25 * (terms["sr1"] + terms["sr2"])
    )
    torch.testing.assert_close(loss, expected)
    # the same batch through the plain training model gives the same terms
    for term, value in training_batch.terms.items():
        torch.testing.assert_close(terms[term], value)


# --- fusion: the edited output equals the equation applied by hand at layer l_e ------------


def test_edited_output_equals_the_fusion_equation_applied_at_layer_l_e(image, other_image):
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.add_edits(
        [image, other_image, tiny_image(5)],
        [PROMPT, "Name it.", "What is it?"],
        [TARGET, "Paris", "a cat"],
    )
    inputs = liveedit.build_inputs([image, other_image], [PROMPT, "Name it."])
    layer_index = liveedit.liveedit_config.edit_layer
    layer = liveedit.base_model.model.language_model.layers[layer_index]
    modules, repository = liveedit.liveedit_modules, liveedit.repository

    def run_with(edit):
        """The base model (adapter off) with layer l_e's output ``h`` replaced by ``edit(h)``."""
        seen = {}

        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            seen["h"] = hidden.detach().clone()
            new = edit(hidden)
            return (new, *output[1:]) if isinstance(output, tuple) else new

        handle = layer.register_forward_hook(hook)
        try:
            with liveedit.disable_adapter(), torch.no_grad():
                out = liveedit.base_model(**inputs).logits
        finally:
            handle.remove()
        return out, seen["h"]

    base_logits, h = run_with(lambda hidden: hidden)
    torch.testing.assert_close(base_logits, plain_base_logits(inputs), rtol=0, atol=0)

    # Routing features of the two inputs; make expert 1 fall below and expert 2 stay above the
    # sentinel for input 0, so the kept set is a strict subset of the repository.
    spans = liveedit.backbone.spans(inputs["input_ids"], inputs["attention_mask"])
    with torch.no_grad():
        features = modules.input_features(h, spans)
        repository.phi[1] = -repository.phi[0]
        repository.phi[2] = 0.5 * repository.phi[0] + 0.1 * repository.phi[2]
    weights = literal_weights(
        features.phi,
        features.psi,
        features.phi_sentinel,
        repository.phi,
        repository.psi,
        features.routable,
    )
    kept = (weights > 0).tolist()
    assert kept[0] == [True, False, True], kept
    assert any(kept[1])

    # h' = h + sum_e w_e ReLU(LN(h) U_e^T) V_e at every position, in float64.
    norm = modules.expert_norm
    h64 = h.double()
    mean = h64.mean(dim=-1, keepdim=True)
    var = ((h64 - mean) ** 2).mean(dim=-1, keepdim=True)
    normed = (h64 - mean) / torch.sqrt(var + norm.eps) * norm.weight.double() + norm.bias.double()
    fused = h64.clone()
    for b in range(h.shape[0]):
        for e in range(len(repository)):
            if weights[b, e] > 0:
                up, down = repository.up[e].double(), repository.down[e].double()
                fused[b] += weights[b, e] * (torch.relu(normed[b] @ up.T) @ down)
    by_hand, _ = run_with(lambda hidden: fused.to(hidden.dtype))

    with liveedit.record_routing() as routing:
        edited = logits(liveedit, inputs)
    torch.testing.assert_close(routing[-1].double(), weights, rtol=1e-4, atol=1e-6)
    assert (edited - base_logits).abs().max() > 0.1  # the edits matter at this scale
    torch.testing.assert_close(edited, by_hand, rtol=1e-4, atol=1e-4)


# --- disable_adapter is exception safe ---------------------------------------------------------


def test_disable_adapter_restores_the_edits_when_its_block_raises(image):
    liveedit = make_liveedit("llava", expert_scale=50.0)
    rig_routing(liveedit, keep=True)
    liveedit.add_edit(image, PROMPT, TARGET)
    inputs = liveedit.build_inputs(image, PROMPT)
    base = plain_base_logits(inputs)
    edited = logits(liveedit, inputs)
    assert not torch.equal(edited, base)

    with pytest.raises(RuntimeError, match="raised inside disable_adapter"):
        with liveedit.disable_adapter():
            assert torch.equal(logits(liveedit, inputs), base)
            raise RuntimeError("raised inside disable_adapter")
    assert torch.equal(logits(liveedit, inputs), edited)

    with liveedit.disable_adapter():  # nested: leaving the inner block keeps the outer one off
        with pytest.raises(KeyError):
            with liveedit.disable_adapter():
                raise KeyError("inner")
        assert torch.equal(logits(liveedit, inputs), base)
    assert torch.equal(logits(liveedit, inputs), edited)
