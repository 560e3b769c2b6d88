"""Matrix products of CPU tensors through NumPy's BLAS (:func:`matmul`).

The solver's products after the eigendecomposition are thin or small (n × r by r × G·m for the
leave-one-out paths, d × n by n × m for the dual route's weights), and so is predict's product
of the features with the weights. torch's CPU wheels run them through MKL, which on the AMD EPYC
development VM was slower at them than NumPy's OpenBLAS (``benchmarks/classifier_speed.py``
times the fit and, with ``--predict``, predict; docs/classifier.md "Speed" gives both before and
after). Both are exact products; their roundings differ only in the order of the sums.
"""

from __future__ import annotations

import numpy as np
import torch

_NUMPY_DTYPES = (torch.float32, torch.float64)


def numpy_ready(*tensors: torch.Tensor) -> bool:
    """Whether ``tensors`` (any shapes) can be computed on through NumPy as they are: CPU tensors of
    one float32 or float64 dtype that need no gradient, none a lazily negated view (z.conj().imag,
    which NumPy refuses)."""
    dtype = tensors[0].dtype
    return dtype in _NUMPY_DTYPES and all(
        t.device.type == "cpu" and t.dtype == dtype and not (t.requires_grad or t.is_neg()) for t in tensors
    )


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for a (p, q) and b (q, s): through NumPy when both are :func:`numpy_ready` (a new
    tensor sharing nothing with a or b), torch's own product otherwise (another device or dtype,
    mixed dtypes, autograd, a negated view)."""
    if numpy_ready(a, b):
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return a @ b
