"""Parameter sweeps of a notebook: one image, one papermill run per parameter set, on a backend (local, slurm, k8s)."""
from __future__ import annotations

from .results import collect
from .core import cancel, retry, status, submit, wait

__all__ = ["cancel", "collect", "retry", "status", "submit", "wait"]
