"""``POST /v1/telegram/webhook`` — a Telegram bot in front of the dispatch pipeline.

Telegram sends each update with the secret we registered in ``X-Telegram-Bot-Api-Secret-Token``;
it is compared in constant time (401 when missing or wrong; 404 while ``VSM_TELEGRAM_SECRET`` is
unset, i.e. the webhook is off). Each chat bound in ``VSM_TELEGRAM_CHATS`` (``chat_id=tenant``)
acts as a principal of that tenant with ``VSM_TELEGRAM_SCOPES``; an unbound chat is told so.
Commands (each chat limited to ``VSM_TELEGRAM_RATE_PER_MIN``; over it → 429 + Retry-After):

* ``/status`` — readiness summary;
* ``/tools [query]`` — tool search (or the list of names);
* ``/call <tool> <json>`` — one call through ``Dispatcher.call_tool(..., source="telegram")``;
* ``/help`` (also ``/start``).

Replies go through the Bot API ``sendMessage`` at ``VSM_TELEGRAM_API_BASE``. Unknown commands,
bad JSON and failing tools get a helpful reply, never a 500.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from router.edge._auth import error_response
from router.gate.ratelimit import retry_after_header
from vsm_mcp.auth import Principal, validate_scopes
from vsm_mcp.config import Settings
from vsm_mcp.db import Database
from vsm_mcp.errors import ConfigError, InvalidArguments, NotFound, RateLimited, Unauthorized, VsmError
from vsm_mcp.resilience import RateLimiter
from vsm_mcp.telemetry import Metrics
from vsm_mcp.tenants import get_tenant

log = logging.getLogger("vsm_mcp.edge.telegram")

SECRET_HEADER = "x-telegram-bot-api-secret-token"
MAX_TEXT = 4000  # Telegram's limit is 4096 characters per message
CallTool = Callable[[Principal, str, dict[str, Any]], Awaitable[Any]]
ListTools = Callable[[Principal, str], Awaitable[list[tuple[str, str]]]]
Status = Callable[[], Awaitable[str]]

HELP = (
    "Commands:\n"
    "/status - is the platform ready\n"
    "/tools [query] - find tools\n"
    '/call <tool> <json arguments> - run a tool, e.g. /call storage__put {"key": "a"}\n'
    "/help - this text"
)


def parse_chat_bindings(raw: str) -> dict[int, str]:
    """``"123=acme,-456=default"`` → {123: "acme", -456: "default"}; a bad entry raises ConfigError."""
    out: dict[int, str] = {}
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        chat, sep, tenant = item.partition("=")
        try:
            if not sep or not tenant.strip():
                raise ValueError
            out[int(chat.strip())] = tenant.strip()
        except ValueError:
            raise ConfigError(
                f"invalid setting VSM_TELEGRAM_CHATS: {item!r} is not 'chat_id=tenant' (chat_id an integer)"
            ) from None
    return out


def result_text(result: Any) -> str:
    """The text of an MCP CallToolResult (text blocks, else structured content as JSON)."""
    texts = [c.text for c in getattr(result, "content", []) or [] if getattr(c, "type", "") == "text"]
    if texts:
        body = "\n".join(texts)
    elif getattr(result, "structured_content", None) is not None:
        body = json.dumps(result.structured_content, ensure_ascii=False)
    else:
        body = "(no output)"
    return ("tool error: " + body) if getattr(result, "is_error", False) else body


class TelegramBot:
    """The webhook handler and the command interpreter."""

    def __init__(
        self, settings: Settings, db: Database, *, call_tool: CallTool, list_tools: ListTools, status: Status,
        metrics: Metrics | None = None, http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.call_tool = call_tool
        self.list_tools = list_tools
        self.status = status
        self.metrics = metrics
        self.chats = parse_chat_bindings(settings.telegram_chats)
        self.scopes = frozenset(validate_scopes(settings.telegram_scopes.split(",")))
        per_s = settings.telegram_rate_per_min / 60
        self.limiter = RateLimiter(per_s, max(1.0, settings.telegram_rate_per_min))
        self._http = http  # created on first use: an app that never receives an update holds no client
        self._principals: dict[int, Principal] = {}

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def handle(self, request: Request) -> Response:
        """The webhook endpoint."""
        secret = self.settings.telegram_secret
        if not secret:
            return error_response(NotFound("the Telegram webhook is disabled (set VSM_TELEGRAM_SECRET)"))
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return error_response(Unauthorized(f"missing or wrong {SECRET_HEADER} header"))
        try:
            update = json.loads(await request.body())
        except ValueError:
            return error_response(InvalidArguments("the update is not valid JSON"))
        message = update.get("message") or update.get("edited_message") if isinstance(update, dict) else None
        chat_id = _chat_id(message)
        text = message.get("text") if isinstance(message, dict) else None
        if chat_id is None or not isinstance(text, str):
            return JSONResponse({"ok": True, "ignored": "no text message"})
        try:
            self.limiter.take(str(chat_id), f"Telegram chat {chat_id}")
        except RateLimited as exc:
            if self.metrics is not None:
                self.metrics.rate_limited.labels("telegram").inc()
            return error_response(exc, headers={"Retry-After": retry_after_header(exc.retry_after)})
        reply = await self.run_command(chat_id, text)
        await self.send_message(chat_id, reply)
        return JSONResponse({"ok": True})

    async def principal(self, chat_id: int) -> Principal | None:
        if chat_id in self._principals:
            return self._principals[chat_id]
        name = self.chats.get(chat_id)
        if name is None:
            return None
        tenant = await get_tenant(self.db, name)
        p = Principal(tenant_id=tenant.id, scopes=self.scopes, key_id=f"telegram:{chat_id}", tenant_name=name)
        self._principals[chat_id] = p
        return p

    async def run_command(self, chat_id: int, text: str) -> str:
        """The reply to one message (every failure becomes a readable reply)."""
        head, _, rest = text.strip().partition(" ")
        command = head.split("@", 1)[0].lower()
        rest = rest.strip()
        if command in ("/help", "/start"):
            return HELP
        if not command.startswith("/"):
            return "Send a command. " + HELP
        try:
            principal = await self.principal(chat_id)
            if principal is None:
                return f"This chat ({chat_id}) is not linked to a tenant. Ask an operator to add it to VSM_TELEGRAM_CHATS."
            if command == "/status":
                return await self.status()
            if command == "/tools":
                return await self._tools(principal, rest)
            if command == "/call":
                return await self._call(principal, rest)
        except VsmError as exc:
            return f"error: {exc.message}"
        return f"Unknown command {command}. " + HELP

    async def _tools(self, principal: Principal, query: str) -> str:
        hits = await self.list_tools(principal, query)
        if not hits:
            return f"No tools match {query!r}." if query else "No tools are available."
        lines = [f"{name} - {desc.splitlines()[0][:100]}" if desc else name for name, desc in hits[:15]]
        more = f"\n... and {len(hits) - 15} more" if len(hits) > 15 else ""
        return "\n".join(lines) + more

    async def _call(self, principal: Principal, rest: str) -> str:
        tool, _, raw = rest.partition(" ")
        if not tool:
            return 'Usage: /call <tool> <json arguments>, e.g. /call echo__echo {"text": "hi"}'
        try:
            args = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as exc:
            return f"The arguments are not valid JSON ({exc.msg} at character {exc.pos}). Example: {{\"key\": \"value\"}}"
        if not isinstance(args, dict):
            return "The arguments must be a JSON object, e.g. {\"key\": \"value\"}."
        return result_text(await self.call_tool(principal, tool, args))

    async def send_message(self, chat_id: int, text: str) -> None:
        """Bot API ``sendMessage``; a failure is logged (the update itself was handled)."""
        if len(text) > MAX_TEXT:
            text = text[: MAX_TEXT - 20] + "\n... (truncated)"
        base = self.settings.telegram_api_base.rstrip("/")
        url = f"{base}/bot{self.settings.telegram_bot_token}/sendMessage"
        try:
            resp = await self.http.post(url, json={"chat_id": chat_id, "text": text})
            if resp.status_code >= 400:
                log.warning("Telegram sendMessage answered %s: %s", resp.status_code, resp.text[:200])
        except httpx.HTTPError as exc:
            log.warning("Telegram sendMessage failed: %s", exc)


def _chat_id(message: Any) -> int | None:
    if not isinstance(message, dict):
        return None
    chat = message.get("chat")
    cid = chat.get("id") if isinstance(chat, dict) else None
    return cid if isinstance(cid, int) and not isinstance(cid, bool) else None
