"""Reproducible runs: papermill inside the environment's image, provenance recorded in the output notebook."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, atomic
from .errors import DsenvError, ReproError, UsageError
from .notebook import OUTPUT_SUFFIX
from .yamlfile import read_yaml_file

OUT_DIR = "/home/dsenv/out"
# Run in the kernel before the notebook: NumPy's global random state (what scikit-learn, SciPy and others draw
# from when no random_state is given) starts from the recorded seed, so library-internal randomness repeats.
# Python's own `random` module is left alone: randomness the notebook asks for explicitly shows up in `verify`.
SEED_STARTUP = """import os as _os
try:
    import numpy as _np
    _np.random.seed(int(_os.environ.get("DSENV_SEED", "0")))
except ImportError:
    pass
"""
KERNEL = "python3"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class ReproResult:
    """An executed notebook: where it was written, its provenance, and how long the run took."""

    output: Path
    provenance: dict[str, Any]
    seconds: float
    notebook: Any = field(repr=False, default=None)


def parse_parameters(pairs: list[tuple[str, str]] | None, files: list[str] | None = None) -> list[str]:
    """papermill's own arguments for parameters: -p NAME VALUE (papermill infers the type), -f FILE as YAML."""
    args: list[str] = []
    for path in files or []:
        data = read_yaml_file(path, "parameters file", "give a YAML file of name: value")
        if not isinstance(data, dict):
            raise UsageError(f"-f {path}: must map parameter names to values")
        args += ["-y", json.dumps(data)]
    for name, value in pairs or []:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageError(f"-p {name}: not a Python name", "parameters are variables of the parameters cell")
        args += ["-p", name, value]
    return args


def _read(path: Path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


def first_error(nb) -> tuple[int, dict] | None:
    """The first code cell whose outputs hold an error: (cell index, the error output)."""
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return index, out
    return None


def write_atomically(path: Path, nb) -> None:
    """Write a notebook through a temporary file in the same folder, then rename: never a half-written notebook."""
    import nbformat

    atomic.write_text(path, nbformat.writes(nb))


def execute_in_image(notebook_in_folder: Path, folder: Path, image: str, args: list[str], *, timeout: int,
                     gpus: str | None = None, on_output: Callable[[str], None] | None = None,
                     source: Path | None = None, seed: int = 0) -> tuple[Any, int, dict[str, Any]]:
    """papermill inside the image: the folder mounted at the work dir, the output in a private mount; returns
    (executed notebook or None, papermill's exit code, facts for the provenance)."""
    from . import containers, engine

    rel = notebook_in_folder.relative_to(folder)
    with tempfile.TemporaryDirectory(prefix="dsenv-repro-") as out:
        os.chmod(out, 0o777)
        startup = Path(out, "ipython", "profile_default", "startup")
        startup.mkdir(parents=True)
        (startup / "00-dsenv-seed.py").write_text(SEED_STARTUP)
        for d in (startup, startup.parent, startup.parent.parent):
            os.chmod(d, 0o777)
        inside = f"{containers.WORKDIR}/{rel.as_posix()}"
        if source is not None:  # an already parameterized notebook (papermill's engine): run that copy
            shutil.copy(source, Path(out) / "input.ipynb")
            inside = f"{OUT_DIR}/input.ipynb"
        cwd = f"{containers.WORKDIR}/{rel.parent.as_posix()}".rstrip("/.")
        command = ["papermill", inside, f"{OUT_DIR}/output.ipynb", "-k", KERNEL, "--cwd", cwd or containers.WORKDIR,
                   "--execution-timeout", str(timeout), "--no-progress-bar", "--log-output", *args]
        env = {"IPYTHONDIR": f"{OUT_DIR}/ipython", "DSENV_SEED": str(seed), "PYTHONHASHSEED": str(seed)}
        options = containers.RunOptions(command=command, image=image, volumes=[f"{out}:{OUT_DIR}:rw"], gpus=gpus,
                                        env=env)
        started = time.time()
        result = containers.run(folder, options, on_output=on_output)
        ended = time.time()
        produced = Path(out) / "output.ipynb"
        nb = _read(produced) if produced.is_file() else None
    info = engine.image_info(image)
    facts = {
        "image_id": info.id if info else image,
        "image_tag": (info.tags[0] if info and info.tags else "") if image.startswith("sha256:") else image,
        "repo_digests": engine.repo_digests(image) if info else [],
        "spec_sha256": (info.labels if info else {}).get("io.dsenv.spec.sha256", ""),
        "lock_sha256": (info.labels if info else {}).get("io.dsenv.lock.sha256", ""),
        "gpus": [g for g in (gpus or "").split(",") if g],
        "host": socket.gethostname(),
        "dsenv_version": __version__,
        "kernel": KERNEL,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ended)),
        "seconds": round(ended - started, 3),
        "exit_code": result.exit_code,
        "seed": seed,
    }
    return nb, int(result.exit_code or 0), facts


def add_provenance(nb, facts: dict[str, Any], input_path: Path) -> dict[str, Any]:
    """Record provenance under metadata.dsenv.provenance: the facts plus the parameters papermill injected."""
    papermill = nb.metadata.get("papermill", {})
    provenance = {**facts, "input": str(input_path), "parameters": dict(papermill.get("parameters") or {}),
                  "papermill_version": papermill.get("version", "")}
    nb.metadata.setdefault("dsenv", {})["provenance"] = provenance
    return provenance


def raise_for_failure(nb, output: Path, exit_code: int, logs: str = "") -> None:
    """A ReproError naming the failing cell, its exception and the last traceback lines (the output is kept)."""
    hit = first_error(nb) if nb is not None else None
    if hit:
        index, err = hit
        tb = [ANSI.sub("", line) for line in err.get("traceback", [])]
        last = " | ".join(line.strip().splitlines()[-1] for line in tb[-2:] if line.strip())
        raise ReproError(f"cell {index} raised {err.get('ename')}: {err.get('evalue')} -- {last}"[:600],
                         f"the executed notebook, with the error marked, is {output}", cell_index=index,
                         ename=err.get("ename", ""), evalue=err.get("evalue", ""), traceback=tb, output=str(output))
    if exit_code:
        tail = " | ".join(line for line in logs.strip().splitlines()[-4:])
        raise ReproError(f"papermill exited with code {exit_code}: {tail}"[:600], "run with --debug for the full log",
                         output=str(output) if nb is not None else None)


def default_output(notebook: Path) -> Path:
    """Where the executed notebook goes unless -o says: <stem>.out.ipynb beside the input."""
    return notebook.with_name(notebook.stem + OUTPUT_SUFFIX)


def repro(notebook: str | Path, *, parameters: list[tuple[str, str]] | None = None, files: list[str] | None = None,
          output: str | Path | None = None, timeout: int = 600, gpus: str | None = None, image: str | None = None,
          seed: int = 0, on_output: Callable[[str], None] | None = None, on_event: Callable | None = None) -> ReproResult:
    """Build the notebook folder's environment if needed and run the notebook with papermill inside it; write the
    executed notebook (even when a cell fails) with provenance; raise ReproError naming the failing cell."""
    from .notebook import find_target, load_notebook

    path = Path(notebook)
    target = find_target(path)
    load_notebook(target.path)  # a malformed notebook fails here, with one clear line
    folder = target.folder
    args = parse_parameters(parameters, files)
    if image is None:
        from .api import build

        image = build(folder, on_event=on_event).image_id
    out_path = Path(output) if output else default_output(target.path)
    logs: list[str] = []

    def collect(chunk: str) -> None:
        logs.append(chunk)
        if on_output:
            on_output(chunk)

    start = time.monotonic()
    nb, code, facts = execute_in_image(target.path, folder, image, args, timeout=timeout, gpus=gpus, on_output=collect,
                                       seed=seed)
    if nb is None:
        raise_for_failure(None, out_path, code or 1, "".join(logs))
    provenance = add_provenance(nb, facts, target.path)
    write_atomically(out_path, nb)
    raise_for_failure(nb, out_path, code, "".join(logs))
    return ReproResult(out_path, provenance, time.monotonic() - start, nb)


def provenance_of(path: Path) -> dict[str, Any]:
    """The provenance a dsenv run recorded in an output notebook; UsageError when there is none."""
    from .notebook import load_notebook

    nb = load_notebook(path)
    prov = (nb.metadata.get("dsenv") or {}).get("provenance") if isinstance(nb.metadata.get("dsenv"), dict) else None
    if not prov or not prov.get("image_id"):
        raise UsageError(f"{path} has no dsenv provenance", "run it with 'dsenv repro' first, or give --against OUTPUT")
    return prov


def rerun_parameters(provenance: dict[str, Any]) -> list[str]:
    """The recorded parameters as papermill arguments (types kept through YAML)."""
    params = provenance.get("parameters") or {}
    return ["-y", json.dumps(params)] if params else []


def ensure_image(provenance: dict[str, Any]) -> str:
    """The recorded image by id (pulled by its digest if it is not here); a moving tag is never trusted."""
    from . import engine

    image_id = provenance["image_id"]
    if engine.image_info(image_id):
        return image_id
    for digest in provenance.get("repo_digests") or []:
        try:
            repo, _, dig = digest.partition("@")
            engine.pull(repo, dig)
        except DsenvError:
            continue
        if engine.image_info(image_id):
            return image_id
    raise ReproError(f"the recorded image {image_id[:19]} is not here and could not be pulled by digest",
                     "push images you want to verify later ('dsenv push'), or rebuild and run 'dsenv repro' again")


@dataclass
class VerifyReport:
    """A re-run compared with a recorded one: 'equal', 'differs' (with the cells) or 'could not run'."""

    status: str
    reference: Path
    comparison: Any = None
    seconds: float = 0.0
    detail: str = ""


def _reference_for(notebook: Path, against: Path | None) -> Path:
    if against:
        return against
    try:
        provenance_of(notebook)
        return notebook
    except UsageError:
        fallback = default_output(notebook)
        if fallback.is_file():
            return fallback
        raise


def verify(notebook: str | Path, *, against: str | Path | None = None, rtol: float = 0.0, timeout: int = 600,
           on_output: Callable[[str], None] | None = None) -> VerifyReport:
    """Re-run a notebook in the image its recorded run used (by id, with the recorded parameters) and compare the
    outputs cell by cell with that run."""
    from .compare import compare
    from .notebook import find_target

    given = Path(notebook)
    reference = _reference_for(given, Path(against) if against else None)
    prov = provenance_of(reference)
    source = given if (against or reference != given) else Path(prov.get("input") or given)
    if not source.is_file():
        source = reference
    image = ensure_image(prov)
    target = find_target(source)
    gpus = str(len(prov.get("gpus") or [])) if prov.get("gpus") else None
    start = time.monotonic()
    try:
        nb, code, _ = execute_in_image(target.path, target.folder, image, rerun_parameters(prov), timeout=timeout,
                                       gpus=gpus, on_output=on_output, seed=int(prov.get("seed", 0)))
    except DsenvError as e:
        return VerifyReport("could not run", reference, None, time.monotonic() - start, e.one_line())
    if nb is None:
        return VerifyReport("could not run", reference, None, time.monotonic() - start, f"papermill exited with {code}")
    comparison = compare(_read(reference), nb, rtol)
    return VerifyReport("equal" if comparison.equal else "differs", reference, comparison, time.monotonic() - start)
