"""Pure logic of remote hosts: ssh:// URLs, the hosts file, ssh command lines, ssh failures as one clear error,
tunnel state files and the sync manifests and their conflict rules."""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from dsenv.engine.connection import _translate_ssh, current_host, use_host
from dsenv.errors import (
    DaemonPermissionDenied,
    RemoteAuthRefused,
    RemoteDockerMissing,
    RemoteError,
    RemoteHostKeyUnknown,
    RemoteUnreachable,
    UsageError,
)
from dsenv.remote import hosts, ssh, sync, tunnels


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("DSENV_CONFIG", str(tmp_path / "cfg" / "config.toml"))
    monkeypatch.setenv("DSENV_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("DSENV_SSH_CONFIG", raising=False)
    monkeypatch.delenv("DOCKER_HOST", raising=False)


@pytest.mark.parametrize("url, parsed", [
    ("ssh://alice@gpu-box:22", ("alice", "gpu-box", 22)),
    ("ssh://gpu-box", (None, "gpu-box", None)),
    ("ssh://root@10.0.0.2", ("root", "10.0.0.2", None)),
    ("ssh://bob@[fe80::1]:2222/", ("bob", "[fe80::1]", 2222)),
])
def test_parse_url(url, parsed):
    assert hosts.parse_url(url) == parsed


@pytest.mark.parametrize("url", ["tcp://box:2375", "ssh://", "ssh://a@b:0", "ssh://a@b:70000", "ssh://a b", "box"])
def test_bad_urls_are_usage_errors(url):
    with pytest.raises(UsageError):
        hosts.parse_url(url)


def test_hosts_add_ls_resolve_rm(tmp_path):
    key = tmp_path / "id"
    key.write_text("k")
    hosts.add_host("gpu1", "ssh://alice@gpu-box:22", str(key))
    hosts.add_host("cpu", "ssh://box")
    found = hosts.load_hosts()
    assert found["gpu1"] == hosts.Host("gpu1", "ssh://alice@gpu-box:22", str(key))
    assert hosts.resolve("gpu1").target == "alice@gpu-box" and hosts.resolve("gpu1").port == 22
    assert hosts.resolve("ssh://alice@gpu-box:22").identity == str(key)  # a known URL keeps its identity
    assert hosts.resolve("ssh://other").name == "ssh://other"
    hosts.remove_host("cpu")
    assert list(hosts.load_hosts()) == ["gpu1"]
    with pytest.raises(UsageError, match="no such host"):
        hosts.resolve("cpu")
    with pytest.raises(UsageError, match="no such file"):
        hosts.add_host("x", "ssh://box", str(tmp_path / "missing"))
    with pytest.raises(UsageError):
        hosts.add_host("bad name", "ssh://box")


def test_ssh_options_are_strict_and_batch(tmp_path, monkeypatch):
    host = hosts.Host("h", "ssh://alice@box:2222", "/keys/id")
    cmd = ssh.command(host, ["docker", "version", "--format", "{{.Server.Version}}"])
    joined = " ".join(cmd)
    for needed in ("BatchMode=yes", "StrictHostKeyChecking=yes", "ConnectTimeout=10", "ServerAliveInterval=",
                   "-i /keys/id", "IdentitiesOnly=yes", "-p 2222 -- alice@box"):
        assert needed in joined
    assert cmd[-1] == "docker version --format '{{.Server.Version}}'"
    monkeypatch.setenv("DSENV_SSH_CONFIG", "/cfg/ssh")
    monkeypatch.setenv("DSENV_SSH_TIMEOUT", "3")
    fwd = ssh.forward_command(hosts.Host("h", "ssh://box"), 5000, 6000)
    assert fwd[1:3] == ["-F", "/cfg/ssh"] and "ConnectTimeout=3" in fwd
    assert "-N" in fwd and "ExitOnForwardFailure=yes" in fwd
    assert fwd[fwd.index("-L") + 1] == "127.0.0.1:5000:127.0.0.1:6000" and fwd[-2:] == ["--", "box"]


def test_the_shim_puts_options_in_front_of_docker_pys_ssh(monkeypatch):
    host = hosts.Host("h", "ssh://box", "/keys/id")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    ssh.put_shim_first(host)
    first = os.environ["PATH"].split(os.pathsep)[0]
    script = Path(first, "ssh").read_text()
    assert "StrictHostKeyChecking=yes" in script and "-i /keys/id" in script and script.rstrip().endswith('"$@"')
    assert os.access(os.path.join(first, "ssh"), os.X_OK)
    ssh.put_shim_first(hosts.Host("h2", "ssh://box"))
    assert sum("ssh-shim" in p for p in os.environ["PATH"].split(os.pathsep)) == 1


@pytest.mark.parametrize("code, stderr, error, words", [
    (255, "ssh: connect to host 10.1.1.1 port 22: Connection refused", RemoteUnreachable, "cannot reach"),
    (255, "ssh: connect to host box port 22: Connection timed out", RemoteUnreachable, "timed out"),
    (255, "ssh: Could not resolve hostname nope: Name or service not known", RemoteUnreachable, "resolve"),
    (255, "root@10.0.0.2: Permission denied (publickey).", RemoteAuthRefused, "refused the key"),
    (255, ("No ED25519 host key is known for 10.0.0.2 and you have requested strict checking.\r\n"
           "Host key verification failed."), RemoteHostKeyUnknown, "not in known_hosts"),
    (255, "@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\nHost key verification failed.", RemoteHostKeyUnknown,
     "changed"),
    (127, "bash: line 1: docker: command not found", RemoteDockerMissing, "no docker command"),
    (1, "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
     DaemonPermissionDenied, "Docker socket"),
    (1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
     RemoteDockerMissing, "not running"),
    (3, "something else", RemoteError, "exit 3"),
])
def test_ssh_failures_are_one_clear_error(code, stderr, error, words):
    with pytest.raises(error) as caught:
        _translate_ssh("gpu1", code, stderr)
    assert words in caught.value.message and caught.value.hint
    assert "\n" not in caught.value.one_line()


def test_use_host_and_docker_host(monkeypatch):
    assert current_host() is None
    monkeypatch.setenv("DOCKER_HOST", "ssh://root@box")
    assert current_host() == "ssh://root@box"
    with use_host(""):
        assert current_host() is None
    with use_host("gpu1"):
        assert current_host() == "gpu1"
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert current_host() is None


def test_tunnel_state_files_and_stale_ones(tmp_path):
    live = tunnels.Tunnel("aaaa", "gpu1", "ssh://box", "c1", "cid1", 5001, 6001, pid=0, state="up")
    stale = tunnels.Tunnel("bbbb", "gpu1", "ssh://box", "c2", "cid2", 5002, 6002, pid=os.getpid(), state="up")
    live.save()
    stale.save()
    found = tunnels.list_tunnels()
    assert [t.id for t in found] == ["aaaa"]  # a keeper that is not running: its file is cleaned up
    assert not stale.path.exists()
    assert tunnels.local_ports("cid1") == {6001: 5001} and tunnels.local_ports("cid2") == {}
    assert json.loads(live.path.read_text())["local_port"] == 5001
    assert [t.id for t in tunnels.close_matching("c1")] == ["aaaa"] and not live.path.exists()
    with pytest.raises(Exception, match="no open forward"):
        tunnels.close_matching("zzzz")


def test_manifest_skips_tool_folders(tmp_path):
    (tmp_path / "a.ipynb").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("1")
    for skipped in (".git", ".ipynb_checkpoints", "__pycache__"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "f").write_text("no")
    (tmp_path / "link").symlink_to(tmp_path / "a.ipynb")
    m = sync.manifest(tmp_path)
    assert sorted(m) == ["a.ipynb", "data/x.csv"] and m["a.ipynb"] == sync.sha256(b"{}")


def test_folder_tar_owns_files_and_keeps_modes(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "run.sh").write_text("echo")
    (tmp_path / "sub" / "run.sh").chmod(0o755)
    data = sync.folder_tar(tmp_path, ["sub/run.sh"], 1234, 5678)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar}
    assert set(members) == {".", "sub", "sub/run.sh"}
    assert members["sub/run.sh"].mode == 0o755 and members["sub/run.sh"].uid == 1234 and members["."].isdir()


def test_classify_never_overwrites_or_deletes():
    base = {"same": "1", "remote_changed": "1", "both_changed": "1", "local_deleted": "1", "remote_deleted": "1",
            "equal_edit": "1"}
    local = {"same": "1", "remote_changed": "1", "both_changed": "L", "remote_deleted": "1", "local_new": "N",
             "equal_edit": "E"}
    remote = {"same": "1", "remote_changed": "R", "both_changed": "R", "local_deleted": "R", "remote_new": "N",
              "equal_edit": "E"}
    write, conflicts, unchanged = sync.classify(base, local, remote)
    assert write == ["remote_changed", "remote_new"]
    assert conflicts == ["both_changed", "local_deleted"]
    assert unchanged == 2  # same, equal_edit; remote_deleted and local_new are left alone


@pytest.mark.parametrize("text, bind", [
    ("remote:/data/x:/data", "remote:/data/x:/data:rw"),
    ("remote:/data/x/../y:/data:ro", "remote:/data/y:/data:ro"),
])
def test_remote_volumes_name_a_path_there(text, bind):
    from dsenv.containers import parse_volume

    assert parse_volume(text) == bind


@pytest.mark.parametrize("text, says", [
    ("remote:data:/data", "must be absolute"),
    ("remote:/:/host", "control of the host"),
    ("remote:/var/run/docker.sock:/s", "control of the host"),
    ("remote:/data", "not HOST:CONTAINER"),
])
def test_bad_remote_volumes(text, says):
    from dsenv.containers import parse_volume

    with pytest.raises(UsageError, match=says):
        parse_volume(text)


def test_remote_volumes_are_kept_as_they_are_when_syncing():
    assert sync.push_binds(["remote:/srv/data:/data:ro"], "img") == (["/srv/data:/data:ro"], [])


def test_a_remote_path_needs_a_remote_host():
    from dsenv.remote.runs import check_paths

    with pytest.raises(UsageError, match="needs a remote host"):
        check_paths(["remote:/srv/data:/data:rw"], None)
    check_paths(["/here:/data:rw"], None)
