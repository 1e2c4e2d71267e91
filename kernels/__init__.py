"""Triton kernels for LiveEdit routing and fusion (installed as `hf_liveedit.kernels`).

Import the dispatching functions from here; they pick the Triton kernels for CUDA tensors and
the PyTorch reference (:mod:`hf_liveedit.routing`) otherwise.
"""

from __future__ import annotations

from .dispatch import (
    BACKEND_ENV_VAR,
    Backend,
    compute_routing,
    fuse_experts,
    resolve_backend,
    route_and_fuse,
)

__all__ = [
    "BACKEND_ENV_VAR",
    "Backend",
    "compute_routing",
    "fuse_experts",
    "resolve_backend",
    "route_and_fuse",
]
