"""Triton kernel for LiveEdit fusion: ``h + sum_e w_e ReLU(LN(h) U_e^T) V_e`` at every position.

The kept experts of each input are first compacted into an index list (``kept_experts``: a
cumulative sum and a scatter, no host synchronisation, so decoding steps that reuse the prefill
weights stay asynchronous). The kernel runs on a grid ``(inputs, position blocks)``: each program
holds a ``[BLOCK_L, d]`` tile of hidden states, normalises it once, and loops in-kernel over its
input's kept experts, reading ``U_e``/``V_e`` row by row and accumulating the update in registers.
No per-expert intermediate reaches global memory, and the cost follows the kept set, not N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ._reductions import ADD

__all__ = ["FusionBlocks", "KeptExperts", "fuse_experts_triton", "kept_experts"]


@triton.jit
def _fuse_kernel(
    hidden_ptr,
    out_ptr,
    weights_ptr,
    index_ptr,
    count_ptr,
    up_ptr,
    down_ptr,
    norm_weight_ptr,
    norm_bias_ptr,
    seq_len,
    hidden_size,
    num_experts,
    index_stride,
    eps,
    RANK: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_l = tl.program_id(1)
    offs_l = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < hidden_size
    mask = (offs_l < seq_len)[:, None] & mask_d[None, :]
    rows = pid_b.to(tl.int64) * seq_len + offs_l
    offs = rows[:, None] * hidden_size + offs_d[None, :]
    raw = tl.load(hidden_ptr + offs, mask=mask, other=0.0)
    hidden = raw.to(tl.float32)

    # LayerNorm of the tile (biased variance, as torch); masked columns stay exactly 0.
    mean = tl.reduce(hidden, 1, ADD) / hidden_size
    centered = tl.where(mask, hidden - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.reduce(centered * centered, 1, ADD) / hidden_size + eps)
    norm_weight = tl.load(norm_weight_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    norm_bias = tl.load(norm_bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    normed = centered * rstd[:, None] * norm_weight[None, :] + norm_bias[None, :]

    delta = tl.full([BLOCK_L, BLOCK_D], 0.0, tl.float32)
    count = tl.load(count_ptr + pid_b)
    for i in range(0, count):
        expert = tl.load(index_ptr + pid_b * index_stride + i).to(tl.int64)
        weight = tl.load(weights_ptr + pid_b * num_experts + expert)
        for j in tl.static_range(RANK):
            row = (expert * RANK + j) * hidden_size + offs_d
            u = tl.load(up_ptr + row, mask=mask_d, other=0.0).to(tl.float32)
            v = tl.load(down_ptr + row, mask=mask_d, other=0.0).to(tl.float32)
            act = tl.maximum(tl.reduce(normed * u[None, :], 1, ADD), 0.0) * weight
            delta += act[:, None] * v[None, :]

    # As the reference: the update is rounded to the hidden dtype before the residual add, and
    # an input that keeps nothing gets its hidden states back bit for bit.
    out_dtype = out_ptr.dtype.element_ty
    fused = (hidden + delta.to(out_dtype).to(tl.float32)).to(out_dtype)
    tl.store(out_ptr + offs, tl.where(count > 0, fused, raw), mask=mask)


@dataclass(frozen=True)
class KeptExperts:
    """Compact per-input list of kept experts, derived from the ``[B, N]`` routing weights.

    Attributes:
        index: ``[B, N + 1]`` int32; row ``b`` starts with the ``count[b]`` kept experts in
            increasing order, the rest is scratch.
        count: ``[B]`` int32 number of kept experts.
    """

    index: torch.Tensor
    count: torch.Tensor


def kept_experts(weights: torch.Tensor) -> KeptExperts:
    """Compact the experts with a positive weight, on the device, without host sync.

    Args:
        weights: ``[B, N]`` routing weights.

    Returns:
        The kept experts of each input.
    """
    num_inputs, num_experts = weights.shape
    active = weights > 0
    # Kept expert n goes to its rank among the kept ones; the others all land in column N.
    slot = torch.where(active, active.cumsum(dim=1) - 1, num_experts)
    index = torch.zeros((num_inputs, num_experts + 1), dtype=torch.int32, device=weights.device)
    experts = torch.arange(num_experts, dtype=torch.int32, device=weights.device)
    index.scatter_(1, slot, experts.expand(num_inputs, -1))
    return KeptExperts(index=index, count=active.sum(dim=1, dtype=torch.int32))


@dataclass(frozen=True)
class FusionBlocks:
    """Launch configuration of the fusion kernel.

    Attributes:
        block_l: positions per program (power of two).
        num_warps: warps per program (ignored by the interpreter).
    """

    block_l: int
    num_warps: int = 4

    def __post_init__(self) -> None:
        if self.block_l < 1 or self.block_l & (self.block_l - 1):
            raise ValueError(f"block_l must be a power of two, got {self.block_l}")

    @classmethod
    def default(cls, device: torch.device, seq_len: int, hidden_size: int) -> FusionBlocks:
        """Blocks for ``device``: register-sized tiles on a GPU, large programs on the CPU.

        Args:
            device: where the tensors live (CPU means the Triton interpreter).
            seq_len: ``L``.
            hidden_size: ``d``.

        Returns:
            The launch configuration.
        """
        block_d = triton.next_power_of_2(hidden_size)
        budget = 4096 if device.type == "cuda" else 65536  # tile elements per program
        block_l = max(1, min(triton.next_power_of_2(max(seq_len, 1)), budget // block_d))
        # One warp per 512 tile elements keeps a [4, 1024] tile at ~120 registers on sm_90.
        return cls(block_l=block_l, num_warps=min(8, max(1, block_l * block_d // 512)))


def fuse_experts_triton(
    hidden: torch.Tensor,
    weights: torch.Tensor,
    up: torch.Tensor,
    down: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    norm_eps: float,
    kept: KeptExperts | None = None,
    blocks: FusionBlocks | None = None,
) -> torch.Tensor:
    """Triton version of :func:`hf_liveedit.routing.fuse_experts` (same contract).

    Args:
        hidden: ``[B, L, d]`` hidden states (any float dtype).
        weights: ``[B, N]`` routing weights.
        up, down: ``[N, r, d]`` expert matrices ``U`` and ``V`` (any float dtype).
        norm_weight, norm_bias, norm_eps: the expert LayerNorm's parameters.
        kept: ``kept_experts(weights)`` when the caller has it cached (e.g. across decoding).
        blocks: launch configuration (default: :meth:`FusionBlocks.default`).

    Returns:
        ``[B, L, d]`` fused hidden states in ``hidden``'s dtype (a new tensor).
    """
    num_inputs, seq_len, hidden_size = hidden.shape
    out = torch.empty_like(hidden, memory_format=torch.contiguous_format)
    if out.numel() == 0:
        return out
    if kept is None:
        kept = kept_experts(weights)
    blocks = blocks or FusionBlocks.default(hidden.device, seq_len, hidden_size)
    _fuse_kernel[(num_inputs, triton.cdiv(seq_len, blocks.block_l))](
        hidden.contiguous(),
        out,
        weights.float().contiguous(),
        kept.index,
        kept.count,
        up.contiguous(),
        down.contiguous(),
        norm_weight.contiguous(),
        norm_bias.contiguous(),
        seq_len,
        hidden_size,
        weights.shape[1],
        kept.index.shape[1],
        norm_eps,
        RANK=up.shape[1],
        BLOCK_L=blocks.block_l,
        BLOCK_D=triton.next_power_of_2(hidden_size),
        num_warps=blocks.num_warps,
    )
    return out
