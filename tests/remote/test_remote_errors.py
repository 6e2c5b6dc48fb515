"""A remote host that cannot be used: unreachable, our key refused, its host key unknown. Each is one clear line and
a non-zero exit, with nothing left running here; and `dsenv hosts add/ls/check` on the working one."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import dsenv


def _leftovers(remote) -> list[str]:
    """Processes of ours still running for this remote (ssh clients, tunnel keepers), not its sshd and dockerd."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        if str(remote.root / "client") in cmd:
            out.append(cmd)
    return out


@pytest.mark.parametrize("case, expect", [
    ("unreachable", "cannot reach the SSH server"),
    ("wrong_key", "refused the key"),
    ("unknown_host", "not in known_hosts"),
])
def test_a_remote_that_cannot_be_used_is_one_line(remote, folder, case, expect):
    url, env = remote.url, {}
    if case == "unreachable":
        url = url.replace(":22", ":2222")  # nothing listens there
    else:
        env["DSENV_SSH_CONFIG"] = str(remote.root / "client" / f"config_{case}")
    for args in (("run", str(folder), "--host", url), ("ps", "--host", url)):
        result = dsenv(remote, *args, env=env, timeout=60)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("dsenv: error:") and expect in lines[0], lines[0]
        assert "hint:" in lines[0] and "Traceback" not in result.stderr
    assert _leftovers(remote) == []
    assert json.loads(dsenv(remote, "tunnels", "--json").stdout) == []


def test_hosts_add_ls_check(remote):
    added = dsenv(remote, "hosts", "add", "rh", remote.url, "--identity", str(remote.key))
    assert added.returncode == 0, added.stderr
    ls = dsenv(remote, "hosts", "ls", "--json")
    assert [h["url"] for h in json.loads(ls.stdout) if h["name"] == "rh"] == [remote.url]
    check = dsenv(remote, "hosts", "check", "rh", "--json")
    assert check.returncode == 0, check.stderr
    facts = json.loads(check.stdout)
    assert facts["docker"].startswith("20.10") and facts["gpus"] == [] and facts["disk_free"] > 0
    ps = dsenv(remote, "ps", "--host", "rh")
    assert ps.returncode == 0, ps.stderr
    unknown = dsenv(remote, "ps", "--host", "nosuchhost")
    assert unknown.returncode == 2 and "no such host" in unknown.stderr
    assert dsenv(remote, "hosts", "rm", "rh").returncode == 0
