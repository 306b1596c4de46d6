"""`/docs` and `/redoc` work without the internet: every asset they reference is served here."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from app.main import create_app
from tests.conftest import make_settings

BASE = "http://testserver"
# src="…", href="…", ReDoc's spec-url="…", and the quoted URLs of Swagger UI's script
# (`url: '…'`, `oauth2RedirectUrl: …`).
REFERENCE = re.compile(
    r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']"""
    r"""|(?:url|oauth2RedirectUrl)["']?\s*:\s*[^"'\n]*["']([^"']+)["']"""
)


def _references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(html)]


@pytest.fixture
async def docs_client(tmp_path: Path) -> httpx.AsyncClient:
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png", "openapi.json"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png", "openapi.json"}),
    ],
)
async def test_a_docs_page_and_every_asset_it_references_are_served_locally(
    docs_client: httpx.AsyncClient, page: str, expected: set[str]
) -> None:
    async with docs_client as client:
        r = await client.get(page)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert "http://" not in r.text.replace(BASE, "")
        assert "https://" not in r.text
        refs = _references(r.text)
        assert {Path(urlsplit(u).path).name for u in refs} >= expected
        for ref in refs:
            url = urljoin(f"{BASE}{page}", ref)
            assert urlsplit(url).netloc == "testserver", ref  # no external host
            asset = await client.get(url)
            assert asset.status_code == 200, ref
            assert asset.content, ref
            if ref.endswith(".css"):
                assert not re.search(r"url\(\s*['\"]?(https?:)?//", asset.text)


async def test_swagger_ui_does_not_send_the_document_to_the_online_validator(
    docs_client: httpx.AsyncClient,
) -> None:
    async with docs_client as client:
        html = (await client.get("/docs")).text
    assert '"validatorUrl": null' in html
