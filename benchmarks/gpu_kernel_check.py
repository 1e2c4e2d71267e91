"""GPU check of the Triton routing/fusion kernels: correctness (bf16 included) and speed.

Needs a CUDA device. Three steps, a few minutes in all:

1. ``tests/test_kernels.py`` natively on the GPU (no interpreter; includes the bf16 test);
2. Triton against the PyTorch reference at realistic shapes, N in {1k, 10k, 100k}, for fp32,
   fp16 and bf16 storage (kept sets identical, weights and fused states close), plus a
   1k-expert case where every expert is kept (long in-kernel loop);
3. a speed table (ms per call) with the speed-up of Triton over PyTorch, for prefill (routing +
   fusion) and decode (fusion with cached weights), and the routing kernel's block sizes tried
   at N = 100k (to tune ``RoutingBlocks.default``).

    python benchmarks/gpu_kernel_check.py [--skip-tests] [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
from bench_routing import Problem, make_problem, memory_bandwidth, timeit  # same folder
from hf_liveedit.kernels import fuse_experts, route_and_fuse
from hf_liveedit.kernels.routing_triton import RoutingBlocks, compute_routing_triton

from hf_liveedit import routing

REPO = Path(__file__).resolve().parents[1]


def problem_args(dtype: str, device: str) -> argparse.Namespace:
    """The default backbone's shapes (see bench_routing.py), one input of 80 tokens."""
    return argparse.Namespace(
        dtype=dtype,
        device=device,
        kept=3,
        prefill_len=80,
        hidden_size=576,
        module_dim=1024,
        queries=4,
        rank=4,
    )


def check(p: Problem, label: str, tol: float) -> None:
    """Triton against the reference on one problem; raises on a mismatch."""
    ref_fused, ref_weights = routing.route_and_fuse(*p.route_args())
    fused, weights = route_and_fuse(*p.route_args(), backend="triton")
    assert torch.equal(weights > 0, ref_weights > 0), f"{label}: kept sets differ"
    torch.testing.assert_close(weights, ref_weights, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fused.float(), ref_fused.float(), rtol=tol, atol=tol)
    step = fuse_experts(*p.decode_args(weights), backend="triton")
    ref_step = routing.fuse_experts(*p.decode_args(ref_weights))
    torch.testing.assert_close(step.float(), ref_step.float(), rtol=tol, atol=tol)
    print(f"ok  {label}: {int((weights > 0).sum())} kept")


def speed_row(p: Problem, dtype: str) -> str:
    """Markdown row: PyTorch and Triton ms per call for prefill and decode, and the speed-ups."""
    device = p.hidden.device
    _, weights = routing.route_and_fuse(*p.route_args())
    times = [
        timeit(lambda: routing.route_and_fuse(*p.route_args()), device),
        timeit(lambda: route_and_fuse(*p.route_args(), backend="triton"), device),
        timeit(lambda: routing.fuse_experts(*p.decode_args(weights)), device),
        timeit(lambda: fuse_experts(*p.decode_args(weights), backend="triton"), device),
    ]
    ms = [f"{t * 1e3:.3f}" for t in times]
    return (
        f"| {dtype} | {p.phi_experts.shape[0]:,} | {ms[0]} | {ms[1]} | "
        f"{times[0] / times[1]:.1f}x | {ms[2]} | {ms[3]} | {times[2] / times[3]:.1f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument(
        "--device",
        default="cuda",
        help="cpu only to smoke-test this script under TRITON_INTERPRET=1",
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_kernel_check: no CUDA device")
    device = torch.device(args.device)
    sizes = [int(s) for s in args.sizes.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (interpreter)"
    print(
        f"{name}; torch {torch.__version__}; "
        "memory bandwidth (copy, read): "
        + ", ".join(f"{b / 1e9:.0f} GB/s" for b in memory_bandwidth(device))
        + "\n"
    )

    if not args.skip_tests:
        test = [sys.executable, "-m", "pytest", "-q", str(REPO / "tests" / "test_kernels.py")]
        if subprocess.run(test, cwd=REPO).returncode:
            sys.exit("gpu_kernel_check: tests/test_kernels.py failed")

    tolerances = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 1e-1}
    for dtype, tol in tolerances.items():
        for num_experts in sizes:
            p = make_problem(problem_args(dtype, args.device), num_experts)
            check(p, f"{dtype} N={num_experts}", tol)
    num_experts = min(1000, max(sizes))
    everything = make_problem(problem_args("float32", args.device), num_experts)
    everything.phi_sentinel = -everything.phi_in  # threshold far below: everything kept
    check(everything, f"float32 N={num_experts}, all kept", 1e-4)

    print(
        "\nms per call (best of >= 3); prefill = routing + fusion of 80 tokens, "
        "decode = fusion of 1 token with cached weights\n"
    )
    print(
        "| dtype | N | prefill torch | prefill triton | speed-up | decode torch | "
        "decode triton | speed-up |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for dtype in ("float32", "float16", "bfloat16"):
        for num_experts in sizes:
            print(
                speed_row(make_problem(problem_args(dtype, args.device), num_experts), dtype),
                flush=True,
            )

    num_experts = max(sizes)
    print(f"\nrouting kernel alone, N={num_experts:,}, fp16 storage: block sizes (ms per call)")
    p = make_problem(problem_args("float16", args.device), num_experts)
    routing_args = (p.phi_in, p.psi_in, p.phi_sentinel, p.phi_experts, p.psi_experts, p.routable)
    feature_bytes = 2 * p.phi_experts.numel() * p.phi_experts.element_size()
    for block_n in (16, 32, 64, 128):
        for block_f, num_warps in ((64, 4), (128, 4), (128, 8), (256, 8)):
            blocks = RoutingBlocks(block_n=block_n, block_f=block_f, block_b=1, num_warps=num_warps)
            seconds = timeit(
                lambda b=blocks: compute_routing_triton(*routing_args, blocks=b), device
            )
            print(
                f"block_n={block_n:4d} block_f={block_f:4d} num_warps={num_warps}: "
                f"{seconds * 1e3:.3f} ms, {feature_bytes / seconds / 1e9:.0f} GB/s read"
            )
    default = RoutingBlocks.default(device, 1, p.phi_in[0].numel())
    print(f"default: {default}")


if __name__ == "__main__":
    main()
