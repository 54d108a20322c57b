"""Where models run.

Models, their forward passes and the analyzers' batched solvers run on one device: the one a
user names (``--device`` on the command line, ``device=`` in Python), or by default a CUDA GPU
when torch finds one, else the CPU. Task data are generated on the CPU and batches move to the
model's device as they run; results come back to the CPU as numbers and files.
"""

import torch

from headcoop.errors import HeadcoopError

Device = str | torch.device | None
"""A device as users give it: a name ('cpu', 'cuda', 'cuda:1'), a torch.device, or None for
the default."""


def resolve_device(device: Device = None) -> torch.device:
    """The torch device that ``device`` names; None (or 'auto') picks CUDA when available.

    >>> resolve_device("cpu")
    device(type='cpu')

    Raises:
        HeadcoopError: the name is not a device, or the device is not on this machine.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise HeadcoopError(f"unknown device {device!r} (try 'cpu' or 'cuda')") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise HeadcoopError(f"device {device!r} is not available: torch finds no CUDA GPU")
        if resolved.index is not None and resolved.index >= count:
            raise HeadcoopError(f"device {device!r} is not available: this machine has {count}")
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise HeadcoopError(f"device {device!r} is not available on this machine")
    elif resolved.type not in ("cpu", "cuda", "mps", "meta"):
        raise HeadcoopError(f"unsupported device {device!r} (try 'cpu' or 'cuda')")
    return resolved


def device_of(model: torch.nn.Module) -> torch.device:
    """The device a model's weights are on."""
    return next(model.parameters()).device
