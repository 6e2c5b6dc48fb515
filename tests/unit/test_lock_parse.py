"""Parsing a lock (uv's output with `# via` blocks): the user closure vs runtime-only packages, layer texts,
reading lock files, and whether a lock is current."""
from __future__ import annotations

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dsenv.lock import LEFT_OUT, inputs_sha256, is_current, left_out, lock_inputs, parse_packages, read_lock
from dsenv.spec import EnvSpec, ReqEntry

from .conftest import UV_BODY, lock_file_text, make_lock

USER = {"numpy", "pandas", "python-dateutil", "six", "traitlets"}
RUNTIME_ONLY = {"ipykernel", "papermill", "tornado"}
PLATFORM = "x86_64-manylinux_2_28"


def test_parse_names_versions_and_via():
    packages = {p.name: p for p in parse_packages(lock_file_text())}
    assert set(packages) == USER | RUNTIME_ONLY
    assert packages["numpy"].version == "1.26.4"
    assert packages["python-dateutil"].version == "2.9.0.post0"
    assert packages["numpy"].via == ("-r notebook requirements", "pandas")
    assert packages["pandas"].via == ("-r notebook requirements",)
    assert packages["six"].via == ("python-dateutil",)


def test_user_closure_vs_runtime_only():
    packages = parse_packages(lock_file_text())
    assert {p.name for p in packages if not p.runtime_only} == USER
    assert {p.name for p in packages if p.runtime_only} == RUNTIME_ONLY


def test_package_asked_by_both_sides_belongs_to_the_user_layer():
    body = UV_BODY.replace("    # via -r dsenv runtime\n", "    # via\n    #   -r dsenv runtime\n    #   -r notebook requirements\n")
    papermill = next(p for p in parse_packages(lock_file_text(body)) if p.name == "papermill")
    assert papermill.runtime_only is False


def test_names_are_canonicalised():
    body = "Python_DateUtil==2.9.0 \\\n    --hash=sha256:" + "5" * 64 + "\n    # via -r notebook requirements\n"
    (pkg,) = parse_packages(lock_file_text(body))
    assert (pkg.name, pkg.version, pkg.runtime_only) == ("python-dateutil", "2.9.0", False)


def test_layer_text_user_holds_exactly_the_user_blocks_with_hashes():
    lock = make_lock()
    text = lock.layer_text(runtime=False)
    pinned = [line.split("==")[0] for line in text.splitlines() if "==" in line]
    assert sorted(pinned) == sorted(USER)
    assert "--hash=sha256:" + "23" * 32 in text  # numpy's second hash line kept
    assert text.count("--hash=sha256:") == 6  # numpy 2, pandas, dateutil, six, traitlets
    assert "# via" not in text
    assert "ipykernel" not in text and "tornado" not in text
    assert text.endswith("\n")


def test_layer_text_runtime_holds_exactly_the_runtime_blocks():
    text = make_lock().layer_text(runtime=True)
    assert sorted(line.split("==")[0] for line in text.splitlines() if "==" in line) == sorted(RUNTIME_ONLY)
    assert text.count("--hash=sha256:") == 3


def test_layer_text_of_empty_layer_is_empty():
    body = "ipykernel==6.29.0 \\\n    --hash=sha256:" + "1" * 64 + "\n    # via -r dsenv runtime\n"
    lock = make_lock(body)
    assert lock.layer_text(runtime=False) == ""
    assert lock.layer_text(runtime=True).startswith("ipykernel==6.29.0")


def test_read_lock_round_trip(tmp_path):
    path = tmp_path / "dsenv.lock"
    path.write_text(lock_file_text(inputs_sha="b" * 64))
    lock = read_lock(path)
    assert lock is not None
    assert lock.inputs_sha256 == "b" * 64
    assert {p.name for p in lock.packages} == USER | RUNTIME_ONLY
    assert lock.text == path.read_text()


def test_read_lock_without_dsenv_header_is_none(tmp_path):
    path = tmp_path / "dsenv.lock"
    path.write_text(UV_BODY)
    assert read_lock(path) is None
    path.write_text(f"# some other tool\n# inputs: sha256:{'b' * 64}\n\n" + UV_BODY)
    assert read_lock(path) is None


def test_read_lock_without_inputs_line_or_file_is_none(tmp_path):
    path = tmp_path / "dsenv.lock"
    path.write_text(lock_file_text().replace("# inputs: sha256:", "# inputs: "))
    assert read_lock(path) is None
    assert read_lock(tmp_path / "missing.lock") is None


def _spec(python="3.11", reqs=("numpy==1.26.4", "pandas")) -> EnvSpec:
    return EnvSpec(python=python, requirements=tuple(
        ReqEntry(canonicalize_name(Requirement(r).name), r, ("requirements.txt",), True) for r in reqs))


def _lock_for(spec: EnvSpec, platform: str = PLATFORM, as_of: str | None = None):
    return make_lock(inputs_sha=inputs_sha256(lock_inputs(spec, platform, as_of)))


def test_is_current_for_same_inputs():
    spec = _spec()
    assert is_current(_lock_for(spec), _spec(reqs=("pandas", "numpy==1.26.4")), PLATFORM, None)
    assert is_current(_lock_for(spec, as_of="2024-01-01"), spec, PLATFORM, "2024-01-01")


@pytest.mark.parametrize("spec, platform, as_of", [
    (_spec(python="3.12"), PLATFORM, None),
    (_spec(), "aarch64-manylinux_2_28", None),
    (_spec(), PLATFORM, "2024-06-01"),
    (_spec(reqs=("numpy==1.26.4", "pandas", "rich")), PLATFORM, None),
    (_spec(reqs=("numpy==1.26.3", "pandas")), PLATFORM, None),
])
def test_is_current_false_when_an_input_changes(spec, platform, as_of):
    lock = _lock_for(_spec())
    assert is_current(lock, _spec(), PLATFORM, None)
    assert not is_current(lock, spec, platform, as_of)


def test_is_current_false_when_jupyter_flavour_changes():
    lock = _lock_for(_spec())
    other = _spec()
    other.jupyter = "kernel"
    assert not is_current(lock, other, PLATFORM, None)


def test_is_current_false_without_a_lock():
    assert is_current(None, _spec(), PLATFORM, None) is False


def test_slow_runtime_extras_are_left_out_unless_the_notebook_names_them():
    assert left_out(_spec()) == sorted(LEFT_OUT) == ["rfc3987-syntax"]
    assert lock_inputs(_spec(), PLATFORM, None)["left_out"] == ["rfc3987-syntax"]
    named = _spec(reqs=("numpy", "RFC3987_Syntax>=1.1"))
    assert left_out(named) == []
    assert "left_out" not in lock_inputs(named, PLATFORM, None)
    assert not is_current(_lock_for(_spec()), named, PLATFORM, None)  # naming it re-resolves
