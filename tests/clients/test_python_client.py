"""openapi-python-client generates a client from the committed openapi.json without one warning,
and that client drives the running app with every answer parsed into its typed model.

The generated code lives in a temporary directory (it is never committed).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, token_for
from tests.live import LiveServer

PACKAGE = "prapi_generated_client"
BIN = Path(sys.executable).parent


def generate_python_client(out_dir: Path) -> subprocess.CompletedProcess[str]:
    """The README's generation command, with `--fail-on-warning` and the importable layout."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # its ruff hooks
    return subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(ROOT / "openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(out_dir / PACKAGE),
            "--fail-on-warning",
        ],
        cwd=out_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


class Generated:
    def __init__(self, output: str) -> None:
        self.output = output
        self.client_module = importlib.import_module(f"{PACKAGE}.client")
        self.models = importlib.import_module(f"{PACKAGE}.models")

    def api(self, tag: str, operation: str) -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.api.{tag}.{operation}")

    def client(self, server: LiveServer, tenant: str) -> Any:
        return self.client_module.AuthenticatedClient(
            base_url=server.url, token=token_for(tenant), raise_on_unexpected_status=True
        )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    out_dir = tmp_path_factory.mktemp("python-client")
    result = generate_python_client(out_dir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"openapi-python-client failed:\n{output}"
    sys.path.insert(0, str(out_dir))
    try:
        yield Generated(output)
    finally:
        sys.path.remove(str(out_dir))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_generation_has_zero_warnings_and_every_component_model(generated: Generated) -> None:
    assert "warning" not in generated.output.lower(), generated.output
    schemas = json.loads((ROOT / "openapi.json").read_text())["components"]["schemas"]
    missing = [name for name in schemas if not hasattr(generated.models, name)]
    assert missing == [], f"schemas the generated client has no model for: {missing}"


def test_policy_dsar_consent_and_breach_through_the_generated_client(
    generated: Generated, live_server: LiveServer, tenant: str
) -> None:
    m = generated.models
    spotrak = json.loads((ROOT / "examples/policies/spotrak.json").read_text())

    with generated.client(live_server, tenant) as client:
        # createPolicy
        created = generated.api("policies", "create_policy").sync(
            client=client, body=m.PolicyCreate.from_dict(spotrak), idempotency_key="py-create-1"
        )
        assert isinstance(created, m.PolicyRead), created
        assert (created.key, created.version, created.in_force) == ("spotrak", 1, True)
        assert isinstance(created.change_notice, m.PeriodOut)
        assert created.change_notice.value == 15
        assert created.change_notice.unit is m.PeriodOutUnit.DAYS
        assert isinstance(created.published_at, datetime)
        assert created.published_at.tzinfo is not None

        # getPolicy
        policy = generated.api("policies", "get_policy").sync(client=client, key="spotrak")
        assert isinstance(policy, m.PolicyRead), policy
        assert policy.version == created.version
        assert isinstance(policy.breach, m.BreachOut)
        assert policy.breach.subjects_within.to_dict() == {"value": 72, "unit": "hours"}
        assert all(isinstance(rule, m.RetentionOut) for rule in policy.retention)
        categories = [rule["category"] for rule in spotrak["retention"]]
        assert [rule.category for rule in policy.retention] == categories
        assert [p.key for p in policy.consent_purposes] == ["audience_cookies"]

        # createDsar
        dsar = generated.api("dsars", "create_dsar").sync(
            client=client,
            body=m.DsarCreate(
                policy_key="spotrak",
                type_=m.DsarCreateType.ACCESS,
                subject=m.Subject(id="user-8812", email="jane@example.com"),
                received_at=datetime.fromisoformat("2026-11-02T09:30:00+01:00"),
                channel="email",
            ),
        )
        assert isinstance(dsar, m.DsarRead), dsar
        assert dsar.policy_version == 1
        assert isinstance(dsar.status, m.DsarStatus)
        assert isinstance(dsar.due_date, date)

        # listDsars
        listed = generated.api("dsars", "list_dsars").sync(
            client=client, policy_key="spotrak", limit=10
        )
        assert isinstance(listed, m.DsarList), listed
        assert [item.id for item in listed.items] == [dsar.id]
        assert listed.next_cursor is None

        # recordConsentEvent
        event = generated.api("consent", "record_consent_event").sync(
            client=client,
            body=m.ConsentEventIn(
                policy_key="spotrak",
                subject_id="user-8812",
                purpose="audience_cookies",
                action=m.ConsentAction.GRANTED,
                source="banner",
            ),
        )
        assert isinstance(event, m.ConsentEventCreated), event
        assert event.action is m.ConsentAction.GRANTED
        assert (event.subject_id, event.policy_version, event.became_current) == (
            "user-8812",
            1,
            True,
        )

        # createBreach
        breach = generated.api("breaches", "create_breach").sync(
            client=client,
            body=m.BreachCreate(
                policy_key="spotrak",
                title="Location history exposed",
                aware_at=datetime.fromisoformat("2026-10-24T22:30:00+02:00"),
                data_categories=["location_history"],
                subjects_affected=1200,
                risk=m.BreachRisk.HIGH_RISK,
            ),
        )
        assert isinstance(breach, m.BreachRead), breach
        assert breach.status is m.BreachStatus.OPEN
        assert breach.subjects_notification_required is True
        assert isinstance(breach.subjects_due_at, datetime)

    # What the client parsed is what the server stored.
    headers = {"Authorization": f"Bearer {token_for(tenant)}"}
    with httpx.Client(base_url=live_server.url, headers=headers) as raw:
        assert raw.get(f"/v1/dsars/{dsar.id}").json()["due_date"] == dsar.due_date.isoformat()
        stored = raw.get(f"/v1/breaches/{breach.id}").json()
        assert datetime.fromisoformat(stored["subjects_due_at"]) == breach.subjects_due_at
        consents = raw.get("/v1/subjects/user-8812/consents").json()["consents"]
        assert [(c["purpose"], c["state"]) for c in consents] == [("audience_cookies", "granted")]
