"""A private package index that demands a password, named in requirements.txt as `--extra-index-url
http://user:PASSWORD@127.0.0.1:PORT/simple`: the package it alone has gets into the image, and the password reaches
the build only as a BuildKit secret, so it is nowhere afterwards: not in the plan, the lock, the build's output, the
image's labels, config or history, nor its files."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import threading
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dsenv import engine

from .conftest import dsenv, image_run

PACKAGE, VERSION = "dsenv-private-probe", "1.0"
USER, PASSWORD = "analyst", f"pw-{uuid.uuid4().hex}"


def _wheel() -> tuple[str, bytes]:
    """A minimal pure-Python wheel of the probe package (VALUE = 42), with a correct RECORD."""
    module, info = "dsenv_private_probe", f"dsenv_private_probe-{VERSION}.dist-info"
    files = {
        f"{module}/__init__.py": b"VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: dsenv-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for name, data in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return f"dsenv_private_probe-{VERSION}-py3-none-any.whl", buf.getvalue()


@pytest.fixture(scope="module")
def private_index():
    """A PEP 503 simple index on 127.0.0.1 that answers 401 without the password; (URL with it, requests seen)."""
    filename, wheel = _wheel()
    digest = hashlib.sha256(wheel).hexdigest()
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    seen: list[tuple[str, bool]] = []

    class Index(BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - the http.server name
            self.do_GET(body=False)

        def do_GET(self, body: bool = True):  # noqa: N802 - the http.server name
            authorized = self.headers.get("Authorization") == expected
            seen.append((self.path, authorized))
            if not authorized:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="private"')
                self.end_headers()
                return
            if self.path.rstrip("/") == f"/simple/{PACKAGE}":
                data, kind = (f'<html><body><a href="/files/{filename}#sha256={digest}">{filename}</a></body></html>'
                              .encode(), "text/html")
            elif self.path == f"/files/{filename}":
                data, kind = wheel, "application/octet-stream"
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{USER}:{PASSWORD}@127.0.0.1:{server.server_address[1]}/simple", seen
    server.shutdown()


def _folder(workdir: Path, made_names: set, index_url: str) -> Path:
    folder = workdir / f"private-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    made_names.add(folder.name)
    (folder / "dsenv.toml").write_text('jupyter = "kernel"\n')
    (folder / "requirements.txt").write_text(f"--extra-index-url {index_url}\n{PACKAGE}=={VERSION}\n")
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "probe", "metadata": {}, "outputs": [],
                     "source": "import dsenv_private_probe\nprint(dsenv_private_probe.VALUE)"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (folder / "probe.ipynb").write_text(json.dumps(nb))
    return folder


def test_private_index_password_reaches_the_build_only_as_a_secret(workdir, made_names, private_index):
    index_url, seen = private_index
    folder = _folder(workdir, made_names, index_url)
    env = {"DSENV_BUILD_NETWORK": "host"}  # the build reaches the index on this machine's 127.0.0.1

    plan = dsenv("plan", str(folder), env=env)
    assert plan.returncode == 0, plan.stderr
    assert PASSWORD not in plan.stdout + plan.stderr
    assert f"{USER}:****@127.0.0.1" in plan.stdout and "--mount=type=secret" in plan.stdout

    built = dsenv("build", str(folder), "--json", "-v", env=env)
    assert built.returncode == 0, built.stderr
    assert PASSWORD not in built.stdout + built.stderr
    tag = json.loads(built.stdout.strip().splitlines()[-1])["tag"]
    assert any(path.startswith("/files/") and ok for path, ok in seen)  # the wheel was fetched with the password
    assert image_run(tag, "import dsenv_private_probe; print(dsenv_private_probe.VALUE)").strip() == "42"

    lock = (folder / "dsenv.lock").read_text()
    assert PASSWORD not in lock and f"{PACKAGE}=={VERSION}" in lock
    history = subprocess.run(["docker", "history", "--no-trunc", tag], capture_output=True, text=True, check=True)
    inspect = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, text=True, check=True)
    assert PASSWORD not in history.stdout and PASSWORD not in inspect.stdout
    assert "127.0.0.1" in engine.image_info(tag).labels["io.dsenv.spec"]  # the index, without its credentials
    files = image_run(tag, f"import subprocess; print(subprocess.run(['grep', '-rl', '{PASSWORD}', '/opt', '/etc', "
                           "'/root', '/home', '/tmp'], capture_output=True, text=True).stdout)")
    assert files.strip() == ""

    again = dsenv("build", str(folder), "--json", env=env)
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])["built"] is False


def test_a_password_protected_index_needs_buildkit(workdir, made_names, private_index):
    index_url, _ = private_index
    folder = _folder(workdir, made_names, index_url)
    (folder / "dsenv.toml").write_text('jupyter = "kernel"\npython = "3.11"\n')  # another environment: not built yet
    r = dsenv("build", str(folder), env={"DSENV_BUILD_NETWORK": "host", "DSENV_BUILDER": "classic"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "BuildKit" in lines[0] and "hint:" in lines[0], r.stderr
    assert PASSWORD not in r.stderr
    assert engine.list_images(filters={"io.dsenv.name": folder.name}) == []
