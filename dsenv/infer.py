"""Inference of what a notebook needs from its code cells: imports, %pip / !pip lines and !apt-get lines."""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
from pathlib import Path
from dataclasses import dataclass

CACHE_VERSION = 1  # bump when the findings of a cell may change
MAY_FIND = re.compile(r"import|[%!]|get_ipython")
# Cell magics whose body is Python (re-parsed for imports) and those whose body is shell (scanned for installs).
SHELL_CELL_MAGICS = {"bash", "sh", "script", "system"}
PIP_MAGICS = {"pip", "uv"}
# pip options that take a value: their value is not a requirement.
PIP_VALUE_OPTIONS = {
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint", "-t", "--target",
    "--prefix", "--root", "--python", "--platform", "--python-version", "--implementation", "--abi",
    "--trusted-host", "--cache-dir", "--log", "--proxy", "--timeout", "--retries", "--src", "--upgrade-strategy",
    "--progress-bar", "--config-settings", "-C", "--global-option", "--no-binary", "--only-binary",
}


@dataclass(frozen=True)
class Finding:
    """One thing a code cell says it needs: kind is 'import', 'pip', 'pip-file' or 'apt'."""

    kind: str
    value: str
    cell: int
    optional: bool = False


def infer_cells(cells: list[str], cache: dict[str, list] | None = None) -> list[Finding]:
    """All findings of a notebook's code cells, in cell order; `cache` maps a cell's sha256 to its findings so
    unchanged cells are not parsed again (see cell_cache)."""
    out: list[Finding] = []
    for index, source in enumerate(cells):
        if cache is None:
            out.extend(infer_cell(source, index))
            continue
        key = hashlib.sha256(source.encode()).hexdigest()[:32]
        if key not in cache:
            cache[key] = [[f.kind, f.value, f.optional] for f in infer_cell(source, index)]
        out.extend(Finding(kind, value, index, optional) for kind, value, optional in cache[key])
    return out


class cell_cache:
    """A persistent cell -> findings cache (~/.cache/dsenv/cells-v1.json): a context manager yielding the dict."""

    LIMIT = 20000

    def __init__(self, path: Path | None = None) -> None:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        self.path = path or root / "dsenv" / f"cells-v{CACHE_VERSION}.json"
        self.data: dict[str, list] = {}

    def __enter__(self) -> dict[str, list]:
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self._size = len(self.data)
        return self.data

    def __exit__(self, *exc) -> None:
        if len(self.data) == self._size or exc[0] is not None:
            return
        items = list(self.data.items())[-self.LIMIT:]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(dict(items)))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache that cannot be written only costs time


def infer_cell(source: str, index: int = 0) -> list[Finding]:
    """The findings of one code cell: its source goes through IPython's input transformer, then Python's AST."""
    if not MAY_FIND.search(source):
        return []  # no import statement, magic, shell escape or get_ipython call: nothing to find
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        python = TransformerManager().transform_cell(source)
    except Exception:  # a cell IPython itself cannot transform: read it line by line
        python = source
    tree = _parse(python)
    if tree is None:
        return _line_by_line(source, index)
    return list(_walk(tree, index))


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _line_by_line(source: str, index: int) -> list[Finding]:
    """Fallback for a cell with a syntax error: each line that parses alone still counts."""
    from IPython.core.inputtransformer2 import TransformerManager

    out: list[Finding] = []
    for line in source.splitlines():
        try:
            tree = _parse(TransformerManager().transform_cell(line.strip() + "\n"))
        except Exception:
            tree = None
        if tree is not None:
            out.extend(_walk(tree, index))
    return out


def _walk(tree: ast.AST, index: int):
    optional_nodes = _optional_import_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Finding("import", alias.name, index, node in optional_nodes)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                yield Finding("import", node.module, index, node in optional_nodes)
        elif isinstance(node, ast.Call):
            yield from _magic_call(node, index)


def _optional_import_nodes(tree: ast.AST) -> set[ast.AST]:
    """Imports inside `try: ... except ImportError` are optional: the code runs without them."""
    optional: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for stmt in node.body:
                optional.update(n for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return optional


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = [handler.type] if not isinstance(handler.type, ast.Tuple) else list(handler.type.elts)
    return any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError", "Exception"} for n in names)


def _magic_call(node: ast.Call, index: int):
    """get_ipython().run_line_magic / run_cell_magic / system / getoutput calls that IPython's transformer wrote."""
    func = node.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call)):
        return
    inner = func.value.func
    if not (isinstance(inner, ast.Name) and inner.id == "get_ipython"):
        return
    args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None for a in node.args]
    if func.attr == "run_line_magic" and len(args) >= 2 and args[0] and args[1] is not None:
        if args[0] in PIP_MAGICS:
            yield from _pip_words(_split(args[1]), index)
        elif args[0] in {"sx", "system"}:
            yield from _shell(args[1], index)
    elif func.attr in {"system", "getoutput"} and args and args[0] is not None:
        yield from _shell(args[0], index)
    elif func.attr == "run_cell_magic" and len(args) >= 3 and args[0] and args[2] is not None:
        name, body = args[0], args[2]
        if name in SHELL_CELL_MAGICS:
            if name != "script" or any(sh in (args[1] or "") for sh in ("bash", "sh")):
                yield from _shell(body, index)
        else:
            sub = _parse(_transform(body))
            if sub is not None:
                yield from _walk(sub, index)


def _transform(body: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(body)
    except Exception:
        return body


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:
        return text.split()


def _shell_words(line: str) -> list[str]:
    """Shell words with operators (; && || | & > <) split off as words of their own."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    lexer.wordchars += "{}$=.,:/@[]~*+-"
    try:
        return list(lexer)
    except ValueError:
        return line.split()


def _shell(command: str, index: int):
    """Installs named in a shell command line: pip/uv pip/python -m pip install, apt-get/apt install."""
    for line in command.replace("\\\n", " ").splitlines():
        segment: list[str] = []
        words = _shell_words(line) + [";"]
        skip = False
        for n, word in enumerate(words):
            if skip:
                skip = False
            elif word and set(word) <= set("<>&") and set(word) & set("<>"):
                skip = True  # a redirection: drop it, its target, and a file-descriptor number before it
                if segment and segment[-1].isdigit():
                    segment.pop()
            elif word and set(word) <= set(";&|()"):
                yield from _segment(segment, index)
                segment = []
            else:
                segment.append(word)


def _segment(words: list[str], index: int):
    while words and (words[0] in {"sudo", "env"} or "=" in words[0] and not words[0].startswith("-")):
        words = words[1:]
    if not words:
        return
    head = words[0].rsplit("/", 1)[-1]
    if head in {"pip", "pip3"}:
        yield from _pip_words(words[1:], index)
    elif head == "uv" and words[1:2] == ["pip"]:
        yield from _pip_words(words[2:], index)
    elif (head.startswith("python") or head in {"{sys.executable}", "$PYTHON"}) and words[1:3] == ["-m", "pip"]:
        yield from _pip_words(words[3:], index)
    elif head in {"apt-get", "apt"}:
        rest = words[1:]
        if "install" in rest:
            for word in rest[rest.index("install") + 1:]:
                if not word.startswith("-"):
                    yield Finding("apt", word, index)


def _pip_words(words: list[str], index: int):
    if not words or words[0] != "install":
        return
    skip = False
    items = iter(words[1:])
    for word in items:
        if skip:
            skip = False
            continue
        if word in {"-r", "--requirement"}:
            target = next(items, None)
            if target:
                yield Finding("pip-file", target, index)
            continue
        if word in {"-e", "--editable"}:
            target = next(items, None)
            if target:
                yield Finding("pip", f"-e {target}", index)
            continue
        if word in PIP_VALUE_OPTIONS:
            skip = True
            continue
        if word.startswith("-"):
            continue
        yield Finding("pip", word, index)
