"""How one send attempt ended, as the senders report it (foreign exceptions mapped here, at the
boundary: httpx and aiosmtplib errors never leave a sender).

* return normally — the remote accepted the message (a remote id, or "", is returned);
* ``RetryLater`` — the remote said not now (429, 5xx, SMTP 4xx) or could not be reached, so
  nothing was delivered: safe to send again after ``after_s`` (the remote's hint, if any);
* ``Rejected`` — the remote refused it for good (4xx, SMTP 5xx, bad channel settings);
* ``MaybeDelivered`` — the request left and no answer came (timeout, dropped connection): it may
  have arrived. Never sent again automatically, so one key is never delivered twice.
"""

from __future__ import annotations


class DeliveryError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class RetryLater(DeliveryError):
    def __init__(self, detail: str, after_s: float | None = None) -> None:
        super().__init__(detail)
        self.after_s = after_s


class Rejected(DeliveryError):
    pass


class MaybeDelivered(DeliveryError):
    pass


def backoff_s(attempt: int, base_s: float, max_s: float, hint_s: float | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: base × 2^(attempt-1), capped, never shorter
    than the remote's own hint (Retry-After) — but the hint is capped too."""
    delay = min(max_s, base_s * float(2 ** max(0, attempt - 1)))
    if hint_s is not None:
        delay = max(delay, min(max_s, hint_s))
    return delay
