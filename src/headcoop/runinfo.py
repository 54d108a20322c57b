"""What produced a result: the machine and the software, recorded beside every report."""

import os
import platform
from importlib import metadata
from typing import Any


def machine(device: str = "cpu") -> dict[str, Any]:
    """Cores, threads, device and the versions that matter, as a JSON-ready dict."""
    import torch

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "torch": torch.__version__,
        "transformer_lens": version("transformer-lens"),
        "headcoop": version("headcoop"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
