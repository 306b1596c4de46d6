"""The one-statement paths (app/core/rawpg.py) write audit, outbox, event and idempotency rows
in hand-written SQL beside the ORM's models. A column added to a model must not be silently
left out there: every INSERT names only real columns, and every column that needs a value
(NOT NULL, no server default, not generated) is named."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Table

from app.consent import repository as consent_repository
from app.core.db import Base
from app.dsar import repository as dsar_repository

STATEMENTS = {
    "consent append": str(consent_repository._PG_APPEND_IDEM),
    "dsar create": str(dsar_repository._PG_CREATE),
}
INSERT = re.compile(r"INSERT INTO (\w+)(?: AS \w+)? \(([^)]*)\)", re.S)


def _inserts() -> list[tuple[str, str, list[str]]]:
    found = []
    for name, sql in STATEMENTS.items():
        for table, cols in INSERT.findall(sql):
            found.append((name, table, [c.strip() for c in cols.split(",")]))
    return found


def test_the_statements_insert_into_every_table_they_should() -> None:
    tables = {(name, table) for name, table, _ in _inserts()}
    assert tables == {
        ("consent append", "consent_event"),
        ("consent append", "consent_state"),
        ("consent append", "audit_entry"),
        ("consent append", "outbox_event"),
        ("consent append", "idempotency_record"),
        ("dsar create", "dsar_ticket"),
        ("dsar create", "dsar_event"),
        ("dsar create", "audit_entry"),
        ("dsar create", "outbox_event"),
    }


@pytest.mark.parametrize("insert", _inserts(), ids=lambda i: f"{i[0]}:{i[1]}")
def test_every_required_column_is_named_and_no_other(insert: tuple[str, str, list[str]]) -> None:
    _, table_name, named = insert
    table = Base.metadata.tables[table_name]
    assert isinstance(table, Table)
    columns = {c.name for c in table.columns}
    assert set(named) <= columns, set(named) - columns
    required = {
        c.name
        for c in table.columns
        if not c.nullable
        and c.server_default is None
        and not (c.primary_key and c.autoincrement is True)
    }
    assert required <= set(named), f"{table_name}: not written: {sorted(required - set(named))}"
