"""What every run records about itself: package versions, git commit, device, host."""

from __future__ import annotations

import importlib.metadata
import platform
import resource
import subprocess
import sys
from pathlib import Path

from sae_transfer.core.paths import PROJECT_ROOT

PACKAGES = (
    "sae-transfer", "torch", "sae-lens", "transformer-lens", "transformers", "tokenizers", "numpy",
    "scikit-learn", "matplotlib", "seaborn", "papermill", "myst-nb", "jupyter-book",
)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    """HEAD's hash, with ``+dirty`` when tracked files differ from it; ``unknown`` outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_description(device: str | None = None) -> str:
    import torch

    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def proc_status_bytes(field: str) -> int | None:
    """A memory field of Linux's /proc/self/status (``VmRSS``, ``VmHWM``, ...) in bytes; None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux, VmHWM: ``ru_maxrss`` survives ``exec``, so a kernel
    started by a process that had built the zoo would report the builder's peak as its own."""
    if (hwm := proc_status_bytes("VmHWM")) is not None:
        return hwm / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024**2 if sys.platform == "darwin" else 1024)
