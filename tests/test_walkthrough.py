"""The README's walk-through runs, so it cannot rot: the README shows `scripts/walkthrough`
verbatim, and the script runs against a real uvicorn on a fresh SQLite database (every `call`
in it stops the script on an unexpected status). The token command is also run from another
directory, and the running server accepts its token."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "walkthrough"
SCRIPT_MARKER = "# ---- README walk-through (verbatim from here) ----"
README_MARKER = "<!-- scripts/walkthrough: the lines below are that script's, verbatim -->"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _script_walkthrough() -> str:
    text = SCRIPT.read_text()
    assert SCRIPT_MARKER in text
    return text.split(SCRIPT_MARKER + "\n", 1)[1]


def _readme_walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    assert README_MARKER in readme, "the README lost its walk-through marker"
    after = readme.split(README_MARKER, 1)[1].lstrip("\n")
    assert after.startswith("```sh\n")
    return after.removeprefix("```sh\n").split("```\n", 1)[0]


def test_the_readme_shows_the_walkthrough_script_verbatim() -> None:
    assert _readme_walkthrough() == _script_walkthrough()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """uvicorn on a fresh SQLite database built by `alembic upgrade head`, as scripts/serve."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "APP_ENV", "DATABASE_"))
    }
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'walkthrough.db'}",
        WEBHOOK_ALLOW_HOSTS="127.0.0.1",
        WORKER_INTERVAL_SECONDS="0.2",
    )
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port), "--no-access-log"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield base, env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_the_walkthrough_runs_against_a_real_server(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, env = server
    for tool in ("bash", "curl", "jq"):
        assert shutil.which(tool), f"the walk-through needs {tool}"
    # The token command from another directory: the server accepts what it prints.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    token = subprocess.run(
        [sys.executable, "-m", "app", "token", "--tenant", "acme", "--scopes", "policies:read"],
        cwd=elsewhere,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    r = httpx.get(f"{base}/v1/policies", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert list(elsewhere.iterdir()) == []

    run = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        env={**env, "API": base, "HOOK_PORT": str(_free_port())},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    out = run.stdout
    assert '"key": "spotrak"' in out
    assert '"status": "completed"' in out
    assert "sale_or_sharing" in out
    assert "tell the authority by" in out
    assert '"ok": true' in out
