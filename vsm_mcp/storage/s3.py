"""``s3://bucket[/prefix]?endpoint_url=…&region=…`` — any S3-compatible server, through boto3.

boto3 is synchronous; every request runs in a worker thread. Bodies above ``PART_SIZE`` go up
as a multipart upload, one part buffered at a time (aborted if the stream fails, so nothing
half-written becomes visible). Credentials come from the usual AWS chain (environment, profile).
The S3 bucket is created on first use when it does not exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import anyio

from vsm_mcp.errors import ConfigError, InvalidArguments, NotFound, UpstreamUnavailable, VsmError
from vsm_mcp.storage.base import (
    CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    Body,
    Hasher,
    ObjectInfo,
    ObjectPage,
    check_range,
    collect,
    iter_body,
)
from vsm_mcp.storage.keys import validate_key, validate_prefix

PART_SIZE = 8 * 1024 * 1024
T = TypeVar("T")


def _map_error(exc: Exception, key: str = "") -> VsmError:
    """botocore exceptions → our taxonomy (the only place they are looked at)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"NoSuchKey", "404", "NotFound"}:
            return NotFound(f"no object {key!r}", data={"key": key})
        if code == "InvalidRange":
            return InvalidArguments(f"invalid byte range for {key!r}")
        return UpstreamUnavailable(f"S3 error {code}: {exc}")
    if isinstance(exc, BotoCoreError):
        return UpstreamUnavailable(f"S3 unreachable: {exc}")
    return UpstreamUnavailable(f"S3 failure: {exc}")


class _S3Reader:
    def __init__(self, store: S3Storage, info: ObjectInfo, start: int, end: int) -> None:
        self.info, self.start, self.end, self._store = info, start, end, store
        self._body: Any = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.end <= self.start:
            return
        rng = f"bytes={self.start}-{self.end - 1}"
        resp = await self._store._call(
            lambda c: c.get_object(Bucket=self._store.bucket, Key=self._store._k(self.info.key), Range=rng),
            self.info.key,
        )
        self._body = resp["Body"]
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(self._body.read, CHUNK_SIZE)
                if not chunk:
                    break
                yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None


class S3Storage:
    """Objects in one S3 bucket under an optional key prefix."""

    def __init__(self, url: str) -> None:
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        if not parts.netloc:
            raise ConfigError(f"S3 storage URL {url!r} needs a bucket: s3://bucket[/prefix]?endpoint_url=…")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.url, self.bucket = url, parts.netloc
        self.prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=query.get("endpoint_url") or None,
            region_name=query.get("region", "us-east-1"),
            config=Config(max_pool_connections=32, retries={"max_attempts": 3, "mode": "standard"}),
        )
        self._ready = False
        self._ready_lock = anyio.Lock()

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def _call(self, fn: Callable[[Any], T], key: str = "") -> T:
        await self._ensure_bucket()
        try:
            return await anyio.to_thread.run_sync(fn, self.client)
        except Exception as exc:  # boundary: botocore errors become ours here
            raise _map_error(exc, key) from exc

    async def _ensure_bucket(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return

            def ensure(c: Any) -> None:
                from botocore.exceptions import ClientError

                try:
                    c.head_bucket(Bucket=self.bucket)
                except ClientError:
                    c.create_bucket(Bucket=self.bucket)

            try:
                await anyio.to_thread.run_sync(ensure, self.client)
            except Exception as exc:
                raise _map_error(exc) from exc
            self._ready = True

    async def put(self, key: str, body: Body, *, content_type: str = DEFAULT_CONTENT_TYPE) -> ObjectInfo:
        validate_key(key)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        hasher, buf = Hasher(), bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in iter_body(body):
                hasher.update(chunk)
                buf += chunk
                if len(buf) >= PART_SIZE:
                    if upload_id is None:
                        upload_id = await self._start_multipart(key, content_type)
                    parts.append(await self._upload_part(key, upload_id, len(parts) + 1, bytes(buf)))
                    buf.clear()
            if upload_id is None:
                meta = {"sha256": hasher.hexdigest}
                data = bytes(buf)
                await self._call(
                    lambda c: c.put_object(
                        Bucket=self.bucket, Key=self._k(key), Body=data, ContentType=content_type, Metadata=meta
                    ),
                    key,
                )
            else:
                if buf:
                    parts.append(await self._upload_part(key, upload_id, len(parts) + 1, bytes(buf)))
                uid = upload_id
                await self._call(
                    lambda c: c.complete_multipart_upload(
                        Bucket=self.bucket, Key=self._k(key), UploadId=uid, MultipartUpload={"Parts": parts}
                    ),
                    key,
                )
        except BaseException:
            if upload_id is not None:
                await self._abort(key, upload_id)
            raise
        return ObjectInfo(key, hasher.size, datetime.now(UTC), hasher.hexdigest, content_type)

    async def _start_multipart(self, key: str, content_type: str) -> str:
        resp = await self._call(
            lambda c: c.create_multipart_upload(Bucket=self.bucket, Key=self._k(key), ContentType=content_type), key
        )
        return str(resp["UploadId"])

    async def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        resp = await self._call(
            lambda c: c.upload_part(
                Bucket=self.bucket, Key=self._k(key), UploadId=upload_id, PartNumber=number, Body=data
            ),
            key,
        )
        return {"ETag": resp["ETag"], "PartNumber": number}

    async def _abort(self, key: str, upload_id: str) -> None:
        def abort(c: Any) -> None:
            c.abort_multipart_upload(Bucket=self.bucket, Key=self._k(key), UploadId=upload_id)

        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(abort, self.client)
            except Exception:  # noqa: BLE001 - best effort; S3 lifecycle rules reap stale uploads
                pass

    async def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        resp = await self._call(lambda c: c.head_object(Bucket=self.bucket, Key=self._k(key)), key)
        modified = resp.get("LastModified") or datetime.now(UTC)
        return ObjectInfo(
            key,
            int(resp["ContentLength"]),
            modified,
            str(resp.get("Metadata", {}).get("sha256", "")),
            str(resp.get("ContentType") or DEFAULT_CONTENT_TYPE),
        )

    async def open(self, key: str, *, start: int = 0, end: int | None = None) -> _S3Reader:
        info = await self.stat(key)
        lo, hi = check_range(info.size, start, end)
        return _S3Reader(self, info, lo, hi)

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        return await collect(await self.open(key, start=start, end=end))

    async def delete(self, key: str) -> bool:
        existed = await self.exists(key)
        await self._call(lambda c: c.delete_object(Bucket=self.bucket, Key=self._k(key)), key)
        return existed

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except NotFound:
            return False
        return True

    async def list(self, prefix: str = "", *, after: str = "", limit: int = 1000) -> ObjectPage:
        validate_prefix(prefix)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._k(prefix), "MaxKeys": max(1, min(limit, 1000))}
        if after:
            kwargs["StartAfter"] = self._k(after)
        resp = await self._call(lambda c: c.list_objects_v2(**kwargs))
        items = [
            ObjectInfo(o["Key"][len(self.prefix) :], int(o["Size"]), o["LastModified"])
            for o in resp.get("Contents", [])
        ]
        more = bool(resp.get("IsTruncated")) and bool(items)
        return ObjectPage(items, items[-1].key if more else None)

    async def aclose(self) -> None:
        self.client.close()
