"""Choose between the PyTorch reference and the Triton kernels for routing and fusion.

``backend="auto"`` (the default) follows the environment variable ``HF_LIVEEDIT_BACKEND``
(``auto``, ``torch`` or ``triton``) and otherwise the device: CUDA tensors run the Triton
kernels, anything else the vectorized PyTorch reference in :mod:`hf_liveedit.routing`. An
explicit ``"torch"`` or ``"triton"`` argument wins over the environment. Triton on CPU tensors
only works in the Triton interpreter (``TRITON_INTERPRET=1`` set before the kernels are first
used). The kernel modules are imported on first use, so that importing this module never
decorates them in the wrong interpreter mode.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Literal

import torch

from hf_liveedit import routing

__all__ = [
    "BACKEND_ENV_VAR",
    "Backend",
    "compute_routing",
    "fuse_experts",
    "resolve_backend",
    "route_and_fuse",
]

Backend = Literal["auto", "torch", "triton"]
BACKEND_ENV_VAR = "HF_LIVEEDIT_BACKEND"
_BACKENDS = ("auto", "torch", "triton")


def _triton_interpreting() -> bool:
    import triton

    return bool(triton.knobs.runtime.interpret)


def resolve_backend(backend: Backend, *tensors: torch.Tensor) -> Literal["torch", "triton"]:
    """Decide which implementation runs on ``tensors``.

    Args:
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.
        *tensors: the call's tensors (their device decides ``"auto"``).

    Returns:
        ``"torch"`` or ``"triton"``.

    Raises:
        ValueError: ``backend`` or ``HF_LIVEEDIT_BACKEND`` is not a known backend.
        RuntimeError: Triton is forced on non-CUDA tensors outside the Triton interpreter, or
            Triton is not installed.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get(BACKEND_ENV_VAR, "").strip().lower() or "auto"
        if backend not in _BACKENDS:
            raise ValueError(f"{BACKEND_ENV_VAR} must be one of {_BACKENDS}, got {backend!r}")
    on_cuda = all(t.is_cuda for t in tensors)
    has_triton = importlib.util.find_spec("triton") is not None
    if backend == "auto":
        return "triton" if on_cuda and has_triton else "torch"
    if backend == "triton":
        if not has_triton:
            raise RuntimeError("the Triton backend needs the `triton` package")
        if not on_cuda and not _triton_interpreting():
            raise RuntimeError(
                "the Triton backend needs CUDA tensors, or TRITON_INTERPRET=1 set before the "
                "kernels are first used (CPU interpreter, slow; for tests)"
            )
    return backend


def compute_routing(
    phi_in: torch.Tensor,
    psi_in: torch.Tensor,
    phi_sentinel: torch.Tensor,
    phi_experts: torch.Tensor,
    psi_experts: torch.Tensor,
    routable: torch.Tensor,
    visual_weight: float = 0.0,
    *,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Routing weights; see :func:`hf_liveedit.routing.compute_routing`.

    Args:
        phi_in, psi_in, phi_sentinel, phi_experts, psi_experts, routable, visual_weight: as the
            reference.
        backend: implementation to use (see :func:`resolve_backend`).

    Returns:
        ``[B, N]`` float32 weights, zero for experts that are not kept.
    """
    args = (phi_in, psi_in, phi_sentinel, phi_experts, psi_experts, routable, visual_weight)
    if resolve_backend(backend, *args[:5]) == "torch":
        return routing.compute_routing(*args)
    from .routing_triton import compute_routing_triton

    return compute_routing_triton(*args)


def fuse_experts(
    hidden: torch.Tensor,
    weights: torch.Tensor,
    up: torch.Tensor,
    down: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    norm_eps: float,
    *,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Apply the weighted experts; see :func:`hf_liveedit.routing.fuse_experts`.

    Decoding steps call this with the weights cached at prefill.

    Args:
        hidden, weights, up, down, norm_weight, norm_bias, norm_eps: as the reference.
        backend: implementation to use (see :func:`resolve_backend`).

    Returns:
        ``[B, L, d]`` fused hidden states in ``hidden``'s dtype.
    """
    args = (hidden, weights, up, down, norm_weight, norm_bias, norm_eps)
    if resolve_backend(backend, *args[:6]) == "torch":
        return routing.fuse_experts(*args)
    from .fusion_triton import fuse_experts_triton

    return fuse_experts_triton(*args)


def route_and_fuse(
    hidden: torch.Tensor,
    phi_in: torch.Tensor,
    psi_in: torch.Tensor,
    phi_sentinel: torch.Tensor,
    routable: torch.Tensor,
    phi_experts: torch.Tensor,
    psi_experts: torch.Tensor,
    up: torch.Tensor,
    down: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    norm_eps: float,
    visual_weight: float = 0.0,
    *,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Route a batch over the repository and fuse the kept experts (prefill).

    Args:
        hidden, phi_in, psi_in, phi_sentinel, routable, phi_experts, psi_experts, up, down,
            norm_weight, norm_bias, norm_eps, visual_weight: as
            :func:`hf_liveedit.routing.route_and_fuse`.
        backend: implementation to use (see :func:`resolve_backend`).

    Returns:
        ``(fused_hidden [B, L, d], weights [B, N])``; decoding steps reuse the weights.
    """
    weights = compute_routing(
        phi_in,
        psi_in,
        phi_sentinel,
        phi_experts,
        psi_experts,
        routable,
        visual_weight,
        backend=backend,
    )
    fused = fuse_experts(
        hidden, weights, up, down, norm_weight, norm_bias, norm_eps, backend=backend
    )
    return fused, weights
