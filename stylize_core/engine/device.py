"""Which torch device a run uses: auto = CUDA, else Apple MPS, else the CPU."""

from __future__ import annotations

import torch

from ..contract.errors import InputError


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available() else torch.device("cpu")
    if name == "gpu":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        raise InputError("no usable GPU found (no CUDA or Apple MPS device): use device auto or cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA is not available on this machine: use device auto or cpu")
    if name == "mps" and not mps_available():
        raise InputError("Apple MPS is not available on this machine: use device auto or cpu")
    return torch.device(name)

