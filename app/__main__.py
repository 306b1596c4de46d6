"""`python -m app token | openapi` — the operator's command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.core.config import ConfigurationError, Settings, get_settings
from app.core.security import load_key_config, mint_token, parse_scopes


def openapi_document() -> dict[str, Any]:
    from app.main import create_app

    # The document does not depend on keys; a throwaway secret avoids creating the dev one.
    settings = Settings(app_env="dev", auth_secret="openapi-generation-" + "x" * 32)
    schema: dict[str, Any] = create_app(settings).openapi()
    return schema


def render_openapi() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app")
    sub = parser.add_subparsers(dest="command", required=True)
    tok = sub.add_parser("token", help="print a token signed with the running configuration")
    tok.add_argument("--tenant", required=True)
    tok.add_argument("--scopes", default="all", help='"all" or a space-separated list')
    tok.add_argument("--sub", default="cli")
    tok.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    sub.add_parser("openapi", help="print the OpenAPI document (openapi.json must equal it)")
    args = parser.parse_args(argv)

    if args.command == "openapi":
        sys.stdout.write(render_openapi())
        return 0
    try:
        scopes = parse_scopes(args.scopes)
        if not 0 < len(args.tenant) <= 64:
            raise ValueError("--tenant must be 1 to 64 characters")
        if args.ttl <= 0:
            raise ValueError("--ttl must be positive")
        keys = load_key_config(get_settings())
        print(
            mint_token(keys, tenant=args.tenant, scopes=scopes, sub=args.sub, ttl_seconds=args.ttl)
        )
    except (ValueError, ConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
