"""The stdio transport for upstreams: one child process, its own process group.

Why not ``mcp.client.stdio.stdio_client``: the supervisor needs the process itself — its pid,
an event when it exits (to restart it with backoff) and a group kill that also reaps
grandchildren (``npx`` → ``node``). The child is started with ``start_new_session=True``;
closing the transport closes stdin, waits briefly, then sends SIGTERM and finally SIGKILL to
the whole group.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from subprocess import PIPE

import anyio
import mcp.types as mt
from anyio.abc import Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

log = logging.getLogger(__name__)

GRACE_S = 1.0
_INHERIT = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """A small inherited environment plus the manifest's ``env`` (secrets are not inherited)."""
    env = {k: v for k, v in os.environ.items() if k in _INHERIT or k.startswith(("VSM_", "HF_", "LITELLM_"))}
    env.update(extra)
    return env


def kill_group(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class StdioTransport:
    """``async with StdioTransport(cmd, args, env, cwd) as (read, write)``; see the module docstring."""

    def __init__(self, command: str, args: list[str], env: dict[str, str], cwd: str | None, name: str) -> None:
        self.command = command
        self.args = args
        self.env = env
        self.cwd = cwd
        self.name = name
        self.process: Process | None = None
        self.exited = anyio.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @asynccontextmanager
    async def _run(
        self,
    ) -> AsyncIterator[tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]]:
        try:
            process = await anyio.open_process(
                [self.command, *self.args], env=child_env(self.env), cwd=self.cwd,
                stdin=PIPE, stdout=PIPE, stderr=PIPE, start_new_session=True,
            )
        except OSError as exc:
            raise ConnectionError(f"cannot start {self.command!r}: {exc.strerror or exc}") from exc
        self.process = process
        in_send, in_recv = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        out_send, out_recv = anyio.create_memory_object_stream[SessionMessage](16)

        async def read_stdout() -> None:
            assert process.stdout is not None
            buf = b""
            try:
                async for chunk in process.stdout:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            await in_send.send(_parse(line))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                pass
            finally:
                self.exited.set()
                in_send.close()

        async def read_stderr() -> None:
            assert process.stderr is not None
            with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                async for chunk in process.stderr:
                    log.debug("[%s stderr] %s", self.name, chunk.decode(errors="replace").rstrip())

        async def write_stdin() -> None:
            assert process.stdin is not None
            with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                async for msg in out_recv:
                    data = msg.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode())

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_stdout)
            tg.start_soon(read_stderr)
            tg.start_soon(write_stdin)
            try:
                yield in_recv, out_send
            finally:
                with anyio.CancelScope(shield=True):
                    await self._stop(process)
                    out_send.close()
                    in_recv.close()
                tg.cancel_scope.cancel()

    async def _stop(self, process: Process) -> None:
        """Close stdin, give the child a moment, then TERM and KILL its whole process group."""
        if process.stdin is not None:
            with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                await process.stdin.aclose()
        if not await _wait_exit(process, GRACE_S):
            kill_group(process.pid, signal.SIGTERM)
            if not await _wait_exit(process, GRACE_S):
                kill_group(process.pid, signal.SIGKILL)
                await _wait_exit(process, GRACE_S)
        # The leader may be gone while grandchildren in its group live on: reap them too.
        kill_group(process.pid, signal.SIGKILL)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await stream.aclose()
        with suppress(OSError, ProcessLookupError):
            await process.aclose()

    def __call__(self) -> StdioTransport:
        return self

    async def __aenter__(
        self,
    ) -> tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]:
        self._cm = self._run()
        return await self._cm.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(*exc)  # type: ignore[arg-type]


async def _wait_exit(process: Process, timeout: float) -> bool:
    with anyio.move_on_after(timeout):
        await process.wait()
    return process.returncode is not None


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(mt.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return exc
