"""What a notification says: one event rendered once, then shaped by each channel."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vsm_mcp.bus.events import Event


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    payload: dict[str, Any]  # the event as JSON: what a webhook receives

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "text": self.text, "payload": self.payload}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Message:
        return cls(str(d["subject"]), str(d["text"]), dict(d["payload"]))


def _subject(event: Event) -> str:
    d = event.data
    if event.topic.startswith("alert."):
        status = str(d.get("status", "firing")).upper()
        return f"[{status}] {d.get('kind', event.topic.rsplit('.', 1)[-1])} on {d.get('system', '?')}"
    if event.topic == "policy.violation":
        who = d.get("tool") or d.get("public_name") or "?"
        return f"[POLICY] {d.get('policy', '?')}/{d.get('rule', '?')} on {who}"
    return f"[{event.topic}]"


def render(event: Event, tenant_name: str = "") -> Message:
    """Subject, a short human text and the JSON payload of ``event``."""
    payload = event.model_dump(mode="json")
    subject = _subject(event)
    lines = [subject, f"tenant: {tenant_name or event.tenant}", f"topic: {event.topic}", f"time: {payload['time']}"]
    for key in ("value", "threshold", "reason", "server", "tool", "principal", "window"):
        if key in event.data and event.data[key] not in (None, ""):
            value = event.data[key]
            lines.append(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")
    if event.trace_id:
        lines.append(f"trace: {event.trace_id}")
    return Message(subject=subject, text="\n".join(lines), payload=payload)
