"""Gathering a sweep's results: one row per parameter set with its parameters, the values the notebook recorded
(dsenv.record, or scrapbook's glue) and provenance; as rows, JSON or CSV. Plain papermill outputs work too: a folder
of executed notebooks gives their papermill parameters and recorded values."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from . import state as st
from .errors import SweepNotFound
from .runner import records_of as recorded_outputs
PROVENANCE_COLUMNS = ("state", "exit_code", "node", "seconds", "job_id", "array_task_id", "image_digest", "output")


def records_of(nb: dict[str, Any]) -> dict[str, Any]:
    """Recorded values of an executed notebook: metadata.dsenv.records, else the record/scrap outputs themselves."""
    meta = (nb.get("metadata") or {}).get("dsenv") or {}
    if isinstance(meta, dict) and isinstance(meta.get("records"), dict) and meta["records"]:
        return dict(meta["records"])
    return recorded_outputs(nb)


def _digest(prov: dict[str, Any]) -> str:
    ref = prov.get("image_ref", "")
    if "@" in ref:
        return ref.split("@", 1)[1]
    digests = prov.get("repo_digests") or []
    return digests[0].split("@", 1)[1] if digests else prov.get("image_id", "")


def row_of(path: Path, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """One output notebook as a row: parameters, recorded values, provenance ('' where unknown)."""
    nb = json.loads(path.read_text())
    meta = nb.get("metadata") or {}
    prov = ((meta.get("dsenv") or {}).get("provenance") or {}) if isinstance(meta.get("dsenv"), dict) else {}
    params = dict(parameters if parameters is not None else
                  prov.get("parameters") or (meta.get("papermill") or {}).get("parameters") or {})
    sweep = prov.get("sweep") or {}
    code = prov.get("exit_code")
    if code is None:
        failed = any(o.get("output_type") == "error" for c in nb.get("cells", []) for o in c.get("outputs", []) or [])
        state = "FAILED" if failed else "COMPLETED"
    else:
        state = "COMPLETED" if code == 0 else "FAILED"
    return {"parameters": params, "records": records_of(nb),
            "provenance": {"state": state, "exit_code": code, "node": sweep.get("node") or prov.get("host", ""),
                           "seconds": prov.get("seconds"), "job_id": sweep.get("array_job_id") or sweep.get("job_id", ""),
                           "array_task_id": sweep.get("array_task_id", ""), "image_digest": _digest(prov),
                           "image_id": prov.get("image_id", ""), "output": str(path)}}


def collect(ref: str | Path) -> list[dict[str, Any]]:
    """Rows of a sweep (by id or folder), in grid order, one per parameter set (tasks without output show their
    state); or of any folder of executed notebooks."""
    try:
        sweep, states = _status(ref)
    except SweepNotFound:
        folder = Path(ref)
        if not folder.is_dir():
            raise
        rows = [row_of(p) for p in sorted(folder.glob("*.ipynb"))]
        if not rows:
            raise SweepNotFound(f"no sweep {ref}, and no executed notebooks in it") from None
        return [{"task": i, "name": Path(r["provenance"]["output"]).stem, **r} for i, r in enumerate(rows)]
    rows = []
    by_index = {t.index: t for t in sweep.tasks}
    for s in states:
        task = by_index[s.index]
        path = sweep.output_of(task)
        if path.is_file() and st.read_provenance(path).get("image_id") == sweep.image.get("id"):
            row = row_of(path, task.parameters)
            row["provenance"]["state"] = s.state if s.state not in ("COMPLETED", "FAILED") else row["provenance"]["state"]
        else:
            row = {"parameters": dict(task.parameters), "records": {},
                   "provenance": {"state": s.state, "exit_code": s.exit_code, "node": s.node, "seconds": s.elapsed,
                                  "job_id": s.job_id, "array_task_id": "", "image_digest": "", "image_id": "",
                                  "output": ""}}
        rows.append({"task": task.index, "name": task.name, **row})
    return rows


def _status(ref):
    from .core import status

    return status(ref)


def flatten(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns (task, name, parameters, recorded values, provenance) and flat rows for tables and CSV."""
    params: list[str] = []
    recs: list[str] = []
    for r in rows:
        params += [k for k in r["parameters"] if k not in params]
        recs += [k for k in r["records"] if k not in recs]
    columns = ["task", "name", *params, *[k for k in recs if k not in params], *PROVENANCE_COLUMNS]
    flat = []
    for r in rows:
        flat.append({"task": r["task"], "name": r["name"], **{k: r["parameters"].get(k, "") for k in params},
                     **{k: r["records"].get(k, "") for k in recs if k not in params},
                     **{k: r["provenance"].get(k, "") for k in PROVENANCE_COLUMNS}})
    return columns, flat


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV with a header line (lists and mappings as JSON)."""
    columns, flat = flatten(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in flat:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v)
                         for k, v in r.items()})
    return buf.getvalue()


def to_table(rows: list[dict[str, Any]], width: int = 14) -> str:
    """The rows as an aligned text table (long values shortened)."""
    columns, flat = flatten(rows)
    columns = [c for c in columns if c not in ("output", "image_digest")]

    def cell(v: Any) -> str:
        text = f"{v:.6g}" if isinstance(v, float) else ("" if v is None else str(v))
        return text if len(text) <= width + 10 else text[: width + 9] + "…"

    cells = [[cell(r.get(c)) for c in columns] for r in flat]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)
