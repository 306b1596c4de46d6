"""The README's walk-through runs, so it cannot rot: the README shows `scripts/walkthrough`
verbatim, and the script runs against a real uvicorn on a fresh SQLite database (every `call`
in it stops the script on an unexpected status). The token command is also run from another
directory, and the running server accepts its token."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.live import free_port, live_server

SCRIPT = ROOT / "scripts" / "walkthrough"
SCRIPT_MARKER = "# ---- README walk-through (verbatim from here) ----"
README_MARKER = "<!-- scripts/walkthrough: the lines below are that script's, verbatim -->"


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
    """uvicorn on a fresh SQLite database, as scripts/serve (dev mode: its own secret)."""
    with live_server(
        tmp_path, WEBHOOK_ALLOW_HOSTS="127.0.0.1", WORKER_INTERVAL_SECONDS="0.2"
    ) as live:
        yield live.url, live.env


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
        env={**env, "API": base, "HOOK_PORT": str(free_port())},
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
