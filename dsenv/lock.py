"""Lock: the spec's requirements resolved with uv to exact versions and hashes, for the target Python and Linux."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from .errors import LockError
from .indexes import canonical as canonical_indexes
from .indexes import uv_environment
from .spec import EnvSpec

RUNTIME = {
    "lab": ("ipykernel", "papermill", "jupyterlab", "pip"),
    "notebook": ("ipykernel", "papermill", "notebook", "pip"),
    "kernel": ("ipykernel", "papermill", "pip"),
}
# Left out of every lock unless the notebook names them itself: optional extras of the Jupyter runtime's own
# dependencies whose import is slow and which nothing needs. rfc3987-syntax arrives through jupyter-events'
# jsonschema[format-nongpl] and builds an Earley parser when imported: a second of every Jupyter start, for checking
# "iri" formats that no Jupyter event schema uses (jsonschema skips a format whose checker is not installed).
LEFT_OUT = {"rfc3987-syntax": "its import costs about a second at every Jupyter start; jsonschema runs without it"}
USER_IN, RUNTIME_IN, CONSTRAINTS_IN, EXCLUDES_IN = "requirements.in", "runtime.in", "constraints.in", "excludes.in"
HEADER = "# dsenv lock"


@dataclass(frozen=True)
class LockedPackage:
    """One pinned distribution of a lock, its hash lines, what asked for it, and whether it is runtime-only."""

    name: str
    version: str
    block: str
    via: tuple[str, ...]
    runtime_only: bool = False


@dataclass
class Lock:
    """A resolved environment: the lock file's text and its parsed packages."""

    text: str
    inputs_sha256: str
    packages: list[LockedPackage] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        """sha256 of the lock file's text."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def layer_text(self, runtime: bool) -> str:
        """Requirements text of one image layer: the user's environment (runtime=False) or the Jupyter runtime."""
        blocks = [p.block for p in self.packages if p.runtime_only == runtime]
        return "\n".join(blocks) + ("\n" if blocks else "")


def lock_inputs(spec: EnvSpec, platform: str, as_of: str | None) -> dict:
    """Everything the resolution depends on; its hash tells whether an existing lock is still valid (the spec's
    constraints, limits that are the build host's rather than the notebook's, count only when there are some)."""
    inputs = {
        "as_of": as_of,
        "platform": platform,
        "python": spec.python,
        "requirements": sorted((r.requirement for r in spec.requirements), key=str.lower),
        "runtime": list(RUNTIME[spec.jupyter]),
    }
    if spec.constraints:
        inputs["constraints"] = sorted(spec.constraints)
    excluded = left_out(spec)
    if excluded:
        inputs["left_out"] = excluded
    if spec.indexes:
        inputs["indexes"] = canonical_indexes(spec.indexes)
    return inputs


def left_out(spec: EnvSpec) -> list[str]:
    """The LEFT_OUT packages this spec's lock leaves out: all of them but those a requirement names."""
    named = {canonicalize_name(r.name) for r in spec.requirements}
    return sorted(name for name in LEFT_OUT if name not in named)


def inputs_sha256(inputs: dict) -> str:
    """Stable hash of lock inputs."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_lock(path: Path) -> Lock | None:
    """A lock file written by dsenv, or None when there is none or it is not one of ours."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r"^# inputs: sha256:([0-9a-f]{64})$", text, re.M)
    if not text.startswith(HEADER) or not m:
        return None
    return Lock(text=text, inputs_sha256=m.group(1), packages=parse_packages(text))


def is_current(lock: Lock | None, spec: EnvSpec, platform: str, as_of: str | None) -> bool:
    """True when the lock was made from exactly these inputs."""
    return lock is not None and lock.inputs_sha256 == inputs_sha256(lock_inputs(spec, platform, as_of))


def resolve(spec: EnvSpec, platform: str, as_of: str | None = None) -> Lock:
    """Resolve the spec (plus the Jupyter runtime) with `uv pip compile` for the target Python and platform, within
    the constraints (uv's --constraint: they limit versions, they add no package)."""
    inputs = lock_inputs(spec, platform, as_of)
    constraints = spec.constraints
    digest = inputs_sha256(inputs)
    with tempfile.TemporaryDirectory(prefix="dsenv-lock-") as tmp:
        Path(tmp, USER_IN).write_text("".join(r.requirement + "\n" for r in spec.requirements))
        Path(tmp, RUNTIME_IN).write_text("".join(r + "\n" for r in inputs["runtime"]))
        cmd = [_uv(), "pip", "compile", USER_IN, RUNTIME_IN, "--python-version", spec.python,
               "--python-platform", platform, "--generate-hashes", "--no-header", "--quiet"]
        if as_of:
            cmd += ["--exclude-newer", as_of]
        if constraints:
            Path(tmp, CONSTRAINTS_IN).write_text("".join(c + "\n" for c in sorted(constraints)))
            cmd += ["--constraint", CONSTRAINTS_IN]
        if inputs.get("left_out"):
            Path(tmp, EXCLUDES_IN).write_text("".join(name + "\n" for name in inputs["left_out"]))
            cmd += ["--excludes", EXCLUDES_IN]
        env = {**os.environ, "UV_NO_PROGRESS": "1", "NO_COLOR": "1"}
        env.pop("VIRTUAL_ENV", None)
        env.update(uv_environment(spec.indexes, with_credentials=True))  # never on the command line (ps shows it)
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env, timeout=600)
        except subprocess.TimeoutExpired as e:
            raise LockError("resolving the requirements took over 10 minutes", "check the network or the index") from e
    if proc.returncode != 0:
        error = _lock_error(proc.stderr, spec)
        if constraints and "torch" in error.message:
            error = LockError(f"{error.message} (with {', '.join(constraints)} for this host's CUDA)",
                              "pin a torch built for an older CUDA, update the NVIDIA driver, or pass --cuda for the "
                              "GPU host this image is for", error.packages)
        raise error
    header = [
        HEADER + f" for Python {spec.python} on {platform}" + (f", packages as of {as_of}" if as_of else ""),
        "# Made by `dsenv lock` with `uv pip compile`; edit the notebook or its requirement files, not this file.",
        *([f"# Constrained for this host's CUDA: {', '.join(sorted(constraints))}"] if constraints else []),
        *(f"# Left out: {name} ({LEFT_OUT[name]}; name it in the requirements to keep it)"
          for name in inputs.get("left_out", ())),
        f"# inputs: sha256:{digest}",
        "",
    ]
    body = proc.stdout.replace(f"-r {USER_IN}", "-r notebook requirements").replace(f"-r {RUNTIME_IN}", "-r dsenv runtime").replace(
        f"-c {CONSTRAINTS_IN}", "-c the CUDA cap")
    text = "\n".join(header) + body
    return Lock(text=text, inputs_sha256=digest, packages=parse_packages(text))


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError) as e:
        raise LockError("the uv resolver is not installed", "pip install uv") from e


def parse_packages(text: str) -> list[LockedPackage]:
    """Split uv's requirements output into one block a package, with its `# via` parents."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip() or (line.startswith("#") and not blocks):
            continue
        if not line.startswith((" ", "#")):
            blocks.append([line])
        elif blocks:
            blocks[-1].append(line)
    parsed: list[tuple[str, str, list[str], tuple[str, ...]]] = []
    for block in blocks:
        m = re.match(r"^([A-Za-z0-9_.\-\[\],]+)==([^\s;\\]+)", block[0])
        if not m:
            continue
        name = canonicalize_name(m.group(1).split("[")[0])
        via = tuple(v for v in (re.sub(r"^#\s*(via)?\s*", "", line.strip()).strip() for line in block[1:] if line.strip().startswith("#")) if v)
        req_lines = [line for line in block if not line.strip().startswith("#")]
        parsed.append((name, m.group(2), req_lines, via))
    parents = {name: {canonicalize_name(v) if not v.startswith("-r") else v for v in via} for name, _, _, via in parsed}
    user = _closure(parents, "-r notebook requirements")
    return [LockedPackage(n, v, "\n".join(lines), via, n not in user) for n, v, lines, via in parsed]


def _closure(parents: dict[str, set[str]], root: str) -> set[str]:
    """Packages reachable from a root input through `# via` edges."""
    found = {n for n, ps in parents.items() if root in ps}
    changed = True
    while changed:
        changed = False
        for name, ps in parents.items():
            if name not in found and ps & found:
                found.add(name)
                changed = True
    return found


def _lock_error(stderr: str, spec: EnvSpec) -> LockError:
    """Turn uv's explanation into one line naming the package(s) and the sources that asked for them."""
    text = " ".join(stderr.split())
    sources = {r.name: r.sources for r in spec.requirements}
    missing = re.findall(r"Because ([A-Za-z0-9_.\-]+) was not found in the package registry", text)
    if missing:
        names = tuple(dict.fromkeys(canonicalize_name(m) for m in missing))
        where = "; ".join(f"{n} from {', '.join(sources.get(n, ('a dependency',))[:2])}" for n in names)
        return LockError(f"unknown package: {where}", "check the name on PyPI; for an import, add the distribution "
                         "name to metadata.dsenv requirements", names)
    if "No solution found" in text or "unsatisfiable" in text:
        reason = re.sub(r"^.*?No solution found when resolving dependencies:\s*", "", text)
        named = tuple(n for n in sources if re.search(rf"\b{re.escape(n)}\b", reason, re.I))
        where = "; ".join(f"{n} from {', '.join(sources[n][:2])}" for n in named)
        return LockError(f"requirements cannot be satisfied: {reason[:300]}" + (f" [{where}]" if where else ""),
                         "loosen or change one of the pins named", named)
    if "Failed to fetch" in text or "error sending request" in text or "dns error" in text.lower():
        return LockError(f"cannot reach the package index: {text[:200]}",
                         "check the network; behind a TLS proxy set SSL_CERT_FILE to its CA bundle")
    return LockError(f"resolving failed: {text[:300]}", "run `dsenv lock --debug` for uv's full output")
