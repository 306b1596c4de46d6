"""The running app for the generated-client tests: uvicorn on a free port, a fresh SQLite file.

The clients talk HTTP to a real server process, as an adopter's would (the rest of the suite
goes through the ASGI transport instead).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import TEST_SECRET
from tests.live import LiveServer
from tests.live import live_server as serve

__all__ = ["LiveServer"]


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serve(
        tmp_path_factory.mktemp("live-server"), AUTH_SECRET=TEST_SECRET, LOG_LEVEL="WARNING"
    ) as server:
        yield server
