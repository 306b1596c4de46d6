"""The house's layers, read from the source: `core/` knows no domain, `events/` knows only
`core/`, `rules/` is pure, and no table's INSERT is spelled out twice."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"
# what each bottom layer may import from the app
ALLOWED = {"core": {"core"}, "events": {"core", "events"}, "rules": {"rules"}}


def _app_imports(path: Path) -> set[str]:
    """The `app.<package>` names a module imports (absolute imports; the app uses no others)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "app" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_bottom_layer_imports_nothing_above_it(layer: str) -> None:
    wrong = {
        str(path.relative_to(APP)): sorted(_app_imports(path) - ALLOWED[layer])
        for path in sorted((APP / layer).rglob("*.py"))
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_checker_sees_a_domain_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from app.dsar.models import DsarTicket\nimport app.core.db\n")
    assert _app_imports(module) == {"dsar", "core"}


INSERT = re.compile(r"INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


def test_no_tables_insert_is_written_in_two_modules() -> None:
    where: dict[str, set[str]] = {}
    for path in APP.rglob("*.py"):
        for table in INSERT.findall(path.read_text()):
            where.setdefault(table.lower(), set()).add(str(path.relative_to(APP)))
    twice = {t: sorted(m) for t, m in where.items() if len(m) > 1}
    assert twice == {}
    # the tables the one-statement writes share are written by their owners only
    for table in ("audit_entry", "outbox_event", "idempotency_record"):
        assert table not in where, f"{table}: its module composes the statement (insert_cte)"
