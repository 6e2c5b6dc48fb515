"""The one exception hierarchy of dsenv: every failure a user can meet, with a one-line message and a hint."""
from __future__ import annotations

import re


CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/\s:@]+):(?P<password>[^@\s/]+)@")


def mask_credentials(text: str) -> str:
    """user:password@ in URLs becomes user:****@ (error messages, logs and plans never show a password)."""
    return CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:****@", text)


class DsenvError(Exception):
    """Base of every dsenv error: a one-line message saying what went wrong and a hint saying what to do."""

    exit_code = 1
    hint = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        message = mask_credentials(message)
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = mask_credentials(hint)

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The message and its hint as one line, as the CLI prints it."""
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class UsageError(DsenvError):
    """The command was called with something that cannot work (a missing path, a bad option value)."""

    exit_code = 2


class NotebookError(DsenvError):
    """A notebook could not be read: not JSON, not nbformat, unreadable."""

    exit_code = 3

    def __init__(self, path: str, problem: str, hint: str | None = None) -> None:
        super().__init__(f"{path}: {problem}", hint or "fix or remove the notebook; dsenv has not changed it")
        self.path = path
        self.problem = problem


class SpecError(DsenvError):
    """A spec source (metadata.dsenv, dsenv.toml, requirements.txt, ...) holds something invalid."""

    exit_code = 4

    def __init__(self, source: str, problem: str, hint: str | None = None) -> None:
        super().__init__(f"{source}: {problem}", hint or f"edit {source}")
        self.source = source
        self.problem = problem


class ConflictError(SpecError):
    """Two sources ask for different versions of the same package."""

    def __init__(self, package: str, first: tuple[str, str], second: tuple[str, str]) -> None:
        (spec_a, src_a), (spec_b, src_b) = first, second
        DsenvError.__init__(
            self,
            f"conflicting pins for {package}: '{spec_a}' from {src_a} and '{spec_b}' from {src_b}",
            f"keep one pin: edit {src_a} or {src_b}",
        )
        self.source = f"{src_a}, {src_b}"
        self.problem = "conflict"
        self.package = package
        self.sources = (src_a, src_b)


class LockError(DsenvError):
    """Resolving the requirements to exact versions failed (unknown package, unsatisfiable pins, no index)."""

    exit_code = 5

    def __init__(self, message: str, hint: str | None = None, packages: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint)
        self.packages = packages


class EngineError(DsenvError):
    """The Docker engine refused or failed an operation."""

    exit_code = 6


class DaemonUnavailable(EngineError):
    """No Docker daemon answers where dsenv looked for one."""

    hint = "start the Docker daemon (e.g. 'sudo systemctl start docker' or 'dockerd &'), or set DOCKER_HOST"


class DaemonPermissionDenied(EngineError):
    """The Docker socket exists but this user may not use it."""

    hint = "add your user to the 'docker' group (then log in again), or run as a user who may use the socket"


class BaseImageMissing(EngineError):
    """The base image is neither present nor pullable."""

    hint = "run 'dsenv base bootstrap' to make a Debian-based Python image from Debian packages, or set base_image"


class BuildError(EngineError):
    """A step of the image build failed."""

    def __init__(self, step: str, reason: str, log_tail: list[str]) -> None:
        tail = " | ".join(line.strip() for line in log_tail[-5:] if line.strip())
        super().__init__(
            f"build failed at {step}: {reason}" + (f" -- last lines: {tail}" if tail else ""),
            "read the step's output above (or rerun with --debug); fix the requirement or apt package it names",
        )
        self.step = step
        self.reason = reason
        self.log_tail = log_tail


class SecretNeedsBuildKit(EngineError):
    """A build needs a secret (an index's credentials), which only a BuildKit builder can take without leaving it
    in the image."""

    hint = ("install a docker CLI with BuildKit (Debian's docker.io, or the buildx plugin) and unset "
            "DSENV_BUILDER=classic")


class BootstrapError(DsenvError):
    """Making the local Debian base image failed."""

    exit_code = 7


class RunError(EngineError):
    """A container could not be started or did not come up (Jupyter not answering, bad mount, bad option)."""


class OutOfMemory(RunError):
    """The container was killed by its memory limit (the kernel's OOM killer); exits 137 like the shell would."""

    exit_code = 137

    def __init__(self, name: str, limit: str | None) -> None:
        super().__init__(f"{name} ran out of memory and was killed" + (f" (limit --memory {limit})" if limit else ""),
                         "raise --memory, or use less memory" if limit else "free memory on the host, or use less")


class PortInUse(RunError):
    """A host port the user asked for is taken."""

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} on 127.0.0.1 is already in use", "choose another port with -p, or omit it to get a free one")
        self.port = port


class NameInUse(RunError):
    """A container name the user asked for is taken."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a container named {name} already exists",
                         f"choose another --name, or remove it with 'dsenv rm {name}'")
        self.name = name


class GpuUnavailable(RunError):
    """GPUs were asked for but the engine cannot give any (no NVIDIA runtime, no GPU)."""

    hint = "run without --gpus, or install the NVIDIA container toolkit on the Docker host"


class ContainerNotFound(EngineError):
    """No dsenv container has that name or id."""

    hint = "list containers with 'dsenv ps'"


class ImageTagExists(EngineError):
    """Committing or tagging would overwrite an existing image tag."""

    hint = "choose another tag, or pass --force to move the tag (the old image keeps its id)"


class RegistryError(EngineError):
    """A registry refused or could not be reached during push or pull."""


class ReproError(DsenvError):
    """A reproducible run failed: a cell raised, or the run could not happen; the output notebook is kept."""

    exit_code = 9

    def __init__(self, message: str, hint: str | None = None, *, cell_index: int | None = None, ename: str = "",
                 evalue: str = "", traceback: list[str] | None = None, output: str | None = None) -> None:
        super().__init__(message, hint)
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback or []
        self.output = output


class GpuError(DsenvError):
    """GPUs cannot be listed or allocated: no NVML, no GPU, unknown UUID, not enough free GPUs."""

    exit_code = 6


class RemoteError(EngineError):
    """A remote Docker host (ssh://) could not be used: unreachable, refused our key, unknown host key, no Docker."""


class RemoteUnreachable(RemoteError):
    """The remote host does not answer on its SSH port (down, wrong name or port, firewall, timeout)."""

    hint = "check the host name and port (and that sshd runs there); try 'ssh -p PORT USER@HOST' by hand"


class RemoteAuthRefused(RemoteError):
    """The remote's sshd refused every key offered."""

    hint = ("give the right key ('dsenv hosts add NAME URL --identity KEY', IdentityFile in ~/.ssh/config or "
            "ssh-add), or install yours there with 'ssh-copy-id USER@HOST'")


class RemoteHostKeyUnknown(RemoteError):
    """The remote's host key is not in known_hosts (or changed): dsenv never trusts a key on its own."""

    hint = ("connect once with 'ssh -p PORT USER@HOST' and compare the fingerprint before answering yes (or add "
            "'ssh-keyscan -p PORT HOST' output to ~/.ssh/known_hosts after checking it)")


class RemoteDockerMissing(RemoteError):
    """The remote host has no docker CLI (needed for 'docker system dial-stdio') or no daemon running."""

    hint = "install Docker on the remote host (e.g. 'apt-get install docker.io') and start it"


class TunnelError(DsenvError):
    """An SSH port forward could not be opened, found or closed."""

    exit_code = 6
    hint = "list forwards with 'dsenv tunnels'"


class SyncError(DsenvError):
    """Syncing a notebook folder to or from a remote host failed."""

    exit_code = 6
    hint = "nothing local was deleted or overwritten; rerun, or copy the files with 'dsenv exec'"
