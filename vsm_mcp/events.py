"""The event envelope every bus message carries.

Ids are time-ordered (``<ms since epoch, 13 digits>-<counter, 6 digits>-<random>``) so the event
log can replay "everything after id X" with a plain ``id > X`` comparison.
"""

from __future__ import annotations

import itertools
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

_counter = itertools.count()


def new_event_id() -> str:
    return f"{int(time.time() * 1000):013d}-{next(_counter) % 1_000_000:06d}-{secrets.token_hex(3)}"


class Event(BaseModel):
    """A small typed message with a topic (``tool.called``, ``beliefs.delta.<tenant>`` …)."""

    id: str = Field(default_factory=new_event_id)
    topic: str
    tenant: str = ""
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    type: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    trace_id: str = ""
