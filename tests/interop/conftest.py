"""Starts a real ecclusterd node for the nats-py interop tests.

`$ECCLUSTERD_BIN run -c <tmp>/ecclusterd.conf --log-level debug` on
127.0.0.1 with ephemeral ports; readiness and the msgcserver_listener port
are read from its log. Teardown sends SIGTERM and asserts exit code 0.
"""

import os
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

# Safety net for events that normally take milliseconds; hitting it means
# the test failed, never that it passed.
PATIENCE = 10.0

LISTENING = re.compile(r"msgcserver_listener: listening on (127\.0\.0\.1):(\d+)")


def single_node_conf(extra: str = "", msgc_opts: str = "", port: int = 0) -> str:
    """Same text as tests/common/mod.rs::single_node_conf; `msgc_opts` go
    inside the msgcserver_listener's Listen scope, which listens on `port`
    (0: an ephemeral one)."""
    return (
        '\ncluster { nodename = "node1" }\n'
        'ECCluster_Listener { Listen "127.0.0.1:0" { } }\n'
        f'msgcserver_listener {{ Listen "127.0.0.1:{port}" {{ {msgc_opts} }} }}\n'
        f"{extra}\n"
    )


class Node:
    def __init__(self, bin_path: str, conf_dir, extra: str, msgc_opts: str = "", port: int = 0):
        self.conf = conf_dir / "ecclusterd.conf"
        self.conf.write_text(single_node_conf(extra, msgc_opts, port))
        env = {k: v for k, v in os.environ.items() if k not in ("ECCLUSTERD_CONF", "EC_NODE_NAME")}
        self.proc = subprocess.Popen(
            [bin_path, "run", "-c", str(self.conf), "--log-level", "debug"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.log: list[str] = []
        self._lines: "queue.Queue[str | None]" = queue.Queue()
        # Drain stderr for the node's whole life: at debug level an unread
        # pipe would fill up and block the daemon.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.host, self.port = self._wait_ready()

    def _read(self):
        for line in self.proc.stderr:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _wait_ready(self):
        deadline = time.monotonic() + PATIENCE
        addr = None
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.0))
            except queue.Empty:
                self._fail(f"not ready within {PATIENCE}s")
            if line is None:
                self._fail(f"exited before ready (code {self.proc.wait()})")
            self.log.append(line)
            m = LISTENING.search(line)
            if m:
                addr = (m.group(1), int(m.group(2)))
            if " ready " in line:
                if addr is None:
                    self._fail("ready, but no msgcserver_listener address was logged")
                return addr

    def _fail(self, why: str):
        self.proc.kill()
        self.proc.wait()
        pytest.fail(f"ecclusterd {why}; log so far:\n" + "\n".join(self.log))

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._reader.join(timeout=PATIENCE)
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.log.append(line)
        return code


@pytest.fixture
def start_node(tmp_path):
    """Factory: start_node(extra_conf="", msgc_opts="", port=0) -> Node; every node is stopped at teardown."""
    bin_path = os.environ.get("ECCLUSTERD_BIN")
    if not bin_path:
        pytest.fail("ECCLUSTERD_BIN is not set (cargo build --bin ecclusterd, then point it at target/debug/ecclusterd)")
    nodes: list[Node] = []

    def start(extra: str = "", msgc_opts: str = "", port: int = 0) -> Node:
        d = tmp_path / f"node{len(nodes)}"
        d.mkdir()
        node = Node(bin_path, d, extra, msgc_opts, port)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        code = node.stop()
        assert code == 0, f"ecclusterd exited with {code} after SIGTERM; log:\n" + "\n".join(node.log)


@pytest.fixture
def node(start_node):
    """A single node on the default bus settings."""
    return start_node()
