"""The repository is all an adopter gets: its documents point nowhere outside it, the API
guide lists every error code and scope the service has, and its webhook verification example
accepts what the service signs."""

from __future__ import annotations

import re
import time
from pathlib import Path

from app.core.security import ALL_SCOPES
from app.webhooks import signing
from tests.conftest import ROOT

DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "CHANGELOG.md",
    ROOT / "SECURITY.md",
    ROOT / "examples" / "policies" / "README.md",
    ROOT / "bench" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
LINK = re.compile(r"\]\(([^)\s]+)\)")
API_GUIDE = ROOT / "docs" / "api.md"


def test_the_documents_exist() -> None:
    for name in ("docs/api.md", "docs/production.md", "LICENSE", "CHANGELOG.md", "SECURITY.md"):
        assert (ROOT / name).is_file(), name
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_no_document_points_outside_the_repository() -> None:
    for doc in DOCUMENTS:
        if not doc.exists():
            continue
        text = doc.read_text()
        # no path that climbs out of its folder, even one that stays inside the repository:
        # a reader of the file on its own (or a checker) cannot tell where it lands
        assert "../" not in text, doc
        assert not re.search(r"\b(DESIGN|RULES|STYLE)\.md\b", text), doc
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor
            resolved = (doc.parent / target.split("#", 1)[0]).resolve()
            assert resolved.is_relative_to(ROOT.resolve()), f"{doc}: {target}"


def _codes_in_the_code() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "app").rglob("*.py"):
        text = path.read_text()
        codes.update(re.findall(r'\bcode = "([a-z_]+)"', text))
        codes.update(re.findall(r'"code": "([a-z_]+)"', text))
        # problem_response(422, "validation_error", …), _problem(send, 413, "payload_too_large")
        codes.update(
            re.findall(
                r'(?:problem_response|problem_body|_problem)\([^"]*?\b\d{3},\s*"([a-z_]+)"', text
            )
        )
    errors = (ROOT / "app" / "core" / "errors.py").read_text()
    table = errors.split("_STATUS_CODES = {", 1)[1].split("}", 1)[0]
    codes.update(re.findall(r'"([a-z_]+)"', table))
    codes.update(re.findall(r'_STATUS_CODES\.get\([^,]+,\s*"([a-z_]+)"\)', errors))
    return codes


def test_the_api_guide_lists_every_error_code() -> None:
    codes = _codes_in_the_code()
    assert {"validation_error", "invalid_token", "dsar_transition_not_allowed"} <= codes
    guide = API_GUIDE.read_text()
    missing = sorted(c for c in codes if f"`{c}`" not in guide)
    assert not missing, f"add these codes to the table in docs/api.md: {missing}"


def test_the_api_guide_lists_every_scope() -> None:
    guide = API_GUIDE.read_text()
    table = guide.split("### Scopes", 1)[1].split("###", 1)[0]
    missing = [s for s in ALL_SCOPES if f"| `{s}` |" not in table]
    assert not missing, f"add these scopes to the scope table in docs/api.md: {missing}"


def test_the_guides_verification_example_accepts_what_the_service_signs() -> None:
    guide = API_GUIDE.read_text()
    block = guide.split("### Verifying a delivery", 1)[1].split("```python\n", 1)[1]
    namespace: dict[str, object] = {}
    exec(block.split("```", 1)[0], namespace)
    verify = namespace["verify"]
    assert callable(verify)
    secret = signing.new_secret()
    body = b'{"type":"consent.changed","timestamp":"2027-01-31T09:00:00Z","data":{}}'
    now = int(time.time())
    headers = signing.headers(secret, "msg_1", now, body)
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body.replace(b"consent", b"dsar"))
    assert not verify(signing.new_secret(), headers, body)
    old = signing.headers(secret, "msg_1", now - 3600, body)
    assert not verify(secret, old, body)
    rotated = {**headers, "webhook-signature": f"v1,bm90LWl0 {headers['webhook-signature']}"}
    assert verify(secret, rotated, body)


def test_the_receiver_script_verifies_like_the_guide(tmp_path: Path) -> None:
    source = (ROOT / "scripts" / "webhook-receiver").read_text()
    namespace: dict[str, object] = {"__name__": "receiver"}
    exec(compile(source, "webhook-receiver", "exec"), namespace)
    verify = namespace["verify"]
    assert callable(verify)
    secret = signing.new_secret()
    body = b'{"type":"webhook.ping"}'
    headers = signing.headers(secret, "msg_2", int(time.time()), body)
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")
