"""Errors of sweeps: each one line with a hint, all DsenvErrors (the CLI prints them without a traceback)."""
from __future__ import annotations

from ..errors import DsenvError, UsageError


class SweepError(DsenvError):
    """A sweep could not be planned, submitted, found or read."""

    exit_code = 12


class GridError(UsageError):
    """The parameter grid is malformed (a bad name, an empty axis, a grid file that is not a mapping)."""


class SweepNotFound(SweepError):
    """No sweep has that id or folder."""

    hint = "list the sweep id printed at submission, or give the sweep's output folder"


class BackendNotFound(SweepError):
    """No sweep backend of that name is registered."""


class SchedulerMissing(SweepError):
    """The scheduler's commands (sbatch, kubectl) are not on PATH."""


class SchedulerUnavailable(SweepError):
    """The scheduler's commands exist but its controller does not answer."""


class UnknownPartition(SweepError):
    """The Slurm partition asked for does not exist."""


class NotEnoughResources(SweepError):
    """No node of the partition can give what one task asks for (CPUs, memory, GPUs)."""


class SubmitError(SweepError):
    """The scheduler refused the submission."""


class RegistryUnreachable(SweepError):
    """The image could not be pushed to the registry every node pulls from."""


class ManifestInvalid(SweepError):
    """A rendered Kubernetes manifest does not validate against the Kubernetes schema."""
