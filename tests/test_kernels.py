"""Routing and fusion: the PyTorch reference and the Triton kernels against the equations.

The equations are written out literally (one expert, one position at a time, float64) in
``literal_route_and_fuse``. Without a GPU the kernels run in the Triton interpreter on CPU tensors
(``TRITON_INTERPRET=1``, set by the ``kernels`` fixture for this module only, before the kernel
modules are imported); shapes are tiny because the interpreter pays per program and per op.
"""

from __future__ import annotations

import importlib
import math
import sys
from dataclasses import dataclass, replace
from types import SimpleNamespace

import pytest
import torch
from hf_liveedit.kernels import (
    BACKEND_ENV_VAR,
    compute_routing,
    fuse_experts,
    resolve_backend,
    route_and_fuse,
)

from hf_liveedit import routing

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNEL_MODULES = ("hf_liveedit.kernels.routing_triton", "hf_liveedit.kernels.fusion_triton")
EPS = 1e-5


@pytest.fixture(scope="module")
def kernels():
    """The kernel modules, interpreted on CPU when there is no GPU."""
    with pytest.MonkeyPatch.context() as patch:
        if DEVICE == "cpu":
            # `triton.jit` picks interpreter or compiler when a kernel is defined, so a kernel
            # module imported earlier without the flag must be reloaded.
            patch.setenv("TRITON_INTERPRET", "1")
            for name in KERNEL_MODULES:
                if name in sys.modules:
                    importlib.reload(sys.modules[name])
        routing_triton, fusion_triton = (importlib.import_module(n) for n in KERNEL_MODULES)
        yield SimpleNamespace(routing=routing_triton, fusion=fusion_triton)


@dataclass
class Case:
    """One batch of inputs, a repository, and the expert LayerNorm."""

    hidden: torch.Tensor
    phi_in: torch.Tensor
    psi_in: torch.Tensor
    phi_sentinel: torch.Tensor
    routable: torch.Tensor
    phi_experts: torch.Tensor
    psi_experts: torch.Tensor
    up: torch.Tensor
    down: torch.Tensor
    norm_weight: torch.Tensor
    norm_bias: torch.Tensor

    def routing_args(self) -> tuple[torch.Tensor, ...]:
        return (
            self.phi_in,
            self.psi_in,
            self.phi_sentinel,
            self.phi_experts,
            self.psi_experts,
            self.routable,
        )

    def fusion_args(self, weights: torch.Tensor) -> tuple:
        return (self.hidden, weights, self.up, self.down, self.norm_weight, self.norm_bias, EPS)

    def all_args(self) -> tuple:
        return (
            self.hidden,
            self.phi_in,
            self.psi_in,
            self.phi_sentinel,
            self.routable,
            self.phi_experts,
            self.psi_experts,
            self.up,
            self.down,
            self.norm_weight,
            self.norm_bias,
            EPS,
        )

    def to(self, dtype: torch.dtype, norm_dtype: torch.dtype = torch.float32) -> Case:
        """Features, hidden states and experts in ``dtype``; the LayerNorm in ``norm_dtype``."""
        fields = {
            name: value.to(dtype)
            for name, value in vars(self).items()
            if name not in ("routable", "norm_weight", "norm_bias")
        }
        return replace(
            self,
            norm_weight=self.norm_weight.to(norm_dtype),
            norm_bias=self.norm_bias.to(norm_dtype),
            **fields,
        )


def make_case(
    kind: str,
    num_inputs: int = 3,
    num_experts: int = 37,
    seq_len: int = 5,
    hidden_size: int = 20,
    rank: int = 3,
    k: int = 2,
    d_m: int = 24,
    seed: int = 0,
) -> Case:
    """Random case; ``kind`` sets the sentinel and routability.

    ``mixed``: random sentinel (kept sets differ between inputs); ``none``: nothing passes the
    filter; ``all``: everything passes; ``unroutable``: mixed, with the second input not
    routable; ``empty``: no experts.
    """
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * scale).to(DEVICE)

    num_experts = 0 if kind == "empty" else num_experts
    phi_in = randn(num_inputs, k, d_m)
    sentinel = {"none": 10 * phi_in, "all": -10 * phi_in}.get(kind, randn(num_inputs, k, d_m))
    routable = torch.ones(num_inputs, dtype=torch.bool, device=DEVICE)
    if kind == "unroutable":
        routable[1] = False
    expert_scale = 0.5  # big enough that the update is not lost in the hidden states
    return Case(
        hidden=randn(num_inputs, seq_len, hidden_size, scale=3.0),
        phi_in=phi_in,
        psi_in=randn(num_inputs, k, d_m),
        phi_sentinel=sentinel,
        routable=routable,
        phi_experts=randn(num_experts, k, d_m),
        psi_experts=randn(num_experts, k, d_m),
        up=randn(num_experts, rank, hidden_size, scale=expert_scale),
        down=randn(num_experts, rank, hidden_size, scale=expert_scale),
        norm_weight=1 + randn(hidden_size, scale=0.1),
        norm_bias=randn(hidden_size, scale=0.1),
    )


@dataclass
class Literal:
    """The equations evaluated expert by expert in float64."""

    weights: torch.Tensor  # [B, N]
    kept: torch.Tensor  # [B, N] bool
    fused: torch.Tensor  # [B, L, d]
    margin: float  # smallest |sim(phi_in, phi_e) - threshold|: how far from a tie the data is


def literal_route_and_fuse(case: Case, visual_weight: float = 0.0) -> Literal:
    """``kept = sim(phi, phi_e) > sim(phi, phi_sentinel)``, ``w = sigmoid(s) softmax_kept(s)``
    with ``s = sim(psi, psi_e) + visual_weight (sim(phi, phi_e) - sim(phi, phi_sentinel))``,
    ``h + sum_e w_e ReLU(LN(h) U_e^T) V_e``."""
    c = Case(
        **{
            name: value.cpu().double() if value.is_floating_point() else value.cpu()
            for name, value in vars(case).items()
        }
    )
    num_inputs, k, d_m = c.phi_in.shape
    num_experts = c.phi_experts.shape[0]

    def sim(a: torch.Tensor, b: torch.Tensor) -> float:
        return sum(float(a[j] @ b[j]) for j in range(k)) / (k * math.sqrt(d_m))

    weights = torch.zeros(num_inputs, num_experts, dtype=torch.float64)
    kept = torch.zeros(num_inputs, num_experts, dtype=torch.bool)
    margin = math.inf
    for b in range(num_inputs):
        threshold = sim(c.phi_in[b], c.phi_sentinel[b])
        for e in range(num_experts):
            hard = sim(c.phi_in[b], c.phi_experts[e])
            margin = min(margin, abs(hard - threshold))
            kept[b, e] = bool(c.routable[b]) and hard > threshold
        soft = {
            e: sim(c.psi_in[b], c.psi_experts[e])
            + visual_weight * (sim(c.phi_in[b], c.phi_experts[e]) - threshold)
            for e in range(num_experts)
            if kept[b, e]
        }
        total = sum(math.exp(s) for s in soft.values())
        for e, s in soft.items():
            weights[b, e] = 1 / (1 + math.exp(-s)) * math.exp(s) / total

    fused = c.hidden.clone()
    for b in range(num_inputs):
        for pos in range(c.hidden.shape[1]):
            h = c.hidden[b, pos]
            normed = (h - h.mean()) / torch.sqrt(h.var(unbiased=False) + EPS)
            normed = normed * c.norm_weight + c.norm_bias
            for e in range(num_experts):
                if kept[b, e]:
                    fused[b, pos] += weights[b, e] * (torch.relu(c.up[e] @ normed) @ c.down[e])
    return Literal(weights=weights, kept=kept, fused=fused, margin=margin)


def assert_matches(
    weights: torch.Tensor,
    fused: torch.Tensor,
    expected: Literal,
    case: Case,
    fused_tol: float = 1e-4,
) -> None:
    """Same kept sets, close weights, close fused states; untouched inputs bit for bit."""
    assert expected.margin > 1e-3, "random data too close to a routing tie for this test"
    assert weights.dtype == torch.float32 and fused.dtype == case.hidden.dtype
    assert torch.equal(weights.cpu() > 0, expected.kept)
    torch.testing.assert_close(weights.cpu().double(), expected.weights, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused.cpu().double(), expected.fused, rtol=fused_tol, atol=fused_tol)
    untouched = ~expected.kept.any(dim=1)
    assert torch.equal(
        fused[untouched.to(fused.device)], case.hidden[untouched.to(case.hidden.device)]
    )


KINDS = ["mixed", "none", "all", "unroutable", "empty"]


# The PyTorch reference of hf_liveedit.routing against the literal equations.


@pytest.mark.parametrize("kind", KINDS)
def test_reference_matches_literal(kind: str) -> None:
    case = make_case(kind, seed=1)
    fused, weights = routing.route_and_fuse(*case.all_args())
    assert weights.shape == (3, case.phi_experts.shape[0])
    assert_matches(weights, fused, literal_route_and_fuse(case), case)


@pytest.mark.parametrize("kind", ["mixed", "all"])
def test_reference_visual_soft_score_matches_literal(kind: str) -> None:
    case = make_case(kind, seed=1)
    fused, weights = routing.route_and_fuse(*case.all_args(), 0.7)
    expected = literal_route_and_fuse(case, visual_weight=0.7)
    assert_matches(weights, fused, expected, case)
    # the visual term changes the weights (not the kept sets) where more than one is kept
    paper = literal_route_and_fuse(case)
    assert torch.equal(expected.kept, paper.kept)
    assert not torch.allclose(expected.weights, paper.weights)


def test_reference_kept_sets_differ_across_the_batch() -> None:
    case = make_case("mixed", seed=1)
    kept = routing.compute_routing(*case.routing_args()) > 0
    sizes = kept.sum(dim=1).tolist()
    assert 0 < min(sizes) and len(set(map(tuple, kept.tolist()))) == 3
    assert sizes[0] != sizes[1] or sizes[1] != sizes[2]


def test_reference_single_expert_weight_is_its_sigmoid() -> None:
    case = make_case("all", num_experts=1, seed=2)
    weights = routing.compute_routing(*case.routing_args())
    soft = routing.similarity(case.psi_in, case.psi_experts)
    torch.testing.assert_close(weights, torch.sigmoid(soft))


# The Triton kernels against the reference and the literal equations.


@pytest.mark.parametrize("kind", KINDS)
def test_kernels_match_reference_and_literal(kernels, kind: str) -> None:
    case = make_case(kind, seed=1)
    fused, weights = route_and_fuse(*case.all_args(), backend="triton")
    ref_fused, ref_weights = routing.route_and_fuse(*case.all_args())
    assert torch.equal(weights > 0, ref_weights > 0)
    torch.testing.assert_close(weights, ref_weights, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fused, ref_fused, rtol=1e-5, atol=1e-5)
    assert_matches(weights, fused, literal_route_and_fuse(case), case)


def test_kernels_visual_soft_score_match_literal(kernels) -> None:
    case = make_case("mixed", seed=1)
    fused, weights = route_and_fuse(*case.all_args(), 0.7, backend="triton")
    assert_matches(weights, fused, literal_route_and_fuse(case, visual_weight=0.7), case)


@pytest.mark.parametrize(
    "blocks",
    [
        # 37 experts in blocks of 8 (tail of 5) over 3 splits; inputs in blocks of 2 (tail of
        # 1); 48 features in chunks of 32 (tail of 16).
        dict(block_n=8, block_f=32, block_b=2, num_splits=3, normalize_block_n=16),
        dict(block_n=16, block_f=64, block_b=4, num_splits=1),
        dict(block_n=64, block_f=16, block_b=1, num_splits=8),
    ],
)
def test_routing_kernel_tiles_and_splits(kernels, blocks: dict) -> None:
    case = make_case("mixed", seed=3)
    config = kernels.routing.RoutingBlocks(**blocks)
    weights = kernels.routing.compute_routing_triton(*case.routing_args(), blocks=config)
    expected = literal_route_and_fuse(case)
    assert torch.equal(weights.cpu() > 0, expected.kept)
    torch.testing.assert_close(weights.cpu().double(), expected.weights, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("block_l", [1, 2, 8])
def test_fusion_kernel_position_blocks(kernels, block_l: int) -> None:
    case = make_case("mixed", num_experts=9, seed=4)
    weights = routing.compute_routing(*case.routing_args())
    fused = kernels.fusion.fuse_experts_triton(
        *case.fusion_args(weights), blocks=kernels.fusion.FusionBlocks(block_l=block_l)
    )
    torch.testing.assert_close(
        fused, routing.fuse_experts(*case.fusion_args(weights)), rtol=1e-5, atol=1e-5
    )


def test_kept_experts_compaction(kernels) -> None:
    weights = torch.tensor([[0.0, 0.3, 0.0, 0.1], [0.0, 0.0, 0.0, 0.0], [0.2, 0.1, 0.4, 0.3]])
    kept = kernels.fusion.kept_experts(weights.to(DEVICE))
    assert kept.count.tolist() == [2, 0, 4]
    assert kept.index[0, :2].tolist() == [1, 3] and kept.index[2, :4].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("norm_dtype", [torch.float32, torch.float16])
def test_kernels_fp16(kernels, norm_dtype: torch.dtype) -> None:
    case = make_case("mixed", num_experts=13, seed=5).to(torch.float16, norm_dtype)
    fused, weights = route_and_fuse(*case.all_args(), backend="triton")
    ref_fused, ref_weights = routing.route_and_fuse(*case.all_args())
    assert torch.equal(weights > 0, ref_weights > 0)
    torch.testing.assert_close(weights, ref_weights, rtol=1e-5, atol=1e-7)
    # One fp16 rounding of the output (two when the reference normalises in fp16).
    torch.testing.assert_close(fused, ref_fused, rtol=2e-3, atol=2e-2)
    assert_matches(weights, fused, literal_route_and_fuse(case), case, fused_tol=2e-2)


def test_kernels_fp16_storage_with_fp32_inputs(kernels) -> None:
    case = make_case("mixed", num_experts=13, seed=6)
    half = case.to(torch.float16)
    case = replace(
        case, phi_experts=half.phi_experts, psi_experts=half.psi_experts, up=half.up, down=half.down
    )
    fused, weights = route_and_fuse(*case.all_args(), backend="triton")
    assert_matches(weights, fused, literal_route_and_fuse(case), case)


@pytest.mark.skipif(
    DEVICE != "cuda",
    reason="bf16 arithmetic is wrong in the Triton interpreter, so bf16 is only checked on a GPU",
)
def test_kernels_bf16(kernels) -> None:
    case = make_case("mixed", num_experts=13, seed=7).to(torch.bfloat16)
    fused, weights = route_and_fuse(*case.all_args(), backend="triton")
    ref_fused, ref_weights = routing.route_and_fuse(*case.all_args())
    assert torch.equal(weights > 0, ref_weights > 0)
    torch.testing.assert_close(weights, ref_weights, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fused, ref_fused, rtol=2e-2, atol=1e-1)
    assert_matches(weights, fused, literal_route_and_fuse(case), case, fused_tol=1e-1)


def test_decode_step_reuses_prefill_weights(kernels) -> None:
    case = make_case("mixed", seed=8)
    _, weights = route_and_fuse(*case.all_args(), backend="triton")
    step = make_case("mixed", seq_len=1, seed=9).hidden
    fused = fuse_experts(step, *case.fusion_args(weights)[1:], backend="triton")
    ref = routing.fuse_experts(step, *case.fusion_args(weights)[1:])
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-5)


# Dispatch.


def test_auto_backend_on_cpu_is_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)
    case = make_case("mixed", seed=1)
    case = Case(**{name: value.cpu() for name, value in vars(case).items()})
    assert resolve_backend("auto", torch.zeros(1)) == "torch"
    fused, weights = route_and_fuse(*case.all_args())
    ref_fused, ref_weights = routing.route_and_fuse(*case.all_args())
    assert torch.equal(fused, ref_fused) and torch.equal(weights, ref_weights)
    assert torch.equal(compute_routing(*case.routing_args()), ref_weights)


def test_backend_environment_variable(kernels, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.zeros(1, device=DEVICE)
    monkeypatch.setenv(BACKEND_ENV_VAR, "triton")
    assert resolve_backend("auto", x) == "triton"
    assert resolve_backend("torch", x) == "torch"  # an explicit argument wins
    monkeypatch.setenv(BACKEND_ENV_VAR, "torch")
    assert resolve_backend("auto", x) == "torch"
    monkeypatch.setenv(BACKEND_ENV_VAR, "cuda")
    with pytest.raises(ValueError, match=BACKEND_ENV_VAR):
        resolve_backend("auto", x)
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("numba", x)  # type: ignore[arg-type]


def test_forcing_triton_on_cpu_needs_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        resolve_backend("triton", torch.zeros(1))
