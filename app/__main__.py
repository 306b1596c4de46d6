"""`python -m app token | openapi | worker | rotate-secrets-key` — the operator's command
line."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from app.core.config import ConfigurationError, Settings, get_settings
from app.core.errors import Unauthorized
from app.core.security import (
    load_key_config,
    load_verifier,
    mint_token,
    parse_scopes,
    verify_token,
)


def openapi_document() -> dict[str, Any]:
    from app.main import create_app

    # The document does not depend on keys; throwaway ones avoid creating the dev files.
    settings = Settings(
        app_env="dev",
        auth_secret="openapi-generation-" + "x" * 32,
        secrets_key="openapi-generation-" + "x" * 32,
        auth_jwks_file=None,
    )
    schema: dict[str, Any] = create_app(settings).openapi()
    return schema


def render_openapi() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


async def run_worker(settings: Settings, once: bool) -> int:
    """The worker loop until SIGINT/SIGTERM (or one round with --once)."""
    from app.core import idempotency
    from app.core.clock import utc_now
    from app.core.db import create_engine, create_sessionmaker, verify_pooler_keeps_statements
    from app.core.logging import configure_logging
    from app.worker import Worker

    configure_logging(settings.log_level)
    if settings.pooler == "pgbouncer-prepared":
        await verify_pooler_keeps_statements(settings.database_url)
    engine = create_engine(
        settings.database_url,
        settings.db_pool_size,
        settings.statement_timeout_ms,
        settings.pooler,
    )
    try:
        info = idempotency.session_info(settings.idempotency_ttl, utc_now)
        async with Worker(create_sessionmaker(engine, info), settings) as worker:
            if once:
                stats = await worker.run_once()
                print(json.dumps({k: getattr(stats, k) for k in stats.__slots__}))
                return 1 if stats.errors else 0
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await worker.run_forever(stop)
    finally:
        await engine.dispose()
    return 0


async def rotate_secrets_key(settings: Settings, batch: int) -> int:
    """Re-encrypt every stored signing secret under SECRETS_KEY (SECRETS_KEY_OLD still read).
    Prints what it did as JSON; exit 1 when some value could not be opened."""
    from app.core.clock import utc_now
    from app.core.db import create_engine, create_sessionmaker, verify_pooler_keeps_statements
    from app.core.logging import configure_logging
    from app.core.secretbox import load_keyring
    from app.webhooks.rekey import rekey

    configure_logging(settings.log_level)
    if not settings.secrets_key:
        raise ConfigurationError(
            "set SECRETS_KEY to the new key (and SECRETS_KEY_OLD to the one it replaces)"
        )
    keyring = load_keyring(settings)
    if settings.pooler == "pgbouncer-prepared":
        await verify_pooler_keeps_statements(settings.database_url)
    engine = create_engine(
        settings.database_url,
        settings.db_pool_size,
        settings.statement_timeout_ms,
        settings.pooler,
    )
    try:
        stats = await rekey(create_sessionmaker(engine), keyring, utc_now(), batch)
    finally:
        await engine.dispose()
    print(json.dumps({"key_id": keyring.current_kid, **stats.as_dict()}))
    if stats.unreadable:
        print(
            "error: some secrets open with no key of SECRETS_KEY / SECRETS_KEY_OLD: keep the "
            "key they were sealed with in SECRETS_KEY_OLD and run again",
            file=sys.stderr,
        )
        return 1
    return 0


def mint_checked(
    tenant: str, scopes: list[str], sub: str, ttl: int, system: str | None = None
) -> str:
    """A token the service configured by this environment accepts, or ConfigurationError.

    The dev secret is read, never created, here: one invented now would not be the one the
    running server holds. The token is verified with the service's own check before it is
    printed (an AUTH_PRIVATE_KEY that is not AUTH_PUBLIC_KEY's pair fails here, not at the
    first request)."""
    settings = get_settings()
    keys = load_key_config(settings, create_dev_secret=False)
    token = mint_token(keys, tenant=tenant, scopes=scopes, sub=sub, ttl_seconds=ttl, system=system)
    try:
        verify_token(load_verifier(settings) if settings.auth_jwks_file else keys, token)
    except Unauthorized:
        raise ConfigurationError(
            "the service would refuse a token signed with this configuration "
            "(does AUTH_PRIVATE_KEY belong to AUTH_PUBLIC_KEY, or to the AUTH_JWKS_FILE key "
            "named by AUTH_KEY_ID?)"
        ) from None
    return token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app")
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("token", help="print a token signed with the running configuration")
    tok.add_argument("--tenant", required=True)
    tok.add_argument("--scopes", default="all", help='"all" or a space-separated list')
    tok.add_argument("--sub", default="cli")
    tok.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    tok.add_argument(
        "--system", default=None, help="the system a tasks:work token acts for (its key)"
    )
    sub.add_parser("openapi", help="print the OpenAPI document (openapi.json must equal it)")
    wrk = sub.add_parser(
        "worker", help="run the worker: audit sealing, reminders, webhook delivery"
    )
    wrk.add_argument("--once", action="store_true", help="one round, then exit")
    rot = sub.add_parser(
        "rotate-secrets-key",
        help="re-encrypt the stored signing secrets under SECRETS_KEY (old keys in "
        "SECRETS_KEY_OLD)",
    )
    rot.add_argument("--batch", type=int, default=500, help="rows per transaction (default 500)")
    args = parser.parse_args(argv)

    if args.command == "openapi":
        sys.stdout.write(render_openapi())
        return 0
    if args.command == "worker":
        try:
            settings = get_settings()
        except (ValueError, ConfigurationError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            return asyncio.run(run_worker(settings, args.once))
        except ConfigurationError as exc:  # a pooler that loses prepared statements
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command == "rotate-secrets-key":
        try:
            if not 0 < args.batch <= 10_000:
                raise ValueError("--batch must be 1 to 10000")
            return asyncio.run(rotate_secrets_key(get_settings(), args.batch))
        except (ValueError, ConfigurationError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        scopes = parse_scopes(args.scopes, args.system)
        if not 0 < len(args.tenant) <= 64:
            raise ValueError("--tenant must be 1 to 64 characters")
        if args.ttl <= 0:
            raise ValueError("--ttl must be positive")
        subject = f"system:{args.system}" if args.system and args.sub == "cli" else args.sub
        print(mint_checked(args.tenant, scopes, subject, args.ttl, args.system))
    except (ValueError, ConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
