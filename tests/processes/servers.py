"""Real server processes on one PostgreSQL database, for the tests of DESIGN §16: uvicorn
(one or several workers) started as an operator would, on a free port, with the app's
settings from the environment only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, TEST_SECRET
from tests.live import free_port


@dataclass(frozen=True)
class Server:
    url: str
    log: Path

    def log_lines(self, event: str) -> int:
        """How many log lines carry `"event":"<event>"` so far."""
        return self.log.read_text(errors="replace").count(f'"event":"{event}"')


def app_env(database_url: str, **settings: str) -> dict[str, str]:
    """The caller's environment without any app setting, plus the test's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTH_", "DATABASE_", "APP_", "WORKER_", "REDIS_", "DB_", "RATE_"))
    }
    return env | {
        "DATABASE_URL": database_url,
        "APP_ENV": "dev",
        "AUTH_SECRET": TEST_SECRET,
        "WORKER_IN_PROCESS": "false",
        **settings,
    }


@contextmanager
def uvicorn(
    workdir: Path,
    database_url: str,
    *,
    workers: int = 1,
    listeners: int | None = None,
    **settings: str,
) -> Iterator[Server]:
    """`uvicorn app.main:app --workers N` on `database_url` (already migrated), ready when
    `/readyz` answers 200 and `listeners` cache listeners (default: one per worker; 0 for
    none) have logged that they are up."""
    port = free_port()
    log = workdir / f"uvicorn-{port}.log"
    want = workers if listeners is None else listeners
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-access-log",
            ],
            cwd=ROOT,
            env=app_env(database_url, **settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"uvicorn exited with {proc.returncode}:\n{log.read_text()}")
            try:
                ready = httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                ready = False
            if ready and server.log_lines("cache_listener_up") >= want:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"uvicorn not ready in 60 s:\n{log.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
