from __future__ import annotations

import pytest

from tests.conftest import MutableClock
from tests.fulfilment.helpers import AFTER_RECEIPT


@pytest.fixture(autouse=True)
def _pinned(clock: MutableClock) -> None:
    """The fulfilment tests run on 2027-02-02 (tickets received 2027-01-31)."""
    clock.pinned = AFTER_RECEIPT
