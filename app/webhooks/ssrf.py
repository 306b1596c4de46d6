"""Where a webhook may point: http(s) to a public address, unless the host is allow-listed
(`WEBHOOK_ALLOW_HOSTS`, e.g. 127.0.0.1 for a local receiver).

Checked when a subscription is created (literal addresses, local names, and what the name
resolves to) and again before every delivery (DNS may have changed). A rebinding between
that check and the connection remains possible; pinning the connection to the checked
address would need a custom transport.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
RESOLVE_TIMEOUT_SECONDS = 3.0


class UnsafeUrl(ValueError):
    """The URL is not one the service will send to."""


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast


def check_url(url: str, allow: frozenset[str]) -> str:
    """The host, if the URL's form is acceptable; raises UnsafeUrl otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError as exc:
        raise UnsafeUrl("not a valid URL") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("the URL must be http or https")
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeUrl("the URL has no host")
    if port == 0:
        raise UnsafeUrl("not a valid port")
    if host in allow:
        return host
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        if not public_address(host):
            raise UnsafeUrl("the address is private, loopback, link-local or reserved")
        return host
    if host == "localhost" or host.endswith(LOCAL_SUFFIXES) or "." not in host:
        raise UnsafeUrl("the host is a local name")
    return host


async def resolve_check(url: str, allow: frozenset[str], *, strict: bool) -> None:
    """Refuse a host that resolves to a non-public address. `strict=False` (creation)
    accepts a name that does not resolve now; delivery (`strict=True`) refuses it."""
    host = check_url(url, allow)
    if host in allow:
        return
    try:
        ipaddress.ip_address(host)
        return  # a literal, already checked
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError) as exc:
        if strict:
            raise UnsafeUrl("the host does not resolve") from exc
        return
    for info in infos:
        if not public_address(str(info[4][0])):
            raise UnsafeUrl("the host resolves to a private, loopback or reserved address")
