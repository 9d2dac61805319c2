"""A real SMTP server (aiosmtpd) on a free loopback port that keeps what it receives.

``fail_next`` scripts SMTP replies (e.g. ``"451 4.3.0 try later"``) for the next DATA commands.
aiosmtpd runs its own event loop in a thread, so the client under test talks real SMTP to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.ports import free_port


@dataclass
class SmtpSink:
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    fail_next: list[str] = field(default_factory=list)
    data_commands: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_commands += 1
        if self.fail_next:
            return self.fail_next.pop(0)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"



@contextmanager
def smtp_server() -> Iterator[tuple[SmtpSink, str]]:
    """Yield (sink, ``smtp://127.0.0.1:<port>``) while the server runs."""
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()
