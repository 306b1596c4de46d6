"""A real server process for the tests that talk HTTP as an adopter would (generated clients,
the README walk-through): uvicorn on a free port over a fresh SQLite file built by
`alembic upgrade head`, as `scripts/serve` does. The rest of the suite uses the ASGI transport.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT


@dataclass(frozen=True)
class LiveServer:
    url: str
    env: dict[str, str]
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(workdir: Path, **settings: str) -> Iterator[LiveServer]:
    """uvicorn serving `app.main:app` on `workdir/live.db`, ready when `/readyz` answers 200.
    The caller's environment is kept but for the app's own settings, which come from
    `settings` (so a developer's `DATABASE_URL` or key never leaks in)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("AUTH_", "DATABASE_", "DB_", "APP_", "WORKER_", "REDIS_", "RATE_LIMIT_", "SECRETS_")
        )
    }
    env |= {"DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'live.db'}", "APP_ENV": "dev"}
    env |= settings
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    log = workdir / "uvicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"uvicorn exited with {server.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not become ready in 60 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield LiveServer(url, env, log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
