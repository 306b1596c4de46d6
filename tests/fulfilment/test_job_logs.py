"""No subject identifier or e-mail in a log line while push systems' `task.created` jobs are
delivered (DESIGN §9, §13): the job's body must carry the subject (the system needs it to find
the person), so the delivery path is where it could leak. Canaries go through a ticket fanned
out to push systems (one answering, one failing, then retried), with the logs at DEBUG, and
every captured record is scanned in its JSON form."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.core.logging import JsonFormatter
from tests.conftest import MutableClock
from tests.events.helpers import Receiver, worker_for
from tests.fulfilment.helpers import RECEIVED, policy, start, system, system_auth, tasks_of


async def test_push_job_deliveries_log_no_subject_identifier(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    tenant: str,
    app: FastAPI,
    clock: MutableClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # as with LOG_LEVEL=DEBUG
    canary = f"canary{uuid.uuid4().hex[:10]}"
    email = f"{canary}@mail-canary.example"
    await policy(client, auth)
    async with Receiver() as ok, Receiver(statuses=[500]) as failing:
        await system(client, auth, "vendor", delivery={"mode": "push", "url": ok.url})
        await system(client, auth, "flaky", delivery={"mode": "push", "url": failing.url})
        r = await client.post(
            "/v1/dsars",
            headers=auth,
            json={
                "policy_key": "spotrak",
                "type": "access",
                "subject": {"id": canary, "email": email, "name": canary},
                "received_at": RECEIVED,
            },
        )
        assert r.status_code == 201, r.text
        await start(client, auth, r.json()["id"])
        async with worker_for(app, rng=lambda: 0.0) as worker:
            first = await worker.run_once()
            await worker.run_once(clock() + timedelta(hours=1))  # the failed job, again
        tasks = {t["system"]: t for t in await tasks_of(client, auth, r.json()["id"])}
        r = await client.post(
            f"/v1/tasks/{tasks['vendor']['id']}/result",
            headers=system_auth(tenant, "vendor"),
            json={"status": "completed", "records_affected": 1, "data": {"email": email}},
        )
        assert r.status_code == 200, r.text

    # The jobs did carry the subject (so the scan below is not vacuous) ...
    assert first.succeeded == 1
    assert len(ok.requests) == 1
    assert len(failing.requests) == 2
    for got in (*ok.requests, *failing.requests):
        assert canary.encode() in got.body
        assert email.encode() in got.body
    # ... and a failed attempt was logged, with ids only.
    failed = [r for r in caplog.records if r.getMessage() == "webhook attempt failed"]
    assert failed
    assert caplog.records, "nothing was logged: the scan would prove nothing"
    formatter = JsonFormatter()
    for record in caplog.records:
        line = formatter.format(record)
        assert canary not in line, line
        assert "mail-canary" not in line, line
