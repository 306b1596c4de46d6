"""openapi-typescript types from the committed openapi.json, used through openapi-fetch by a
driver that `tsc --strict` compiles and node runs against the app.

The npm packages are pinned in clients/ts/package-lock.json and installed with `npm ci` (once per
lock file). The types and the compiled driver are generated into a temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, token_for
from tests.live import LiveServer

TS = ROOT / "clients" / "ts"
NODE_MODULES = TS / "node_modules"


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    exe = shutil.which(args[0])
    assert exe, f"{args[0]} is not installed (Node 20+ with npm is required)"
    result = subprocess.run(
        [exe, *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output}"
    return output


def npm_ci() -> None:
    """`npm ci` from the lock file, skipped when node_modules was installed from this lock."""
    lock = hashlib.sha256((TS / "package-lock.json").read_bytes()).hexdigest()
    stamp = NODE_MODULES / ".installed-from-lock"
    if stamp.exists() and stamp.read_text() == lock:
        return
    run(["npm", "ci", "--no-audit", "--no-fund"], TS)
    stamp.write_text(lock)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clients/ts copied to a temporary directory, with its node_modules linked."""
    npm_ci()
    work = tmp_path_factory.mktemp("ts-client")
    for name in ("package.json", "tsconfig.json"):
        shutil.copy(TS / name, work / name)
    shutil.copytree(TS / "src", work / "src", ignore=shutil.ignore_patterns("schema.d.ts"))
    (work / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    return work


def test_types_generate_without_warnings_and_the_driver_compiles_strict(project: Path) -> None:
    bin_dir = project / "node_modules" / ".bin"
    output = run(
        [
            str(bin_dir / "openapi-typescript"),
            str(ROOT / "openapi.json"),
            "--output",
            "src/schema.d.ts",
            "--default-non-nullable",
            "false",
        ],
        project,
        env=dict(os.environ, NO_COLOR="1", FORCE_COLOR="0"),
    )
    # openapi-typescript prints its banner and one line per file; anything else (Redocly's lint
    # warnings, unsupported constructs) fails the test.
    extra = [
        line
        for line in output.splitlines()
        if line.strip() and not line.startswith(("✨ openapi-typescript", "🚀 "))
    ]
    assert extra == [], output
    schema = (project / "src" / "schema.d.ts").read_text()
    assert "PolicyRead: {" in schema
    assert "PeriodOut: {" in schema
    assert "ReceiptPeriod: {" in schema
    # Without --default-non-nullable false, a request field with a default would be required.
    assert "requester?: " in schema

    compiled = run([str(bin_dir / "tsc"), "--project", ".", "--strict"], project)
    assert compiled.strip() == "", compiled
    assert (project / "dist" / "drive.js").is_file()


def test_policy_dsar_consent_and_breach_through_openapi_fetch(
    project: Path, live_server: LiveServer, tenant: str
) -> None:
    if not (project / "dist" / "drive.js").is_file():
        pytest.fail("the driver was not compiled (see the test above)")
    env = dict(os.environ, API_URL=live_server.url, API_TOKEN=token_for(tenant), NO_COLOR="1")
    out = run(["node", "dist/drive.js"], project, env=env)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])

    assert result["policy"] == {
        "key": "spotrak",
        "version": 1,
        "change_notice": {"value": 15, "unit": "days"},
    }
    assert result["dsar"]["listed"] == [result["dsar"]["id"]]
    assert result["consent"]["action"] == "granted"
    assert result["consent"]["policy_version"] == 1
    assert result["breach"]["status"] == "open"

    # What the driver read through the typed client is what the server stored.
    headers = {"Authorization": f"Bearer {token_for(tenant)}"}
    with httpx.Client(base_url=live_server.url, headers=headers) as raw:
        dsar = raw.get(f"/v1/dsars/{result['dsar']['id']}").json()
        assert dsar["status"] == result["dsar"]["status"]
        assert date.fromisoformat(dsar["due_date"]) == date.fromisoformat(
            result["dsar"]["due_date"]
        )
        breach = raw.get(f"/v1/breaches/{result['breach']['id']}").json()
        assert datetime.fromisoformat(breach["subjects_due_at"]) == datetime.fromisoformat(
            result["breach"]["subjects_due_at"]
        )
        events = raw.get("/v1/consent-events", params={"subject_id": "user-8812"}).json()
        assert [e["id"] for e in events["items"]] == [result["consent"]["id"]]
