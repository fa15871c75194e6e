"""Which device trains and predicts: the one asked for (checked), else the best this machine has,
and the profile that fits it (its GPU memory included)."""

from __future__ import annotations

import torch

from .config import choose_profile
from .errors import AudioclsError


def pick_device(requested: str | None = None) -> torch.device:
    """Return the requested device (checked), else CUDA, then Apple's MPS, then the CPU."""
    if requested:
        return check_device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(requested: str, option: str = "device") -> torch.device:
    """Return the device `requested` names if this machine has it, else raise one line saying why.

    `option` names where the value came from in the message (`--device` on the command line).
    """
    try:
        device = torch.device(requested.strip().lower())
    except (RuntimeError, ValueError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise AudioclsError(f"{option} {requested!r} is not a device: use cpu, cuda, cuda:N or mps, "
                            f"or leave {option} out for the best one available")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AudioclsError(f"{option} {requested} asks for a CUDA GPU but PyTorch sees none (check "
                            f"`nvidia-smi` and that torch was built with CUDA); leave {option} out "
                            "to use the CPU")
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        have = "one GPU, cuda:0" if count == 1 else f"{count} GPUs, cuda:0 to cuda:{count - 1}"
        raise AudioclsError(f"{option} {requested}: this machine has {have}; choose one of them")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise AudioclsError(f"{option} {requested} asks for Apple's MPS, which this machine lacks; "
                            f"leave {option} out for the best device available")
    return device


def machine_profile(device: torch.device | str) -> tuple[str, str]:
    """Return the profile that fits `device` (its GPU memory included) and the reason."""
    device = torch.device(device)
    if device.type != "cuda":
        return choose_profile(device.type)
    index = device.index if device.index is not None else torch.cuda.current_device()
    properties = torch.cuda.get_device_properties(index)
    native_bf16 = properties.major >= 8  # Ampere and newer; older cards emulate bf16, slowly
    return choose_profile("cuda", properties.total_memory / 2**30, native_bf16, properties.name)
