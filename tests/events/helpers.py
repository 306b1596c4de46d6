"""A real HTTP receiver on 127.0.0.1 and worker plumbing for the events tests."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx
from fastapi import FastAPI

from app.webhooks import signing
from app.worker import Worker


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    def verifies(self, secret: str) -> bool:
        """Standard Webhooks verification, as a receiver would do it."""
        return signing.verify(
            secret,
            self.headers["webhook-id"],
            self.headers["webhook-timestamp"],
            self.body,
            self.headers["webhook-signature"],
        )


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server on a real socket. Answers each request with the next status
    of `statuses`, then `default`."""

    statuses: list[int] = field(default_factory=list)
    default: int = 200
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _, path, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(path, headers, body))
            status = self.statuses.pop(0) if self.statuses else self.default
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        finally:
            writer.close()

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests]


def worker_for(app: FastAPI, **kwargs: Any) -> Worker:
    return Worker(app.state.sessionmaker, app.state.settings, clock=app.state.clock, **kwargs)


async def subscribe(
    client: httpx.AsyncClient, auth: dict[str, str], url: str, events: list[str]
) -> dict[str, Any]:
    r = await client.post("/v1/webhooks", headers=auth, json={"url": url, "events": events})
    assert r.status_code == 201, r.text
    return dict(r.json())


def now() -> datetime:
    return datetime.now(UTC)
