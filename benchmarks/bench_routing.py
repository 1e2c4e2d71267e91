"""Microbenchmark: LiveEdit routing + fusion per call against the number of stored experts N.

Shapes of the default backbone (SmolLM2-135M: d=576; d_m=1024, k=4, r=4), one input. Each input
keeps a few experts (``--kept``, planted so that the filter keeps exactly those), as after a
working hard routing. Two calls are timed:

* prefill: ``route_and_fuse`` on ``--prefill-len`` positions (routing over all N, then fusion);
* decode: ``fuse_experts`` on one new position with the weights cached at prefill.

Columns: the vectorized PyTorch reference (:mod:`hf_liveedit.routing`); a per-expert Python
loop, as a literal port of the equations would run (skipped once its projected time exceeds
``--loop-budget``); the physical limit, i.e. the bytes of routing features a prefill must read
(N x 2 x k x d_m for fp32 and fp16 storage) over this machine's memory bandwidth, measured here
with a large tensor copy and a large read (the larger of the two); and, on CUDA, the Triton kernels.

    python benchmarks/bench_routing.py                        # CPU, fp32, N = 1 ... 100k
    python benchmarks/bench_routing.py --dtype float16 --sizes 1000,10000
    python benchmarks/bench_routing.py --device cuda          # adds the Triton columns
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hf_liveedit import routing

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Problem:
    """One input (prefill and one decode position) and a repository of N experts."""

    hidden: torch.Tensor  # [1, L, d]
    step: torch.Tensor  # [1, 1, d]
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
    eps: float = 1e-5

    def route_args(self) -> tuple:
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
            self.eps,
        )

    def decode_args(self, weights: torch.Tensor) -> tuple:
        return (self.step, weights, self.up, self.down, self.norm_weight, self.norm_bias, self.eps)


def make_problem(args: argparse.Namespace, num_experts: int) -> Problem:
    """Random features; experts ``0 .. kept-1`` are planted near the input so only they pass."""
    dtype, device = DTYPES[args.dtype], torch.device(args.device)
    gen = torch.Generator(device=device).manual_seed(num_experts)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        out = torch.empty(shape, dtype=dtype, device=device)
        return out.normal_(0.0, scale, generator=gen)

    shape = (args.queries, args.module_dim)
    phi_in = randn(1, *shape)
    phi_experts = randn(num_experts, *shape)
    kept = min(args.kept, num_experts)
    # sim(phi_in, phi_in + noise) ~ |phi_in|^2 scale, twice the threshold; random experts ~ 0.
    phi_experts[:kept] = phi_in + randn(kept, *shape, scale=0.1)
    scale = 0.2 / math.sqrt(args.rank)  # the generator's expert scale
    return Problem(
        hidden=randn(1, args.prefill_len, args.hidden_size),
        step=randn(1, 1, args.hidden_size),
        phi_in=phi_in,
        psi_in=randn(1, *shape),
        phi_sentinel=phi_in * 0.5,
        routable=torch.ones(1, dtype=torch.bool, device=device),
        phi_experts=phi_experts,
        psi_experts=randn(num_experts, *shape),
        up=randn(num_experts, args.rank, args.hidden_size, scale=scale),
        down=randn(num_experts, args.rank, args.hidden_size, scale=scale),
        norm_weight=torch.ones(args.hidden_size, device=device),
        norm_bias=torch.zeros(args.hidden_size, device=device),
    )


def loop_prefill(p: Problem) -> tuple[torch.Tensor, list[tuple[int, float]]]:
    """Routing and fusion one expert at a time (a literal port of the equations)."""
    k, d_m = p.phi_in.shape[-2:]
    scale = 1.0 / (k * math.sqrt(d_m))
    phi, psi = p.phi_in[0].float(), p.psi_in[0].float()
    threshold = float((phi * p.phi_sentinel[0].float()).sum()) * scale
    scores = {}
    for e in range(p.phi_experts.shape[0]):
        if float((phi * p.phi_experts[e].float()).sum()) * scale > threshold:
            scores[e] = float((psi * p.psi_experts[e].float()).sum()) * scale
    total = sum(math.exp(s) for s in scores.values())
    kept = [(e, math.exp(s) / total / (1 + math.exp(-s))) for e, s in scores.items()]
    return loop_fuse(p, p.hidden, [w for _, w in kept], [e for e, _ in kept]), kept


def loop_decode(p: Problem, cached: list[float]) -> torch.Tensor:
    """Fusion of one position with cached weights, scanning them one expert at a time."""
    experts = [e for e, w in enumerate(cached) if w > 0]
    return loop_fuse(p, p.step, [cached[e] for e in experts], experts)


def loop_fuse(
    p: Problem, hidden: torch.Tensor, weights: list[float], experts: list[int]
) -> torch.Tensor:
    """``h + sum_e w_e ReLU(LN(h) U_e^T) V_e``, one expert at a time."""
    if not experts:
        return hidden
    h = hidden.float()
    normed = F.layer_norm(h, h.shape[-1:], p.norm_weight, p.norm_bias, p.eps)
    delta = torch.zeros_like(h)
    for w, e in zip(weights, experts, strict=True):
        delta += w * torch.relu(normed @ p.up[e].float().T) @ p.down[e].float()
    return hidden + delta.to(hidden.dtype)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(
    fn: Callable[[], object],
    device: torch.device,
    min_time: float = 0.3,
    min_runs: int = 3,
    max_runs: int = 50,
    warmup: bool = True,
) -> float:
    """Best seconds per call of at least ``min_runs`` calls (about ``min_time`` in total): the
    minimum, because this machine is shared and noise only ever adds time."""
    if warmup:
        fn()
        synchronize(device)
    times: list[float] = []
    while len(times) < min_runs or (sum(times) < min_time and len(times) < max_runs):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def memory_bandwidth(device: torch.device, num_bytes: int = 1 << 30) -> tuple[float, float]:
    """Bytes per second of a large copy (read + written bytes) and of a large read (a sum).

    Both are best of 5. A copy also pays for reading the destination lines before writing them
    on most CPUs, so a read-only stream (what routing is) can run faster than the copy figure.
    """
    src = torch.ones(num_bytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    copy = read = math.inf
    for _ in range(5):
        copy = min(copy, timeit(lambda: dst.copy_(src), device, min_runs=1, warmup=False))
        read = min(read, timeit(lambda: src.sum(), device, min_runs=1, warmup=False))
    return 2 * num_bytes / copy, num_bytes / read


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:.3f}" if seconds < 1 else f"{seconds * 1e3:,.0f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default="float32",
        help="storage and compute dtype of features, experts and hidden states",
    )
    parser.add_argument(
        "--sizes", default="1,10,100,1000,10000,100000", help="comma-separated repository sizes N"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--kept", type=int, default=3, help="experts each input keeps")
    parser.add_argument("--prefill-len", type=int, default=80)
    parser.add_argument("--hidden-size", type=int, default=576)
    parser.add_argument("--module-dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--loop-budget",
        type=float,
        default=20.0,
        help="skip the per-expert loop once its projected time per call exceeds this many seconds",
    )
    return parser.parse_args()


def bench_size(
    args: argparse.Namespace, num_experts: int, bandwidth: float, loop_per_expert: float
) -> tuple[list[str], float]:
    """One table row for ``num_experts``, and the loop's seconds per expert (for projections)."""
    device = torch.device(args.device)
    p = make_problem(args, num_experts)
    fused, weights = routing.route_and_fuse(*p.route_args())
    assert int((weights > 0).sum()) == min(args.kept, num_experts), "planted kept set broken"
    prefill_torch = timeit(lambda: routing.route_and_fuse(*p.route_args()), device)
    decode_torch = timeit(lambda: routing.fuse_experts(*p.decode_args(weights)), device)

    prefill_loop = decode_loop = None
    if loop_per_expert * num_experts <= args.loop_budget:
        start = time.perf_counter()
        loop_fused, _ = loop_prefill(p)  # also the warm-up call
        elapsed = time.perf_counter() - start
        loop_per_expert = elapsed / num_experts
        torch.testing.assert_close(loop_fused.float(), fused.float(), rtol=2e-2, atol=2e-2)
        prefill_loop = timeit(
            lambda: loop_prefill(p),
            device,
            min_time=0.0,
            min_runs=1 if elapsed > 1 else 3,
            warmup=False,
        )
        cached = weights[0].tolist()
        decode_loop = timeit(lambda: loop_decode(p, cached), device)

    feature_bytes = num_experts * 2 * args.queries * args.module_dim
    row = [
        f"{num_experts:,}",
        fmt(prefill_torch),
        fmt(prefill_loop),
        fmt(feature_bytes * 4 / bandwidth),
        fmt(feature_bytes * 2 / bandwidth),
    ]
    if device.type == "cuda":
        from hf_liveedit.kernels import fuse_experts, route_and_fuse

        triton_fused, _ = route_and_fuse(*p.route_args(), backend="triton")
        torch.testing.assert_close(triton_fused.float(), fused.float(), rtol=2e-2, atol=2e-2)
        prefill_triton = timeit(lambda: route_and_fuse(*p.route_args(), backend="triton"), device)
        row += [fmt(prefill_triton), f"{prefill_torch / prefill_triton:.1f}x"]
    row += [fmt(decode_torch), fmt(decode_loop)]
    if device.type == "cuda":
        decode_triton = timeit(
            lambda: fuse_experts(*p.decode_args(weights), backend="triton"), device
        )
        row += [fmt(decode_triton), f"{decode_torch / decode_triton:.1f}x"]
    return row, loop_per_expert


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    triton = device.type == "cuda"
    copy, read = memory_bandwidth(device)
    bandwidth = max(copy, read)
    where = (
        torch.cuda.get_device_name(device)
        if triton
        else (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    )
    print(
        f"device: {where}; torch {torch.__version__}; dtype {args.dtype}; d={args.hidden_size}, "
        f"d_m={args.module_dim}, k={args.queries}, r={args.rank}; prefill {args.prefill_len} "
        f"tokens, decode 1 token; {args.kept} kept experts per input"
    )
    print(
        f"memory bandwidth: 1 GiB copy {copy / 1e9:.1f} GB/s (read + write), 1 GiB sum "
        f"{read / 1e9:.1f} GB/s (read); the limit uses the larger\n"
    )

    header = ["N", "prefill torch", "prefill loop", "limit fp32", "limit fp16"]
    if triton:
        header += ["prefill triton", "speed-up"]
    header += ["decode torch", "decode loop"]
    if triton:
        header += ["decode triton", "speed-up"]
    print("times in ms per call (best of >= 3 calls)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    loop_per_expert = 0.0
    for num_experts in (int(s) for s in args.sizes.split(",")):
        row, loop_per_expert = bench_size(args, num_experts, bandwidth, loop_per_expert)
        print("| " + " | ".join(row) + " |", flush=True)

    print(
        "\nprefill = route_and_fuse (routing over all N + fusion of the kept experts); decode = "
        "fuse_experts on one token with the prefill weights; loop = one expert at a time in "
        "Python (— = skipped, projected over --loop-budget); limit = bytes of the N routing "
        "features (phi and psi) / memory bandwidth."
    )


if __name__ == "__main__":
    main()
