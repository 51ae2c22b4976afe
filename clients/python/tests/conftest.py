"""Real `warden serve` processes for the tests (the binary cargo built: $WARDEN_BIN, else target/debug/warden),
each on a free port, killed after the test."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = os.environ.get("WARDEN_BIN") or next(
    (str(p) for p in (ROOT / "target/debug/warden", ROOT / "target/release/warden") if p.exists()), None
)


class Server:
    def __init__(self, *args: str) -> None:
        if BIN is None:
            raise RuntimeError("no warden binary: run `cargo build -p warden-cli` first, or set WARDEN_BIN")
        env = {**os.environ, "RUST_LOG": "error", "WARDEN_BACKEND": "", "WARDEN_LISTEN": ""}
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", *args], stdout=subprocess.PIPE, text=True, env=env
        )
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (\S+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"unexpected banner: {line!r}")
        self.url = m.group(1)

    def stop(self, signal: str = "kill") -> None:
        if self.proc.poll() is None:
            self.proc.terminate() if signal == "term" else self.proc.kill()
            self.proc.wait()


def keygen(principal: str, role: str, namespaces: list[str] | None = None) -> tuple[str, str]:
    """A new API key and its auth-file entry (`warden keygen` prints the key on stderr)."""
    args = [BIN, "keygen", "--principal", principal, "--role", role]
    for n in namespaces or ["*"]:
        args += ["--namespace", n]
    r = subprocess.run(args, capture_output=True, text=True, check=True)
    key = re.search(r"(wdn_[0-9a-f]+)", r.stderr)
    assert key, r.stderr
    return key.group(1), r.stdout


def auth_file(entries: list[str]) -> str:
    fd, path = tempfile.mkstemp(suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(entries))
    return path


@pytest.fixture
def serve():
    started: list[Server] = []

    def start(*args: str) -> Server:
        s = Server(*args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def server(serve) -> Server:
    return serve("--backend", "memory://")
