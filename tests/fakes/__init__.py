"""Local servers that speak third-party protocols (Telegram Bot API, signed webhooks, SMTP) for tests."""
