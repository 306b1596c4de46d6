"""Everything JWT lives here, so the library (python-jose) can be swapped in one place.

The accepted algorithm follows the configured key and nothing else: HS256 for a shared
secret, RS256 for an RSA public key, ES256 for an EC P-256 public key. python-jose 3.5 would
otherwise accept e.g. an HS256 token "signed" with the DER form of the RSA public key.

`AUTH_JWKS_FILE` instead names a JWKS file of several public keys (RSA, EC): the token's
`kid` chooses the key, and the key (never the token's header) fixes the algorithm. The file
is re-read when it changes (its mtime, size or inode), so keys rotate without a restart: add
the new key, let issuers sign with it, remove the old one. A token without `kid` is accepted
only while the file holds a single key; an unknown `kid` is 401. A file that cannot be read
or parsed at start-up stops the service; later, the keys last read stay in force (and the
log says so) until the file is valid again.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt
from jose.exceptions import JOSEError

from app.core.config import ConfigurationError, Settings
from app.core.errors import Forbidden, Unauthorized

ALL_SCOPES: tuple[str, ...] = (
    "policies:read",
    "policies:write",
    "dsar:read",
    "dsar:write",
    "consent:read",
    "consent:write",
    "breach:read",
    "breach:write",
    "webhooks:manage",
    "audit:read",
    "reports:read",
    "systems:manage",
    "retention:read",
    "retention:write",
)
# Carried only by a system's token (its `system` claim names the one system it acts for):
# never part of `all`.
TASKS_WORK = "tasks:work"
KNOWN_SCOPES: tuple[str, ...] = (*ALL_SCOPES, TASKS_WORK)
MAX_SYSTEM_KEY_LENGTH = 64
MAX_TOKEN_BYTES = 8 * 1024
IAT_LEEWAY_SECONDS = 60
MAX_TENANT_LENGTH = 64


log = logging.getLogger("app.security")

_SYSTEM_ONLY = "A system's token reaches only its own tasks (/v1/tasks)"


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    tenant: str
    scopes: frozenset[str]
    # The system a `tasks:work` token acts for (DESIGN §13); None for a person or a service.
    system: str | None = None

    def require(self, *needed: str) -> None:
        if self.system is not None and TASKS_WORK not in needed:
            raise Forbidden(_SYSTEM_ONLY, required=list(needed))
        missing = [s for s in needed if s not in self.scopes]
        if missing:
            raise Forbidden(
                f"This token lacks the scope(s): {' '.join(missing)}", required=list(needed)
            )
        if TASKS_WORK in needed and self.system is None:
            raise Forbidden("tasks:work needs a token with a `system` claim", required=[TASKS_WORK])

    def require_operator_or_system(self, operator_scope: str) -> None:
        """An operator holding `operator_scope`, or a system's token with `tasks:work`."""
        if self.system is not None:
            self.require(TASKS_WORK)
        else:
            self.require(operator_scope)


@dataclass(frozen=True, slots=True)
class KeyConfig:
    algorithm: str
    verify_key: str
    sign_key: str | None
    key_id: str | None
    issuer: str | None
    audience: str | None


def load_key_config(settings: Settings, *, create_dev_secret: bool = True) -> KeyConfig:
    """Resolve the one key (and so the one algorithm) this deployment accepts.

    In dev mode without a configured key, the generated secret is created on first use unless
    `create_dev_secret` is false (the token command: a secret it invented would not be the one
    a server already running holds). With AUTH_JWKS_FILE: the token command's signing key
    (AUTH_PRIVATE_KEY); the service verifies with `load_verifier`."""
    if settings.auth_jwks_file is not None:
        return _signing_key_of(settings)
    if settings.auth_public_key:
        public = serialization.load_pem_public_key(settings.auth_public_key.encode())
        if isinstance(public, rsa.RSAPublicKey):
            alg = "RS256"
        elif isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1":
            alg = "ES256"
        else:
            raise ConfigurationError("AUTH_PUBLIC_KEY must be an RSA or EC P-256 public key (PEM)")
        return KeyConfig(
            alg,
            settings.auth_public_key,
            settings.auth_private_key,
            settings.auth_key_id,
            settings.auth_issuer,
            settings.auth_audience,
        )
    if settings.auth_secret:
        secret = settings.auth_secret
    elif settings.app_env == "production":
        raise ConfigurationError("APP_ENV=production refuses to start without a signing key")
    else:
        secret = dev_secret(settings.dev_secret_path(), create=create_dev_secret)
    return KeyConfig(
        "HS256", secret, secret, settings.auth_key_id, settings.auth_issuer, settings.auth_audience
    )


# ---- AUTH_JWKS_FILE: several public keys, chosen by `kid` -----------------------------------

_EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_EC_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


@dataclass(frozen=True, eq=False, slots=True)
class KeySet:
    """One reading of the JWKS file: each `kid` with its key and its one algorithm. Compared
    by identity: a new reading is a new set (and the verified-token cache starts afresh)."""

    keys: Mapping[str, KeyConfig]

    def select(self, token: str) -> KeyConfig:
        """The key the token's `kid` names (401 for an unknown one, or for none while the
        file holds several keys)."""
        if not token or len(token.encode()) > MAX_TOKEN_BYTES:
            raise Unauthorized(_INVALID)
        try:
            header = jwt.get_unverified_header(token)
        except (JOSEError, ValueError, TypeError, KeyError) as exc:
            raise Unauthorized(_INVALID) from exc
        kid = header.get("kid")
        if kid is None:
            if len(self.keys) == 1:
                return dataclasses.replace(next(iter(self.keys.values())), key_id=None)
            raise Unauthorized(_INVALID)
        found = self.keys.get(kid) if isinstance(kid, str) else None
        if found is None:
            raise Unauthorized(_INVALID)
        return found


def _b64_int(value: Any, name: str) -> int:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"AUTH_JWKS_FILE: a key's `{name}` is missing")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError as exc:
        raise ConfigurationError(f"AUTH_JWKS_FILE: a key's `{name}` is not base64url") from exc
    return int.from_bytes(raw, "big")


def _jwk_key(jwk: Mapping[str, Any], issuer: str | None, audience: str | None) -> KeyConfig:
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ConfigurationError("AUTH_JWKS_FILE: every key needs a `kid`")
    if any(m in jwk for m in _PRIVATE_MEMBERS):
        raise ConfigurationError(
            f"AUTH_JWKS_FILE: key {kid!r} holds private or symmetric key material: the file "
            "carries public keys only"
        )
    declared = jwk.get("alg")
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    if jwk.get("kty") == "RSA":
        alg = declared if declared is not None else "RS256"
        if alg not in _RSA_ALGORITHMS:
            raise ConfigurationError(f"AUTH_JWKS_FILE: key {kid!r}: RSA with alg {alg!r}")
        numbers = rsa.RSAPublicNumbers(_b64_int(jwk.get("e"), "e"), _b64_int(jwk.get("n"), "n"))
        public = numbers.public_key()
        if public.key_size < 2048:
            raise ConfigurationError(f"AUTH_JWKS_FILE: key {kid!r}: RSA under 2048 bits")
    elif jwk.get("kty") == "EC":
        crv = jwk.get("crv")
        if crv not in _EC_ALGORITHMS:
            raise ConfigurationError(f"AUTH_JWKS_FILE: key {kid!r}: EC curve {crv!r}")
        alg = _EC_ALGORITHMS[crv]
        if declared is not None and declared != alg:
            raise ConfigurationError(f"AUTH_JWKS_FILE: key {kid!r}: {crv} goes with {alg}")
        try:
            public = ec.EllipticCurvePublicNumbers(
                _b64_int(jwk.get("x"), "x"), _b64_int(jwk.get("y"), "y"), _EC_CURVES[crv]
            ).public_key()
        except ValueError as exc:
            raise ConfigurationError(f"AUTH_JWKS_FILE: key {kid!r}: not a point on {crv}") from exc
    else:
        raise ConfigurationError(
            f"AUTH_JWKS_FILE: key {kid!r}: kty {jwk.get('kty')!r} (RSA or EC public keys only)"
        )
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return KeyConfig(str(alg), pem, None, kid, issuer, audience)


def parse_jwks(data: bytes, issuer: str | None, audience: str | None) -> KeySet:
    """A JWKS document's signing keys (`use` absent or `sig`), each with its algorithm."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ConfigurationError("AUTH_JWKS_FILE is not JSON") from exc
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ConfigurationError('AUTH_JWKS_FILE: expected {"keys": [...]}')
    keys: dict[str, KeyConfig] = {}
    for jwk in entries:
        if not isinstance(jwk, dict):
            raise ConfigurationError("AUTH_JWKS_FILE: each key is a JSON object")
        if jwk.get("use", "sig") != "sig":
            continue
        key = _jwk_key(jwk, issuer, audience)
        if key.key_id in keys:
            raise ConfigurationError(f"AUTH_JWKS_FILE: kid {key.key_id!r} appears twice")
        keys[str(key.key_id)] = key
    if not keys:
        raise ConfigurationError("AUTH_JWKS_FILE holds no signing key")
    return KeySet(keys)


class JwksKeys:
    """The keys of AUTH_JWKS_FILE, re-read whenever the file changes."""

    def __init__(self, path: Path, issuer: str | None, audience: str | None) -> None:
        self.path = path
        self.issuer = issuer
        self.audience = audience
        self._stamp: tuple[int, int, int] | None = None
        self._set: KeySet | None = None
        self.current()  # an unusable file stops the service at start-up

    def current(self) -> KeySet:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                self._reload(stamp)
        except (OSError, ConfigurationError) as exc:
            if self._set is None:
                if isinstance(exc, ConfigurationError):
                    raise
                raise ConfigurationError(
                    f"AUTH_JWKS_FILE {self.path} cannot be read ({exc.strerror})"
                ) from exc
            if isinstance(exc, OSError) and self._stamp is not None:
                log.warning(
                    "jwks file unreadable: keeping the keys last read",
                    extra={"error": type(exc).__name__},
                )
                self._stamp = None  # warn once; retried at every request until readable
        assert self._set is not None
        return self._set

    def _reload(self, stamp: tuple[int, int, int]) -> None:
        try:
            try:
                new = parse_jwks(self.path.read_bytes(), self.issuer, self.audience)
            except (ValueError, TypeError, AttributeError) as exc:  # e.g. an unusable RSA key
                raise ConfigurationError(f"AUTH_JWKS_FILE: {type(exc).__name__}") from exc
        except ConfigurationError as exc:
            self._stamp = stamp  # not re-parsed until the file changes again
            if self._set is not None:
                log.warning(
                    "jwks file invalid: keeping the keys last read", extra={"error": str(exc)}
                )
            raise
        self._set, self._stamp = new, stamp
        log.info("jwks keys loaded", extra={"kids": sorted(new.keys)})


Verifier = KeyConfig | JwksKeys


def load_verifier(settings: Settings) -> Verifier:
    """What the service checks bearer tokens with: the JWKS file's keys, or the one key."""
    if settings.auth_jwks_file is not None:
        return JwksKeys(settings.auth_jwks_file, settings.auth_issuer, settings.auth_audience)
    return load_key_config(settings)


def _signing_key_of(settings: Settings) -> KeyConfig:
    """The token command's key in a JWKS deployment: AUTH_PRIVATE_KEY, under AUTH_KEY_ID."""
    if not settings.auth_private_key:
        raise ConfigurationError(
            "no signing key: with AUTH_JWKS_FILE, set AUTH_PRIVATE_KEY (and AUTH_KEY_ID, the "
            "kid of its public key in the file) to mint tokens"
        )
    private = serialization.load_pem_private_key(settings.auth_private_key.encode(), None)
    if isinstance(private, rsa.RSAPrivateKey):
        alg = "RS256"
    elif isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        alg = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[
            private.curve.name
        ]
    else:
        raise ConfigurationError("AUTH_PRIVATE_KEY must be an RSA or EC private key (PEM)")
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyConfig(
        alg,
        public.decode(),
        settings.auth_private_key,
        settings.auth_key_id,
        settings.auth_issuer,
        settings.auth_audience,
    )


class NoDevSecret(ConfigurationError):
    """Dev mode has no secret yet and the caller may not invent one."""


def dev_secret(path: Path, *, create: bool = True) -> str:
    """Generate the dev-mode HS256 secret once and keep it (0600) for later runs."""
    if path.exists():
        value = path.read_text().strip()
        if len(value) >= 32:
            return value
    if not create:
        raise NoDevSecret(
            f"no dev signing secret at {path}: the server creates it when it first starts "
            "(scripts/serve), and a token signed with any other secret would be refused. "
            "Start the server once with the same DATABASE_URL, or set AUTH_SECRET to the "
            "server's value."
        )
    # Written aside, then linked into place: `uvicorn --workers N` starts N processes at once,
    # and the first link wins; the others read the winner's secret (never a half-written one).
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            if len(path.read_text().strip()) < 32:  # a damaged file: replace it
                os.replace(tmp, path)
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot keep the dev signing secret at {path} ({exc.strerror}): set AUTH_SECRET"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)


def mint_token(
    keys: KeyConfig,
    *,
    tenant: str,
    scopes: list[str],
    sub: str = "cli",
    ttl_seconds: int = 3600,
    now: float | None = None,
    system: str | None = None,
) -> str:
    if keys.sign_key is None:
        raise ConfigurationError(
            "no signing key: set AUTH_PRIVATE_KEY to mint tokens for an RS256/ES256 deployment"
        )
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "tenant": tenant,
        "scope": " ".join(scopes),
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
    }
    if system is not None:
        claims["system"] = system
    if keys.issuer:
        claims["iss"] = keys.issuer
    if keys.audience:
        claims["aud"] = keys.audience
    headers = {"kid": keys.key_id} if keys.key_id else None
    return str(jwt.encode(claims, keys.sign_key, algorithm=keys.algorithm, headers=headers))


_INVALID = "The bearer token is missing, malformed, expired or not signed by this service"


# Tokens already verified, with their time claims: a client sends the same token with every
# request until it expires, and the signature and claims of those bytes cannot change. A hit
# re-checks only the clock (exp, nbf, iat). Bounded; the oldest entry goes first.
# A JWKS reading is its own entry owner: once the file changes, its tokens are checked anew
# (a key removed from the file stops its tokens at once).
_VERIFIED: OrderedDict[tuple[KeyConfig | KeySet, str], tuple[Principal, float, float, float]] = (
    OrderedDict()
)
_VERIFIED_MAX = 4096


def verify_token(keys: Verifier, token: str, *, now: float | None = None) -> Principal:
    """Validate a bearer token; every failure is the same 401, whatever the cause."""
    current = now if now is not None else time.time()
    owner: KeyConfig | KeySet = keys.current() if isinstance(keys, JwksKeys) else keys
    hit = _VERIFIED.get((owner, token))
    if hit is not None:
        principal, exp, nbf, iat = hit
        if current < exp and nbf <= current and iat <= current + IAT_LEEWAY_SECONDS:
            return principal
        _VERIFIED.pop((owner, token), None)
        raise Unauthorized(_INVALID)
    config = owner.select(token) if isinstance(owner, KeySet) else owner
    principal, exp, nbf, iat = _verify(config, token, current)
    _VERIFIED[(owner, token)] = (principal, exp, nbf, iat)
    if len(_VERIFIED) > _VERIFIED_MAX:
        _VERIFIED.popitem(last=False)
    return principal


def _verify(keys: KeyConfig, token: str, current: float) -> tuple[Principal, float, float, float]:
    if not token or len(token.encode()) > MAX_TOKEN_BYTES:
        raise Unauthorized(_INVALID)
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != keys.algorithm:
            raise Unauthorized(_INVALID)
        if keys.key_id is not None and header.get("kid") != keys.key_id:
            raise Unauthorized(_INVALID)
        claims = jwt.decode(
            token,
            keys.verify_key,
            algorithms=[keys.algorithm],
            audience=keys.audience,
            issuer=keys.issuer,
            options={
                "require_exp": True,
                "require_aud": keys.audience is not None,
                "require_iss": keys.issuer is not None,
                "verify_aud": keys.audience is not None,
            },
        )
    except (JOSEError, ValueError, TypeError, KeyError) as exc:
        raise Unauthorized(_INVALID) from exc
    iat = claims.get("iat")
    if iat is not None and (not isinstance(iat, int | float) or iat > current + IAT_LEEWAY_SECONDS):
        raise Unauthorized(_INVALID)
    tenant = claims.get("tenant")
    sub = claims.get("sub")
    scope = claims.get("scope", "")
    if (
        not isinstance(tenant, str)
        or not tenant
        or len(tenant) > MAX_TENANT_LENGTH
        or not isinstance(sub, str)
        or not sub
        or not isinstance(scope, str)
    ):
        raise Unauthorized(_INVALID)
    system = claims.get("system")
    if system is not None and (
        not isinstance(system, str) or not system or len(system) > MAX_SYSTEM_KEY_LENGTH
    ):
        raise Unauthorized(_INVALID)
    principal = Principal(
        sub=sub[:200], tenant=tenant, scopes=frozenset(scope.split()), system=system
    )
    nbf = claims.get("nbf")
    return (
        principal,
        float(claims["exp"]),
        float(nbf) if isinstance(nbf, int | float) else float("-inf"),
        float(iat) if isinstance(iat, int | float) else float("-inf"),
    )


def parse_scopes(value: str, system: str | None = None) -> list[str]:
    """`all` or a space-separated list of known scopes. `tasks:work` (not in `all`) goes with
    a system, and a system's token carries nothing else."""
    scopes = list(ALL_SCOPES) if value.strip() == "all" else value.split()
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown:
        raise ValueError(
            f"unknown scope(s): {' '.join(unknown)}; known: {' '.join(KNOWN_SCOPES)}"
        )
    if system is not None:
        if not 0 < len(system) <= MAX_SYSTEM_KEY_LENGTH:
            raise ValueError("--system must be 1 to 64 characters")
        if scopes != [TASKS_WORK]:
            raise ValueError("a system's token carries exactly --scopes tasks:work")
    elif TASKS_WORK in scopes:
        raise ValueError("tasks:work is for a system's token: name it with --system KEY")
    return scopes
