"""Telegram Bot API ``sendMessage`` (https://core.telegram.org/bots/api#sendmessage).

The base URL comes from settings (``VSM_TELEGRAM_API_BASE``), so tests and air-gapped sites
point it at a local server that speaks the same API. Telegram has no idempotency key: the
ledger is what keeps one key from being sent twice.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from vsm_mcp.workers.notify.http_send import check, json_body, post
from vsm_mcp.workers.notify.message import Message
from vsm_mcp.workers.notify.outcome import Rejected

MAX_TEXT = 4096  # sendMessage's limit, in characters


class TelegramSender:
    kind = "telegram"

    def __init__(self, client: httpx.AsyncClient, api_base: str, bot_token: str) -> None:
        self.client = client
        self.api_base = api_base.rstrip("/")
        self.bot_token = bot_token

    async def send(self, config: dict[str, Any], message: Message, key: str) -> str:
        token = str(config.get("bot_token") or self.bot_token)
        if not token:
            raise Rejected("telegram: no bot token (set VSM_TELEGRAM_BOT_TOKEN or the channel's bot_token)")
        text = message.text if len(message.text) <= MAX_TEXT else message.text[: MAX_TEXT - 1] + "…"
        body = {"chat_id": config["chat_id"], "text": text, "disable_web_page_preview": True}
        what = f"telegram chat {config['chat_id']}"
        resp = await post(
            self.client, f"{self.api_base}/bot{token}/sendMessage",
            content=json.dumps(body).encode(), headers={"content-type": "application/json"}, what=what,
        )
        answer = json_body(resp)
        params = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        hint = params.get("retry_after") if isinstance(params, dict) else None
        check(resp, what, float(hint) if isinstance(hint, int | float) else None)
        if answer.get("ok") is not True:
            raise Rejected(f"{what}: answer without ok=true: {str(answer)[:200]}")
        result = answer.get("result")
        return str(result.get("message_id", "")) if isinstance(result, dict) else ""
