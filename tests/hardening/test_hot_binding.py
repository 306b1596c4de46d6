"""The hot-route binder (app/core/routing.py) is generic: it binds whatever a declared route
declares — path, query, header and cookie parameters, a JSON body, plain and generator
dependencies, a `Response` parameter, a returned model — and answers as FastAPI does; what
it cannot bind is refused when the route is declared, and what a request does not bind is
left to FastAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import fastapi.routing
import httpx
import pytest
from fastapi import APIRouter, BackgroundTasks, Cookie, Depends, FastAPI, Header, Query, Response
from pydantic import BaseModel, Field

from app.core.errors import Conflict, install_error_handlers
from app.core.routing import AppRoute, HotPaths, hot

router = APIRouter(prefix="/things", route_class=AppRoute)
entered: list[str] = []


class ThingIn(BaseModel):
    name: str = Field(min_length=1, max_length=10)
    size: int = 1


class ThingOut(BaseModel):
    id: int
    name: str
    size: int
    color: str | None
    tag: str | None
    trace: str | None = None


async def session() -> AsyncIterator[str]:
    entered.append("enter")
    try:
        yield "session"
    finally:
        entered.append("exit")


async def caller(x_caller: Annotated[str, Header(max_length=5)]) -> str:
    return x_caller.upper()


class Oops(Conflict):
    code = "oops"


@router.post("/{thing_id}", status_code=201, response_model=ThingOut)
@hot
async def put_thing(
    thing_id: int,
    body: ThingIn,
    db: Annotated[str, Depends(session)],
    who: Annotated[str, Depends(caller)],
    response: Response,
    color: Annotated[str | None, Query(pattern="^[a-z]+$")] = None,
    tag: Annotated[str | None, Cookie()] = None,
) -> Any:
    assert db == "session"
    if body.name == "boom":
        raise Oops("no boom")
    response.headers["X-Who"] = who
    return {"id": thing_id, "name": body.name, "size": body.size, "color": color, "tag": tag}


def blocking() -> str:
    return "x"


def make_app(fast: bool) -> FastAPI:
    app = FastAPI()
    app.state.settings = type("S", (), {"fast_paths": fast})()
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(HotPaths, api=app)
    return app


@pytest.fixture
def solver_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = fastapi.routing.solve_dependencies  # type: ignore[attr-defined]

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    return calls


def _answer(r: httpx.Response) -> tuple[Any, ...]:
    headers = {k: v for k, v in r.headers.items() if k in ("content-type", "x-who")}
    return (r.status_code, headers, r.text)


CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("all bound", {"json": {"name": "a"}, "params": {"color": "red"}}, True),
    ("cookie", {"json": {"name": "a", "size": 3}, "cookies": {"tag": "t1"}}, True),
    ("domain error", {"json": {"name": "boom"}}, True),
    ("bad query", {"json": {"name": "a"}, "params": {"color": "RED"}}, False),
    ("bad path", {"json": {"name": "a"}, "path": "/things/x"}, False),
    ("bad body", {"json": {"name": ""}}, False),
    ("no body", {}, False),
    ("header too long", {"json": {"name": "a"}, "headers": {"X-Caller": "abcdef"}}, False),
    ("no header", {"json": {"name": "a"}, "headers": {"X-Caller": ""}}, False),
]


@pytest.mark.parametrize("case", [c[0] for c in CASES])
async def test_a_hot_route_answers_as_declared(case: str, solver_calls: list[int]) -> None:
    kwargs, taken = next((k, t) for name, k, t in CASES if name == case)
    kwargs = dict(kwargs)
    path = kwargs.pop("path", "/things/7")
    headers = {"X-Caller": "bob", **kwargs.pop("headers", {})}
    if not headers["X-Caller"]:
        del headers["X-Caller"]
    cookies = kwargs.pop("cookies", None)
    answers = []
    for fast in (True, False):
        entered.clear()
        before = solver_calls[0]
        transport = httpx.ASGITransport(app=make_app(fast))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", cookies=cookies
        ) as c:
            r = await c.post(path, headers=headers, **kwargs)
        answers.append(_answer(r))
        if fast:
            assert (solver_calls[0] == before) is taken
        assert entered in ([], ["enter", "exit"])  # a generator is always closed
    assert answers[0] == answers[1]
    assert answers[0][0] < 500


def test_a_route_the_binder_cannot_bind_is_refused_when_declared() -> None:
    other = APIRouter(route_class=AppRoute)

    with pytest.raises(TypeError, match="background tasks"):

        @other.get("/tasks")
        @hot
        async def with_tasks(tasks: BackgroundTasks) -> None:
            return None

    with pytest.raises(TypeError, match="must be async"):

        @other.get("/sync")
        @hot
        async def with_sync(x: Annotated[str, Depends(blocking)]) -> None:
            return None
