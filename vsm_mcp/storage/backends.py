"""Storage URL → backend instance (``file://``, ``s3://``, ``memory://``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from vsm_mcp.config import Settings
from vsm_mcp.errors import ConfigError
from vsm_mcp.storage.base import Storage

SCHEMES = ("file", "s3", "memory")


def default_url(settings: Settings) -> str:
    """``VSM_STORAGE_URL``, or ``file://<home>/storage`` when it is empty."""
    return settings.storage_url or f"file://{(Path(settings.home) / 'storage').resolve()}"


def open_storage(url: str) -> Storage:
    """Build the backend a storage URL names; a bad URL raises ConfigError saying what to write."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        path = url[len("file://") :]
        if not path:
            raise ConfigError(f"storage URL {url!r} needs a directory: file:///var/lib/vsm/storage")
        from vsm_mcp.storage.file import FileStorage

        return FileStorage(Path(path), url)
    if scheme == "s3":
        from vsm_mcp.storage.s3 import S3Storage

        return S3Storage(url)
    if scheme == "memory":
        from vsm_mcp.storage.memory import MemoryStorage

        return MemoryStorage(url)
    raise ConfigError(
        f"storage URL scheme {scheme or '(none)'!r} is not supported; use file:///dir, s3://bucket or memory://"
    )


def backend_urls(settings: Settings) -> dict[str, str]:
    """Backend name → URL: ``default`` plus ``VSM_STORAGE_BACKENDS``."""
    urls = {"default": default_url(settings)}
    for name, url in settings.storage_backends.items():
        if urlsplit(url).scheme not in SCHEMES:
            raise ConfigError(f"invalid setting VSM_STORAGE_BACKENDS: backend {name!r} has unsupported URL {url!r}")
        urls.setdefault(name, url)
    return urls
