"""Driver-aware CUDA: cap the CUDA an environment gets (PyPI's torch builds, nvidia/cuda base images) at what the
GPU host's driver runs, or at what --cuda / the config says where the build host has no GPU. Pure logic; the host's
CUDA driver version comes from the GPU module through a callable."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name

from .errors import SpecError, UsageError

# The CUDA that PyPI's Linux x86_64 torch wheels are built for (their nvidia-cuda-runtime / cuda-toolkit pins):
# (first torch minor with it, CUDA). torch 2.0: 11.7; 2.1-2.4: 12.1; 2.5-2.6: 12.4; 2.7: 12.6; 2.8-2.10: 12.8;
# 2.11 on: 13.0.
TORCH_CUDA: tuple[tuple[tuple[int, int], str], ...] = (
    ((2, 0), "11.7"), ((2, 1), "12.1"), ((2, 5), "12.4"), ((2, 7), "12.6"), ((2, 8), "12.8"), ((2, 11), "13.0"),
)
# nvidia/cuda image releases, newest patch of each minor.
CUDA_IMAGE_RELEASES = ("11.8.0", "12.0.1", "12.1.1", "12.2.2", "12.3.2", "12.4.1", "12.5.1", "12.6.3", "12.8.1",
                       "12.9.1", "13.0.2")
CUDA_IMAGE = re.compile(r"^(?P<repo>(?:[\w.-]+(?::\d+)?/)?nvidia/cuda):(?P<version>\d+\.\d+)(?:\.\d+)?(?P<rest>-.*)?$")
TORCH_FAMILY = {"torch"}


@dataclass(frozen=True)
class CudaChoice:
    """What CUDA the environment gets: the cap and where it came from, the torch constraint and base it implies."""

    cap: str | None = None
    origin: str = ""
    constraints: tuple[str, ...] = ()
    base: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def parse_cuda(text: str, source: str = "--cuda") -> tuple[int, int]:
    """'12.4' -> (12, 4); a clear error for anything else."""
    m = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.\d+)?\s*", str(text))
    if not m:
        raise UsageError(f"{source} {text}: not a CUDA version like 12.4", "give MAJOR.MINOR, e.g. --cuda 12.4")
    return int(m.group(1)), int(m.group(2))


def _text(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def torch_constraint(cap: tuple[int, int]) -> str | None:
    """The constraint that keeps PyPI's torch at a build for CUDA <= cap (None when every torch fits)."""
    fitting = [minor for minor, cuda in TORCH_CUDA if parse_cuda(cuda) <= cap]
    if not fitting:
        raise SpecError("torch", f"no PyPI build of torch 2.x runs with CUDA {_text(cap)} (the oldest needs "
                        f"{TORCH_CUDA[0][1]})", "update the NVIDIA driver, or pass a newer --cuda for another host")
    newer = [minor for minor, cuda in TORCH_CUDA if parse_cuda(cuda) > cap]
    return f"torch<{_text(newer[0])}" if newer else None


def cap_base(base: str, cap: tuple[int, int]) -> tuple[str, str | None]:
    """An nvidia/cuda base newer than cap becomes the newest release <= cap (same flavour); others are kept."""
    m = CUDA_IMAGE.match(base)
    if not m or parse_cuda(m.group("version")) <= cap:
        return base, None
    fitting = [r for r in CUDA_IMAGE_RELEASES if parse_cuda(r) <= cap]
    if not fitting:
        raise SpecError("base", f"{base} needs CUDA {m.group('version')} and no nvidia/cuda release fits CUDA "
                        f"{_text(cap)}", "update the NVIDIA driver, or pass a newer --cuda for another host")
    chosen = f"{m.group('repo')}:{fitting[-1]}{m.group('rest') or ''}"
    return chosen, f"base {base} needs CUDA {m.group('version')}: using {chosen}"


def wants_cuda(requirement_names: list[str], base: str | None) -> bool:
    """True when the environment asks for CUDA: torch among the requirements, or an nvidia/cuda base."""
    names = {canonicalize_name(n) for n in requirement_names}
    return bool(names & TORCH_FAMILY) or bool(base and CUDA_IMAGE.match(base))


def decide(requirement_names: list[str], base: str | None, *, option: str | None = None, configured: str | None = None,
           host_cuda: Callable[[], str | None] = lambda: None) -> CudaChoice:
    """The cap: --cuda, else the config (DSENV_CUDA / config.toml cuda), else this host's driver; no cap without
    any of them. Only environments that ask for CUDA are looked at (the host's driver is not even queried)."""
    if not wants_cuda(requirement_names, base):
        if option:
            parse_cuda(option)
        return CudaChoice()
    if option:
        cap, origin = parse_cuda(option), "--cuda"
    elif configured:
        cap, origin = parse_cuda(configured, "DSENV_CUDA / config cuda"), "the config (DSENV_CUDA / cuda)"
    else:
        driver = host_cuda()
        if not driver:
            return CudaChoice(notes=("CUDA: no NVIDIA driver on this host and no --cuda: not capped (torch from "
                                     "PyPI brings its newest CUDA build; pass --cuda X.Y for the GPU host's driver)",))
        cap, origin = parse_cuda(driver, "the driver's CUDA version"), f"this host's driver (CUDA {driver})"
    notes = []
    constraints: tuple[str, ...] = ()
    names = {canonicalize_name(n) for n in requirement_names}
    if names & TORCH_FAMILY:
        constraint = torch_constraint(cap)
        if constraint:
            constraints = (constraint,)
            notes.append(f"CUDA capped at {_text(cap)} by {origin}: {constraint} (newer torch builds need a newer CUDA)")
        else:
            notes.append(f"CUDA {_text(cap)} from {origin}: every torch build fits")
    new_base = base
    if base:
        new_base, note = cap_base(base, cap)
        if note:
            notes.append(f"CUDA capped at {_text(cap)} by {origin}: {note}")
    return CudaChoice(_text(cap), origin, constraints, new_base, tuple(notes))


def host_cuda_version() -> str | None:
    """The CUDA version this host's NVIDIA driver supports ('13.0'), or None without a driver/NVML."""
    from . import gpu
    from .errors import DsenvError

    try:
        return gpu.discover().cuda_driver or None
    except DsenvError:
        return None
