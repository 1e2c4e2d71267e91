"""Triton kernels for LiveEdit routing and fusion (installed as `hf_liveedit.kernels`)."""
