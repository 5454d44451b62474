"""nats.c and nats.js against ecclusterd, and against nats-server beside it.

Each check is a small program of the client library's own
(`natsc_check.c`, `natsjs_check.mjs`) that prints `ok <check>` or
`FAIL <check>: why`. Every check runs against both servers, so a
difference between ecclusterd and nats-server shows as one failing row.

Needs (installed by `cargo xtask test`): a C compiler and Debian's
`libnats-dev`, Node with npm's `nats` 2.x on `NODE_PATH`, and Debian's
`nats-server`. A missing one fails these tests; it is never skipped.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import queue
import time
from pathlib import Path

import pytest

from conftest import PATIENCE, Node

HERE = Path(__file__).resolve().parent

CHECKS = [
    "pubsub_order",
    "wildcards",
    "queue_groups",
    "request_reply",
    "no_responders",
    "headers",
    "auto_unsubscribe",
    "drain",
    "payloads",
    "bad_subject",
    "extra_argument",
]
# nats.js 2.x has no client-side pending limits, so no slow-consumer callback.
C_ONLY = ["slow_consumer"]

NATS_LISTENING = re.compile(r"Listening for client connections on [^:]+:(\d+)")


class NatsServer:
    """Debian's nats-server on 127.0.0.1, on `port` or an ephemeral one."""

    def __init__(self, port: int = -1):
        exe = shutil.which("nats-server")
        if not exe:
            pytest.fail("nats-server is not on PATH (Debian package `nats-server`; cargo xtask test installs it)")
        self.proc = subprocess.Popen(
            [exe, "-a", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: "queue.Queue[str | None]" = queue.Queue()

        def read():
            for line in self.proc.stderr:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                pytest.fail("nats-server did not start")
            m = NATS_LISTENING.search(line)
            if m:
                self.port = int(m.group(1))
            if "Server is ready" in line:
                break
        self.url = f"nats://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=PATIENCE)


class Ecclusterd:
    """One ecclusterd node (conftest's Node) that can be restarted on its port."""

    def __init__(self, tmp: Path, port: int = 0):
        tmp.mkdir(parents=True, exist_ok=True)
        bin_path = os.environ.get("ECCLUSTERD_BIN")
        if not bin_path:
            pytest.fail("ECCLUSTERD_BIN is not set")
        self.node = Node(bin_path, tmp, "", port=port)
        self.port = self.node.port
        self.url = self.node.url

    def stop(self):
        code = self.node.stop()
        assert code == 0, "ecclusterd exited with %d; log:\n%s" % (code, "\n".join(self.node.log))


def start(kind: str, tmp: Path, port: int = 0):
    return Ecclusterd(tmp, port) if kind == "ecclusterd" else NatsServer(port or -1)


@pytest.fixture(scope="module")
def natsc(tmp_path_factory):
    """natsc_check, built against the installed libnats."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc or not Path("/usr/include/nats/nats.h").exists():
        pytest.fail("building natsc_check needs cc and libnats-dev (cargo xtask test installs them)")
    out = tmp_path_factory.mktemp("natsc") / "natsc_check"
    subprocess.run(
        [cc, "-O1", "-Wall", "-Werror", "-o", str(out), str(HERE / "natsc_check.c"), "-lnats", "-lpthread"],
        check=True,
    )
    return [str(out)]


@pytest.fixture(scope="module")
def natsjs():
    node = shutil.which("node")
    path = os.environ.get("NODE_PATH", "")
    if not node or not any((Path(p) / "nats").is_dir() for p in path.split(":") if p):
        pytest.fail("nats.js needs node and npm's `nats` on NODE_PATH (cargo xtask test installs them)")
    return [node, str(HERE / "natsjs_check.mjs")]


@pytest.fixture(scope="module", params=["ecclusterd", "nats-server"])
def server(request, tmp_path_factory):
    s = start(request.param, tmp_path_factory.mktemp(request.param))
    yield s
    s.stop()


def run_check(cmd, url, check, stdin=None):
    p = subprocess.run(
        cmd + [url, check],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=6 * PATIENCE,
    )
    out = p.stdout.strip()
    assert p.returncode == 0 and out.endswith(f"ok {check}"), f"{out}\n{p.stderr}"


@pytest.mark.parametrize("check", CHECKS + C_ONLY)
def test_natsc(natsc, server, check):
    run_check(natsc, server.url, check)


@pytest.mark.parametrize("check", CHECKS)
def test_natsjs(natsjs, server, check):
    run_check(natsjs, server.url, check)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("client", ["natsc", "natsjs"])
def test_no_quorum_refusal_keeps_the_connection(request, tmp_path, client):
    """A node of three alone (a minority) refuses ordered publishes; the
    library reports the refusal and stays connected."""
    cmd = request.getfixturevalue(client)
    port = free_port("127.0.0.1")
    peers = " ".join(
        f'node{i} = "127.0.0.{i}:{port if i == 1 else free_port(f"127.0.0.{i}")}"' for i in (1, 2, 3)
    )
    extra = f"msgc_server {{ peers = [ {peers} ] keepalive_interval = 0.2 }}"
    node = Node(os.environ["ECCLUSTERD_BIN"], tmp_path, extra, port=port)
    try:
        run_check(cmd, node.url, "refused")
    finally:
        assert node.stop() == 0, "\n".join(node.log)


@pytest.mark.parametrize("kind", ["ecclusterd", "nats-server"])
@pytest.mark.parametrize("client", ["natsc", "natsjs"])
def test_reconnect_after_restart(request, tmp_path, kind, client):
    """The server stops and starts again on its port: the library reconnects
    by itself and its subscriptions (plain and queue) work again."""
    cmd = request.getfixturevalue(client)
    s = start(kind, tmp_path / "first")
    p = subprocess.Popen(
        cmd + [s.url, "restart"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = p.stdout.readline().strip()
        assert first == "RESTART", first + p.stderr.read()
        port = s.port
        s.stop()
        s = start(kind, tmp_path / "second", port)
        out, err = p.communicate("go\n", timeout=6 * PATIENCE)
        assert p.returncode == 0 and out.strip().endswith("ok restart"), out + err
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        s.stop()
