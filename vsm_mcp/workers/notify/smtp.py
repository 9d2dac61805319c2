"""E-mail over SMTP (aiosmtplib). The server is ``VSM_SMTP_URL``: ``smtp://[user:pass@]host[:port]``
(plain, or ``?starttls=true``) or ``smtps://…`` (TLS from the first byte). ``Message-ID`` is
derived from the idempotency key, so a mail client also sees one message per key.
"""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from vsm_mcp.errors import ConfigError
from vsm_mcp.workers.notify.message import Message
from vsm_mcp.workers.notify.outcome import MaybeDelivered, Rejected, RetryLater


def parse_smtp_url(url: str) -> dict[str, Any]:
    """aiosmtplib.SMTP keyword arguments from ``VSM_SMTP_URL``; a bad URL raises ConfigError."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(f"invalid setting VSM_SMTP_URL: expected smtp://[user:pass@]host[:port] or smtps://…, got {url!r}")
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    tls = parts.scheme == "smtps"
    return {
        "hostname": parts.hostname,
        "port": parts.port or (465 if tls else 25),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "use_tls": tls,
        "start_tls": True if query.get("starttls") in ("1", "true", "yes") else False,
    }


def build_email(sender: str, to: list[str], message: Message, key: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Subject"] = message.subject
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@vsm-mcp>"
    mail["X-VSM-Idempotency-Key"] = key
    mail.set_content(message.text)
    return mail


def _code_error(what: str, exc: aiosmtplib.SMTPResponseException) -> Exception:
    detail = f"{what}: SMTP {exc.code} {exc.message}"
    return RetryLater(detail) if 400 <= exc.code < 500 else Rejected(detail)


class SmtpSender:
    kind = "smtp"

    def __init__(self, url: str, sender: str, timeout_s: float) -> None:
        self.url = url
        self.sender = sender
        self.timeout_s = timeout_s

    async def send(self, config: dict[str, Any], message: Message, key: str) -> str:
        if not self.url:
            raise Rejected("smtp: no server configured (set VSM_SMTP_URL)")
        to = [str(a) for a in config["to"]]
        what = f"smtp to {', '.join(to)}"
        client = aiosmtplib.SMTP(**parse_smtp_url(self.url), timeout=self.timeout_s)
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise Rejected(f"{what}: login refused: SMTP {exc.code} {exc.message}") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _code_error(what, exc) from None
        except (aiosmtplib.SMTPException, OSError) as exc:  # nothing was sent yet
            raise RetryLater(f"{what}: cannot connect ({type(exc).__name__}: {exc})") from None
        try:
            refused, reply = await client.send_message(build_email(self.sender, to, message, key))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = f"{what}: every recipient refused ({', '.join(f'{r.code} {r.message}' for r in exc.recipients)})"
            raise (RetryLater(detail) if all(400 <= c < 500 for c in codes) else Rejected(detail)) from None
        except aiosmtplib.SMTPResponseException as exc:  # the server answered: nothing was accepted
            raise _code_error(what, exc) from None
        except (aiosmtplib.SMTPException, OSError) as exc:  # dropped or timed out mid-dialogue
            raise MaybeDelivered(f"{what}: no answer after sending ({type(exc).__name__}: {exc})") from None
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
        return reply + (f" (refused: {', '.join(refused)})" if refused else "")
