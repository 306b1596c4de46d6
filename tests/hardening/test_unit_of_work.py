"""The unit of work (app/core/uow.py) decides "one statement alone on the bare pool, else the
session" from what the unit wrote, not from whether a read opened a transaction."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from app.core.uow import unit_of_work
from app.dsar.models import DsarTicket
from app.dsar.repository import NewTicket
from app.events.models import OutboxEvent

TXID = text("SELECT CAST(txid_current() AS text)")


async def test_a_read_does_not_take_the_write_off_the_bare_pool(app: FastAPI, backend: str) -> None:
    async with unit_of_work(app.state.sessionmaker, app.state.raw_pool) as uow:
        await uow.session.execute(select(1))  # a policy-cache miss: a read opens a transaction
        assert uow.session.in_transaction()
        assert not uow.has_written
        if backend == "sqlite":
            assert app.state.raw_pool is None
            rows = await uow.execute_alone(text("SELECT 1"), {})
            assert [tuple(r) for r in rows] == [(1,)]
            await uow.commit()
            return
        session_tx = (await uow.session.execute(select(func.txid_current()))).scalar_one()
        alone = await uow.execute_alone(TXID, {})
        assert alone[0][0] != str(session_tx)  # its own transaction, on the bare pool
        await uow.commit()


async def test_after_a_write_the_statement_joins_the_units_transaction(
    app: FastAPI, backend: str
) -> None:
    async with unit_of_work(app.state.sessionmaker, app.state.raw_pool) as uow:
        uow.session.add(
            OutboxEvent(
                tenant=f"t-{uuid.uuid4().hex[:8]}",
                type="dsar.created",
                data={},
                created_at=datetime.now(UTC),
            )
        )
        await uow.session.flush()
        assert uow.has_written
        if backend == "postgresql":
            session_tx = (await uow.session.execute(select(func.txid_current()))).scalar_one()
            joined = await uow.execute_alone(TXID, {})
            assert joined[0][0] == str(session_tx)
        await uow.rollback()
        assert not uow.has_written  # a rolled-back unit holds nothing


async def test_a_lock_or_a_statement_that_is_not_a_select_counts_as_a_write(app: FastAPI) -> None:
    async with unit_of_work(app.state.sessionmaker, app.state.raw_pool) as uow:
        await uow.session.execute(text("SELECT 1"))  # text(): counted, conservatively
        assert uow.has_written
        await uow.rollback()


async def test_nothing_is_written_after_the_units_one_statement(app: FastAPI, backend: str) -> None:
    async with unit_of_work(app.state.sessionmaker, app.state.raw_pool) as uow:
        await uow.execute_alone(text("SELECT 1"), {})
        await uow.session.execute(text("SELECT 1"))
        if backend == "sqlite":  # no bare pool: both joined the session's transaction
            await uow.commit()
            return
        with pytest.raises(RuntimeError):
            await uow.commit()
        await uow.rollback()


def test_a_new_ticket_has_exactly_the_tickets_columns() -> None:
    assert {f.name for f in fields(NewTicket)} == {c.key for c in DsarTicket.__table__.columns}
