"""Identifiers: time-ordered UUIDv7 (RFC 9562), monotonic within the process."""

from __future__ import annotations

import os
import threading
import time
import uuid

_last_ms = 0
_seq = 0
_lock = threading.Lock()


def new_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562), monotonic within the process.

    Events at the same `occurred_at` are ordered by id, so ids recorded later in one process
    sort later (e.g. a GPC opt-out recorded with a grant wins the tie); time-ordered ids also
    keep the primary-key index append-mostly.
    """
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            _seq += 1
            if _seq >= 1 << 12:
                _last_ms += 1
                _seq = 0
            ms = _last_ms
        else:
            _last_ms = ms
            _seq = 0
        seq = _seq
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand
    return uuid.UUID(int=value)
