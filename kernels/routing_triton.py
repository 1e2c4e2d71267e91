"""Triton kernels for LiveEdit routing: hard filter against the sentinel, then sigmoid x softmax.

Two launches, split-N style (as in flash-decoding):

1. ``_routing_logits_kernel`` on a grid ``(input blocks, splits)``. Each program streams over
   every ``splits``-th block of ``BLOCK_N`` experts, computes the hard and soft similarities of
   its inputs with those experts in ``BLOCK_F`` chunks of the flattened ``k * d_m`` features,
   writes the soft similarity of kept experts (``-inf`` elsewhere) into the output, and keeps a
   running (online-softmax) max and sum of ``exp`` over its kept experts.
2. ``_routing_normalize_kernel`` on a grid ``(inputs, N blocks)`` merges the per-split
   statistics of its input and turns the logits into ``sigmoid(s) * exp(s - max) / sum``.

Expert features are read once per block of inputs, which is the memory-bound part of the call.
Everything is accumulated in float32; values are cast right after ``tl.load`` (bf16 arithmetic
is wrong in the Triton interpreter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ._reductions import ADD, MAXIMUM

__all__ = ["RoutingBlocks", "compute_routing_triton"]


@triton.jit
def _routing_logits_kernel(
    phi_in_ptr,
    psi_in_ptr,
    sentinel_ptr,
    routable_ptr,
    phi_exp_ptr,
    psi_exp_ptr,
    logits_ptr,
    split_max_ptr,
    split_sum_ptr,
    num_inputs,
    num_experts,
    feat_size,
    scale,
    visual_weight,
    num_splits,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    mask_b = offs_b < num_inputs
    in_rows = offs_b.to(tl.int64)[:, None] * feat_size
    routable = tl.load(routable_ptr + offs_b, mask=mask_b, other=0) != 0

    # Per-input threshold sim(phi_in, phi_sentinel).
    threshold = tl.full([BLOCK_B], 0.0, tl.float32)
    for f0 in range(0, feat_size, BLOCK_F):
        offs_f = f0 + tl.arange(0, BLOCK_F)
        mask_in = mask_b[:, None] & (offs_f < feat_size)[None, :]
        phi = tl.load(phi_in_ptr + in_rows + offs_f[None, :], mask=mask_in, other=0.0)
        sentinel = tl.load(sentinel_ptr + in_rows + offs_f[None, :], mask=mask_in, other=0.0)
        threshold += tl.reduce(phi.to(tl.float32) * sentinel.to(tl.float32), 1, ADD)
    threshold = threshold * scale

    run_max = tl.full([BLOCK_B], float("-inf"), dtype=tl.float32)
    run_sum = tl.full([BLOCK_B], 0.0, tl.float32)
    num_blocks = (num_experts + BLOCK_N - 1) // BLOCK_N
    for block in range(pid_s, num_blocks, num_splits):
        offs_n = block * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < num_experts
        exp_rows = offs_n.to(tl.int64)[:, None] * feat_size
        hard = tl.full([BLOCK_B, BLOCK_N], 0.0, tl.float32)
        soft = tl.full([BLOCK_B, BLOCK_N], 0.0, tl.float32)
        for f0 in range(0, feat_size, BLOCK_F):
            offs_f = f0 + tl.arange(0, BLOCK_F)
            mask_f = offs_f < feat_size
            mask_in = mask_b[:, None] & mask_f[None, :]
            mask_exp = mask_n[:, None] & mask_f[None, :]
            phi = tl.load(phi_in_ptr + in_rows + offs_f[None, :], mask=mask_in, other=0.0)
            psi = tl.load(psi_in_ptr + in_rows + offs_f[None, :], mask=mask_in, other=0.0)
            phi_e = tl.load(phi_exp_ptr + exp_rows + offs_f[None, :], mask=mask_exp, other=0.0)
            psi_e = tl.load(psi_exp_ptr + exp_rows + offs_f[None, :], mask=mask_exp, other=0.0)
            phi = phi.to(tl.float32)
            psi = psi.to(tl.float32)
            phi_e = phi_e.to(tl.float32)
            psi_e = psi_e.to(tl.float32)
            hard += tl.reduce(phi[:, None, :] * phi_e[None, :, :], 2, ADD)
            soft += tl.reduce(psi[:, None, :] * psi_e[None, :, :], 2, ADD)
        kept = (hard * scale > threshold[:, None]) & routable[:, None] & mask_n[None, :]
        scores = soft * scale + visual_weight * (hard * scale - threshold[:, None])
        logits = tl.where(kept, scores, float("-inf"))
        out_offs = offs_b.to(tl.int64)[:, None] * num_experts + offs_n[None, :]
        tl.store(logits_ptr + out_offs, logits, mask=mask_b[:, None] & mask_n[None, :])
        # Online softmax; a row that has kept nothing yet has max -inf: shift it by 0 instead.
        new_max = tl.maximum(run_max, tl.reduce(logits, 1, MAXIMUM))
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        block_sum = tl.reduce(tl.exp(logits - shift[:, None]), 1, ADD)
        run_sum = run_sum * tl.exp(run_max - shift) + block_sum
        run_max = new_max

    split_offs = offs_b * num_splits + pid_s
    tl.store(split_max_ptr + split_offs, run_max, mask=mask_b)
    tl.store(split_sum_ptr + split_offs, run_sum, mask=mask_b)


@triton.jit
def _routing_normalize_kernel(
    weights_ptr,
    split_max_ptr,
    split_sum_ptr,
    num_experts,
    num_splits,
    BLOCK_S: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    mask_s = offs_s < num_splits
    split_offs = pid_b * num_splits + offs_s
    split_max = tl.load(split_max_ptr + split_offs, mask=mask_s, other=float("-inf"))
    split_sum = tl.load(split_sum_ptr + split_offs, mask=mask_s, other=0.0)
    row_max = tl.reduce(split_max, 0, MAXIMUM)
    shift = tl.where(row_max == float("-inf"), 0.0, row_max)
    total = tl.reduce(split_sum * tl.exp(split_max - shift), 0, ADD)
    total = tl.where(total > 0, total, 1.0)  # 0 only when nothing is kept: all weights are 0

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < num_experts
    ptrs = weights_ptr + pid_b.to(tl.int64) * num_experts + offs_n
    logits = tl.load(ptrs, mask=mask_n, other=float("-inf"))
    kept = logits > float("-inf")
    weights = tl.exp(logits - shift) / ((1.0 + tl.exp(-logits)) * total)
    tl.store(ptrs, tl.where(kept, weights, 0.0), mask=mask_n)


@dataclass(frozen=True)
class RoutingBlocks:
    """Launch configuration of the routing kernels (block sizes are powers of two).

    Attributes:
        block_n: experts per tile.
        block_f: feature elements per chunk of the similarity.
        block_b: inputs per tile; the expert features are read once per block of inputs.
        num_splits: programs per block of inputs that share the repository (``None``: enough
            to fill the GPU).
        normalize_block_n: experts per program of the normalisation pass.
        num_warps: warps per program (ignored by the interpreter).
    """

    block_n: int
    block_f: int
    block_b: int
    num_splits: int | None = None
    normalize_block_n: int = 1024
    num_warps: int = 4

    def __post_init__(self) -> None:
        for name in ("block_n", "block_f", "block_b", "normalize_block_n"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two, got {value}")

    @classmethod
    def default(cls, device: torch.device, num_inputs: int, feat_size: int) -> RoutingBlocks:
        """Blocks for ``device``: register-sized tiles on a GPU, few large programs on the CPU.

        Args:
            device: where the tensors live (CPU means the Triton interpreter).
            num_inputs: ``B``.
            feat_size: ``k * d_m``.

        Returns:
            The launch configuration.
        """
        block_b = min(triton.next_power_of_2(max(num_inputs, 1)), 4)
        if device.type == "cuda":
            # Small [block_b, block_n, block_f] products: ~130-160 registers per thread on sm_90
            # without spills (ptxas -v); not yet tuned on a GPU (benchmarks/gpu_kernel_check.py).
            return cls(block_n=max(16, 32 // block_b), block_f=64, block_b=block_b)
        # The interpreter pays per program and per op, not per element: use big tiles.
        block_f = min(triton.next_power_of_2(max(feat_size, 1)), 1024)
        return cls(
            block_n=64, block_f=block_f, block_b=block_b, num_splits=2, normalize_block_n=4096
        )


def _num_splits(
    blocks: RoutingBlocks, device: torch.device, num_n_blocks: int, num_b_blocks: int
) -> int:
    if blocks.num_splits is not None:
        return max(1, min(blocks.num_splits, num_n_blocks))
    if device.type != "cuda":
        return min(2, num_n_blocks)
    programs = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(num_n_blocks, math.ceil(programs / num_b_blocks)))


def compute_routing_triton(
    phi_in: torch.Tensor,
    psi_in: torch.Tensor,
    phi_sentinel: torch.Tensor,
    phi_experts: torch.Tensor,
    psi_experts: torch.Tensor,
    routable: torch.Tensor,
    visual_weight: float = 0.0,
    blocks: RoutingBlocks | None = None,
) -> torch.Tensor:
    """Triton version of :func:`hf_liveedit.routing.compute_routing` (same contract).

    Args:
        phi_in, psi_in, phi_sentinel: ``[B, k, d_m]`` input-side features (any float dtype).
        phi_experts, psi_experts: ``[N, k, d_m]`` stored routing features (any float dtype).
        routable: ``[B]`` bool.
        visual_weight: weight of the visual margin in the soft score (0: the paper's score).
        blocks: launch configuration (default: :meth:`RoutingBlocks.default`).

    Returns:
        ``[B, N]`` float32 weights, zero for experts that are not kept.
    """
    num_inputs, k, d_m = phi_in.shape
    num_experts = phi_experts.shape[0]
    feat_size = k * d_m
    weights = torch.zeros((num_inputs, num_experts), dtype=torch.float32, device=phi_in.device)
    if num_inputs == 0 or num_experts == 0:
        return weights
    blocks = blocks or RoutingBlocks.default(phi_in.device, num_inputs, feat_size)
    num_b_blocks = triton.cdiv(num_inputs, blocks.block_b)
    num_n_blocks = triton.cdiv(num_experts, blocks.block_n)
    num_splits = _num_splits(blocks, phi_in.device, num_n_blocks, num_b_blocks)
    split_max = torch.empty((num_inputs, num_splits), dtype=torch.float32, device=phi_in.device)
    split_sum = torch.empty_like(split_max)

    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], feat_size).contiguous()

    _routing_logits_kernel[(num_b_blocks, num_splits)](
        flat(phi_in),
        flat(psi_in),
        flat(phi_sentinel),
        routable.to(torch.int8).contiguous(),
        flat(phi_experts),
        flat(psi_experts),
        weights,
        split_max,
        split_sum,
        num_inputs,
        num_experts,
        feat_size,
        1.0 / (k * math.sqrt(d_m)),
        float(visual_weight),
        num_splits,
        BLOCK_B=blocks.block_b,
        BLOCK_N=blocks.block_n,
        BLOCK_F=blocks.block_f,
        num_warps=blocks.num_warps,
    )
    normalize_block_n = min(blocks.normalize_block_n, triton.next_power_of_2(num_experts))
    _routing_normalize_kernel[(num_inputs, triton.cdiv(num_experts, normalize_block_n))](
        weights,
        split_max,
        split_sum,
        num_experts,
        num_splits,
        BLOCK_S=triton.next_power_of_2(num_splits),
        BLOCK_N=normalize_block_n,
    )
    return weights
