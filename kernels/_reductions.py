"""Combine functions for ``tl.reduce`` that work both compiled and in the Triton interpreter.

``tl.sum``, ``tl.max``, ``tl.sigmoid``, ``tl.cdiv`` and ``tl.zeros`` are ``@triton.jit`` helpers of
``triton.language.standard``, decorated once when triton is first imported. When that import
happens before ``TRITON_INTERPRET=1`` is set (``torch._dynamo``, hence transformers, imports
triton), the interpreter cannot call them. The kernels therefore use only builtins, and reduce
with ``tl.reduce`` and these two combine functions, which the interpreter maps to numpy.
"""

from __future__ import annotations

import triton.language as tl

ADD = tl.standard._sum_combine
MAXIMUM = tl.standard._elementwise_max
