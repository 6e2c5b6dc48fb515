"""Comparing two executed notebooks cell by cell, with what is volatile by nature normalised away."""
from __future__ import annotations

import difflib
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,16}")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
IMAGES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")
VOLATILE_DATA = ("application/vnd.jupyter.widget-view+json",)
# Durations printed by tools (scikit-learn's verbose CV lines, %time, tqdm, ...): volatile by nature.
DURATION = re.compile(r"(?i)\b(total time|wall time|cpu times?[^:=\n]*|time|elapsed)(\s*[=:]\s*)[\d.]+\s*(?:ms|µs|us|ns|s|min)\b")
TQDM_RATE = re.compile(r"\[\d+:\d+(?::\d+)?<[^\]]*\]")
ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.S)
CELL = re.compile(r"<t([hd])[^>]*>(.*?)</t[hd]>", re.S)


@dataclass
class CellDifference:
    """One cell whose outputs differ: its index, what kind of difference, and a short diff."""

    cell: int
    kind: str
    detail: str


@dataclass
class Comparison:
    """The result of comparing two notebooks: equal or the list of differing cells, and notes (e.g. images)."""

    differences: list[CellDifference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """True when no cell differs."""
        return not self.differences


def _text(value: Any) -> str:
    text = "".join(value) if isinstance(value, list) else str(value)
    text = ANSI.sub("", ADDRESS.sub("0x?", text))
    text = TQDM_RATE.sub("[?]", DURATION.sub(lambda m: f"{m.group(1)}{m.group(2)}?", text))
    return "\n".join(line.rstrip() for line in text.splitlines())


def _blank_timing_columns(html: str) -> str:
    """In an HTML table (pandas' to_html), blank the columns whose header says 'time' and whose values are numbers
    (fit and score times of a search, durations): they differ on every run."""
    rows = ROW.findall(html)
    if not rows:
        return html
    header = [text.strip() for _, text in CELL.findall(rows[0])]
    timing = {i for i, name in enumerate(header) if re.search(r"(?i)time", name)}
    if not timing:
        return html
    body = [[text.strip() for _, text in CELL.findall(r)] for r in rows[1:]]
    numeric = {i for i in timing if all(i >= len(r) or NUMBER.fullmatch(r[i] or "0") for r in body)}

    def blank(match: re.Match) -> str:
        cells = CELL.findall(match.group(1))
        if len(cells) != len(header) or [t.strip() for _, t in cells] == header:
            return match.group(0)
        return "<tr>" + "".join(f"<t{k}>{'?' if i in numeric else t}</t{k}>" for i, (k, t) in enumerate(cells)) + "</tr>"

    return ROW.sub(blank, html)


def normalise_output(out: dict) -> list[tuple[str, str]]:
    """An output as (key, text) pairs: stream text, data by MIME type (images as hashes), errors by name and value;
    execution counts, metadata, transient ids and widget model ids are dropped."""
    kind = out.get("output_type")
    if kind == "stream":
        return [(f"stream:{out.get('name')}", _text(out.get("text", "")))]
    if kind == "error":
        return [("error", f"{out.get('ename')}: {_text(out.get('evalue', ''))}")]
    pairs = []
    data = out.get("data") or {}
    html = "".join(data.get("text/html", "")) if isinstance(data.get("text/html"), list) else str(data.get("text/html", ""))
    for mime, value in sorted(data.items()):
        if mime in VOLATILE_DATA or (mime == "text/plain" and 'class="dataframe"' in html):
            continue  # a DataFrame is compared through its HTML table, where timing columns can be told apart
        if mime == "text/html":
            if "text/plain" in data and 'class="dataframe"' not in html:
                continue  # an object's rich repr (e.g. an estimator diagram): its text/plain repr is compared
            pairs.append((mime, _text(_blank_timing_columns(html))))
            continue
        if mime in IMAGES:
            raw = value if isinstance(value, str) else "".join(value)
            pairs.append((mime, "sha256:" + hashlib.sha256(raw.encode()).hexdigest()[:16]))
        else:
            pairs.append((mime, _text(value)))
    return pairs


def _pairs(cell: dict) -> list[tuple[str, str]]:
    """A cell's normalised outputs, consecutive stream chunks of one stream joined (their split is timing)."""
    out: list[tuple[str, str]] = []
    for output in cell.get("outputs", []):
        for key, text in normalise_output(output):
            if key.startswith("stream:") and out and out[-1][0] == key:
                out[-1] = (key, out[-1][1] + "\n" + text)
            else:
                out.append((key, text))
    return [(k, "\n".join(line for line in t.splitlines() if line.strip()) if k.startswith("stream:") else t) for k, t in out]


def _numbers_close(a: str, b: str, rtol: float) -> bool:
    """Equal texts, or texts equal outside their numbers whose numbers agree within rtol."""
    if a == b:
        return True
    if rtol <= 0 or NUMBER.sub("#", a) != NUMBER.sub("#", b):
        return False
    for x, y in zip(NUMBER.findall(a), NUMBER.findall(b)):
        if not math.isclose(float(x), float(y), rel_tol=rtol, abs_tol=0.0):
            return False
    return True


def _short_diff(a: str, b: str) -> str:
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "expected", "got", lineterm="", n=0))
    body = [line for line in lines[2:] if not line.startswith("@@")][:6]
    return " | ".join(body)[:300]


def compare(expected: Any, got: Any, rtol: float = 0.0) -> Comparison:
    """Compare the code cells of two executed notebooks (nbformat nodes or dicts) output by output."""
    result = Comparison()
    ecells = [c for c in expected.get("cells", []) if c.get("cell_type") == "code"]
    gcells = [c for c in got.get("cells", []) if c.get("cell_type") == "code"]
    if len(ecells) != len(gcells):
        result.differences.append(CellDifference(-1, "structure", f"{len(ecells)} code cells expected, {len(gcells)} got"))
    index_of = [i for i, c in enumerate(expected.get("cells", [])) if c.get("cell_type") == "code"]
    for n, (ec, gc) in enumerate(zip(ecells, gcells)):
        cell = index_of[n]
        if _text(ec.get("source", "")) != _text(gc.get("source", "")):
            result.differences.append(CellDifference(cell, "source", _short_diff(_text(ec["source"]), _text(gc["source"]))))
            continue
        eo, go = _pairs(ec), _pairs(gc)
        if [k for k, _ in eo] != [k for k, _ in go]:
            result.differences.append(CellDifference(cell, "outputs", f"output kinds {[k for k, _ in eo]} != {[k for k, _ in go]}"))
            continue
        for (key, a), (_, b) in zip(eo, go):
            if key in IMAGES and a != b:
                result.differences.append(CellDifference(cell, "image", f"{key} differs ({a} != {b})"))
                result.notes.append(f"cell {cell}: the {key} image differs (compared by hash)")
                break
            if not _numbers_close(a, b, rtol):
                result.differences.append(CellDifference(cell, "text", f"{key}: {_short_diff(a, b)}"))
                break
    return result
