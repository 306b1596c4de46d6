"""`python -m app token` works from any directory and never prints a token the service would
refuse (the end-to-end check against a running server is in tests/test_walkthrough.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.core.config import PROJECT_DIR, ConfigurationError, Settings
from app.core.security import dev_secret, load_key_config, verify_token


def _token(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "APP_ENV", "DATABASE_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "app", "token", "--tenant", "acme", "--scopes", "all"],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _pem(key: rsa.RSAPrivateKey) -> tuple[str, str]:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def test_a_relative_sqlite_path_is_anchored_in_the_project_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite+aiosqlite:///privacy.db", "sqlite+aiosqlite:///./privacy.db"):
        settings = Settings(database_url=url)
        assert settings.database_url == f"sqlite+aiosqlite:///{PROJECT_DIR / 'privacy.db'}"
        assert settings.dev_secret_path() == PROJECT_DIR / "privacy.db.jwt-secret"
    assert Settings().database_url == f"sqlite+aiosqlite:///{PROJECT_DIR / 'privacy.db'}"
    absolute = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    assert Settings(database_url=absolute).database_url == absolute
    pg = "postgresql+asyncpg://u@db.example/prapi"
    assert Settings(database_url=pg).database_url == pg
    assert Settings(database_url=pg).dev_secret_path() == PROJECT_DIR / ".dev-jwt-secret"


def test_the_token_command_in_another_directory_signs_with_the_servers_secret(
    tmp_path: Path,
) -> None:
    db = tmp_path / "data" / "privacy.db"
    db.parent.mkdir()
    url = f"sqlite+aiosqlite:///{db}"
    server_keys = load_key_config(Settings(database_url=url))  # what create_app() does
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = _token(elsewhere, DATABASE_URL=url)
    assert run.returncode == 0, run.stderr
    assert verify_token(server_keys, run.stdout.strip()).tenant == "acme"
    assert list(elsewhere.iterdir()) == []  # nothing invented in the working directory


def test_the_token_command_refuses_rather_than_invent_a_secret(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'never-served.db'}"
    run = _token(tmp_path, DATABASE_URL=url)
    assert run.returncode == 2
    assert run.stdout == ""
    assert "no dev signing secret" in run.stderr
    assert "never-served.db.jwt-secret" in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_token_command_refuses_a_private_key_that_is_not_the_public_keys_pair(
    tmp_path: Path,
) -> None:
    private, public = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    other, _ = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    good = _token(tmp_path, DATABASE_URL=url, AUTH_PUBLIC_KEY=public, AUTH_PRIVATE_KEY=private)
    assert good.returncode == 0, good.stderr
    keys = load_key_config(Settings(database_url=url, auth_public_key=public))
    assert verify_token(keys, good.stdout.strip()).tenant == "acme"
    bad = _token(tmp_path, DATABASE_URL=url, AUTH_PUBLIC_KEY=public, AUTH_PRIVATE_KEY=other)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert "would refuse" in bad.stderr


def test_a_private_key_without_its_public_key_is_a_configuration_error(tmp_path: Path) -> None:
    private, _ = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(ConfigurationError):
        Settings(auth_private_key=private)
    run = _token(
        tmp_path,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        AUTH_PRIVATE_KEY=private,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    assert "AUTH_PRIVATE_KEY is set without AUTH_PUBLIC_KEY" in run.stderr


def test_server_processes_starting_together_keep_one_dev_secret(tmp_path: Path) -> None:
    """`uvicorn --workers N` creates the secret from N processes at once."""
    path = tmp_path / "privacy.db.jwt-secret"
    with ProcessPoolExecutor(max_workers=4) as pool:
        values = set(pool.map(dev_secret, [path] * 8))
    assert len(values) == 1
    assert values == {path.read_text().strip()}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    assert oct(path.stat().st_mode & 0o777) == "0o600"
