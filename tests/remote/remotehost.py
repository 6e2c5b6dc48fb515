"""A throwaway remote Docker host on this machine, reachable only over SSH: a network namespace joined to the root
namespace by a veth pair (10.231.0.1/30 here, 10.231.0.2/30 there), a private dockerd started inside it (its socket a
path only the sshd session is told about) and Debian's sshd listening on 10.231.0.2:22 with a host key and an
authorized key made here. The client side is an ssh config file and known_hosts of its own (the user's ~/.ssh is
never read or written). Used by tests/remote/conftest.py and bench/remote_speed.py; everything is torn down by pid."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCAL_IP, REMOTE_IP = "10.231.0.1", "10.231.0.2"


def problem() -> str | None:
    """Why a test remote cannot be made here (None when it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, a second dockerd, sshd)"
    for tool in ("ip", "dockerd", "docker", "ssh", "ssh-keygen", "ssh-keyscan"):
        if not shutil.which(tool):
            return f"needs {tool}"
    if not Path("/usr/sbin/sshd").exists():
        return "needs Debian's openssh-server (.ci/setup.d/ssh.sh installs it)"
    if subprocess.run(["docker", "version"], capture_output=True, check=False).returncode != 0:
        return "needs this machine's Docker daemon (the example image is built here and sent there)"
    return None


@dataclass
class RemoteHost:
    """A running test remote: where its pieces live and how a client reaches it."""

    root: Path
    ns: str
    veth: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    url: str = f"ssh://root@{REMOTE_IP}:22"

    @property
    def sock(self) -> Path:
        return self.root / "docker.sock"

    @property
    def ssh_config(self) -> Path:
        return self.root / "client" / "config"

    @property
    def key(self) -> Path:
        return self.root / "client" / "id_ed25519"

    def env(self) -> dict[str, str]:
        """Environment for dsenv (or ssh -F) talking to this remote, with its own state and config dirs."""
        return {"DSENV_SSH_CONFIG": str(self.ssh_config), "DSENV_CONFIG": str(self.root / "client" / "dsenv.toml"),
                "DSENV_STATE_DIR": str(self.root / "client" / "state"), "DSENV_BUILD_NETWORK": "host",
                "DSENV_BUILDER": "classic"}

    def ssh(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """Run a command on the remote through ssh (the only way in)."""
        return subprocess.run(["ssh", "-F", str(self.ssh_config), f"root@{REMOTE_IP}", *args], **{"check": False, **kwargs})

    def docker(self, *args: str) -> str:
        """`docker ARGS` on the remote, through ssh; its stdout."""
        return self.ssh("docker", *args, capture_output=True, text=True, check=True, timeout=120).stdout

    def load_image(self, ref: str) -> None:
        """Copy a local image to the remote (docker save here | ssh docker load there)."""
        saved = subprocess.Popen(["docker", "save", ref], stdout=subprocess.PIPE)
        self.ssh("docker", "load", "-q", stdin=saved.stdout, check=True, capture_output=True, timeout=600)
        saved.wait()


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check)


def start(tag: str) -> RemoteHost:
    """Make the namespace, veth, dockerd and sshd; raises RuntimeError (after cleaning up) when something fails."""
    root = Path("/tmp") / f"dsenv-rh-{tag}"  # short: unix socket paths are limited to 108 bytes
    shutil.rmtree(root, ignore_errors=True)
    (root / "client").mkdir(parents=True)
    host = RemoteHost(root, f"dsenv-rh-{tag}", f"dsrh{tag[:8]}")
    try:
        _network(host)
        _dockerd(host)
        _sshd(host)
    except BaseException:
        stop(host)
        raise
    return host


def _network(h: RemoteHost) -> None:
    _run("ip", "netns", "add", h.ns)
    _run("ip", "link", "add", h.veth, "type", "veth", "peer", "name", h.veth + "p")
    _run("ip", "link", "set", h.veth + "p", "netns", h.ns)
    _run("ip", "addr", "add", f"{LOCAL_IP}/30", "dev", h.veth)
    _run("ip", "link", "set", h.veth, "up")
    for cmd in (("ip", "addr", "add", f"{REMOTE_IP}/30", "dev", h.veth + "p"), ("ip", "link", "set", h.veth + "p", "up"),
                ("ip", "link", "set", "lo", "up")):
        _run("ip", "netns", "exec", h.ns, *cmd)


def _dockerd(h: RemoteHost) -> None:
    # A bridge of its own inside the namespace (so ports can be published on the remote's 127.0.0.1 through the
    # userland proxy); no iptables rules anywhere.
    with open(h.root / "dockerd.log", "ab") as log:
        h.procs["dockerd"] = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{h.ns}", "dockerd", "--data-root", str(h.root / "data"), "--exec-root",
             str(h.root / "exec"), "--pidfile", str(h.root / "dockerd.pid"), "-H", f"unix://{h.sock}",
             "--bip", "10.231.4.1/24", "--iptables=false", "--ip-masq=false", "--ip6tables=false"],
            stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(150):
        if h.sock.exists() and _run("docker", "-H", f"unix://{h.sock}", "version", check=False).returncode == 0:
            return
        if h.procs["dockerd"].poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"the remote dockerd did not start: {(h.root / 'dockerd.log').read_text()[-300:]}")


def _sshd(h: RemoteHost) -> None:
    srv, cli = h.root / "server", h.root / "client"
    srv.mkdir()
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(srv / "host_key"))
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(h.key))
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(cli / "wrong_key"))
    shutil.copy(f"{h.key}.pub", srv / "authorized_keys")
    (srv / "sshd_config").write_text(
        f"ListenAddress {REMOTE_IP}:22\nHostKey {srv / 'host_key'}\nAuthorizedKeysFile {srv / 'authorized_keys'}\n"
        f"PidFile {srv / 'sshd.pid'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nAllowTcpForwarding yes\nMaxSessions 50\n"
        f"MaxStartups 100\nSetEnv DOCKER_HOST=unix://{h.sock}\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    with open(h.root / "sshd.log", "ab") as log:
        h.procs["sshd"] = subprocess.Popen(["nsenter", f"--net=/run/netns/{h.ns}", "/usr/sbin/sshd", "-D", "-e", "-f",
                                            str(srv / "sshd_config")], stdout=subprocess.DEVNULL, stderr=log)
    host_pub = (srv / "host_key.pub").read_text().split()
    (cli / "known_hosts").write_text(f"{REMOTE_IP} {host_pub[0]} {host_pub[1]}\n")
    (cli / "empty_known_hosts").write_text("")
    h.ssh_config.write_text(
        f"Host {REMOTE_IP}\n  User root\n  IdentityFile {h.key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {cli / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n  ConnectTimeout 5\n  LogLevel ERROR\n")
    common = "  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 5\n"
    (cli / "config_wrong_key").write_text(f"Host {REMOTE_IP}\n  IdentityFile {cli / 'wrong_key'}\n  IdentitiesOnly yes\n"
                                          f"  UserKnownHostsFile {cli / 'known_hosts'}\n{common}")
    (cli / "config_unknown_host").write_text(f"Host {REMOTE_IP}\n  IdentityFile {h.key}\n  IdentitiesOnly yes\n"
                                             f"  UserKnownHostsFile {cli / 'empty_known_hosts'}\n{common}")
    for _ in range(100):
        if h.ssh("true", capture_output=True, timeout=10).returncode == 0:
            return
        if h.procs["sshd"].poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"sshd did not answer: {(h.root / 'sshd.log').read_text()[-300:]}")


def stop(h: RemoteHost) -> None:
    """Stop everything of the remote (by pid), unmount, delete the namespace and the veth, remove the files."""
    state = h.root / "client" / "state"
    for path in state.glob("tunnels/*.json") if state.exists() else ():  # dsenv's tunnel keepers for this remote
        try:
            pid = int(json.loads(path.read_text())["pid"])
            if "dsenv.remote.tunnels" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                os.kill(pid, signal.SIGTERM)
        except (ValueError, OSError, KeyError):
            pass
    _run("docker", "-H", f"unix://{h.sock}", "rm", "-f", *_run("docker", "-H", f"unix://{h.sock}", "ps", "-aq",
         check=False).stdout.split(), check=False) if h.sock.exists() else None
    time.sleep(0.5 if state.exists() else 0)
    for name in ("sshd", "dockerd"):
        proc = h.procs.get(name)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    # what is left with this remote's folder in its command line (dockerd's containerd and shims, ssh clients run
    # with its config, tunnel keepers): end those, by pid
    for pid_dir in Path("/proc").iterdir():
        if pid_dir.name.isdigit() and int(pid_dir.name) != os.getpid():
            try:
                if str(h.root) in (pid_dir / "cmdline").read_bytes().decode(errors="replace"):
                    os.kill(int(pid_dir.name), signal.SIGKILL)
            except OSError:
                pass
    # sshd session children (ssh forwards' server sides) still in the namespace
    pids = _run("ip", "netns", "pids", h.ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ValueError, OSError):
            pass
    time.sleep(0.3)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(h.root))]
    for mount in sorted(mounts, reverse=True):
        _run("umount", "-l", mount, check=False)
    _run("ip", "link", "del", h.veth, check=False)
    _run("ip", "netns", "del", h.ns, check=False)
    shutil.rmtree(h.root, ignore_errors=True)
