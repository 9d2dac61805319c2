"""The spaces server: audio of a space (a recording, or a live stream of chunks) → offline
transcription → timestamped segments on the bus → a semantic container with the transcript.

Tools:

* ``spaces_transcribe(space, path | base64, speakers, turns, title, wait)`` — a WAV recording
  (a file under ``VSM_SPACES_ROOT`` or the bytes); runs in the background, ``wait`` answers when
  done or after ``VSM_SPACES_WAIT_S`` (then follow it with ``spaces_status``);
* ``spaces_stream_start(space, sample_rate, title)``, ``spaces_stream_push(space, pcm, speaker,
  at)``, ``spaces_stream_stop(space)`` — a live stream of raw 16-bit PCM chunks, one feed per
  speaker; each push answers the segments it completed;
* ``spaces_status(space, since)`` — state, segments, real-time factor, the container.

Each segment is published as ``spaces.<space>.segment`` as soon as it is recognised (so
``/v1/events?topics=spaces.<space>.*`` delivers it); at the end the transcript becomes a
container through ``content__ingest_item`` (called via the router as the caller, so grants,
policy and audit apply; source ``spaces:<space>``: a space transcribed again is a new version)
and ``spaces.<space>.transcript`` is published. Speakers: see session.py. Sessions live in this
process until replaced by a new one of the same space (not persisted).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import re
import time
from base64 import b64decode
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from servers.spaces.audio import MAX_RATE, MIN_RATE, read_wav
from servers.spaces.recognizer import DecoderPool, Segment
from servers.spaces.session import Lane, Session, parse_turns
from servers.tool_errors import tool_errors
from vsm_mcp.auth import Principal
from vsm_mcp.bus.events import Event
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import Conflict, InvalidArguments, NotFound

_SPACE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_NAME = re.compile(r"[^\x00-\x1f]{0,64}\Z")
T = TypeVar("T")
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def _space(space: str) -> str:
    if not _SPACE.match(space):
        raise InvalidArguments("space: 1-64 letters, digits, '_' or '-' (it becomes a topic word)")
    return space


def _b64(value: str, what: str) -> bytes:
    try:
        return b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArguments(f"{what} is not valid base64") from None


def _tool_json(result: Any) -> dict[str, Any]:
    if result.is_error:
        raise RuntimeError(" ".join(getattr(c, "text", "") for c in result.content) or "tool error")
    return dict(result.structured_content or {})


def build(ctx: ServerContext) -> MCPServer:
    settings = ctx.settings
    sessions: dict[tuple[str, str], Session] = {}  # (tenant, space) -> the latest session
    pool = DecoderPool()
    workers: list[ThreadPoolExecutor] = []  # made on first use: build() alone starts no thread
    root = Path(settings.spaces_root or settings.home / "spaces").resolve()

    async def work(fn: Callable[..., T], *args: Any) -> T:
        """Recognition off the event loop, on this server's worker threads."""
        if not workers:
            workers.append(ThreadPoolExecutor(settings.spaces_workers, thread_name_prefix="spaces"))
        return await asyncio.get_running_loop().run_in_executor(workers[0], fn, *args)

    async def emit(session: Session, segments: list[Segment]) -> None:
        for seg in sorted(segments, key=lambda s: (s.start, s.speaker)):
            seg.index = len(session.segments)
            session.segments.append(seg)
            await ctx.bus.publish(Event(topic=f"spaces.{session.space}.segment", tenant=session.tenant,
                                        type="spaces.segment", data={"space": session.space, **seg.as_dict()}))

    async def finish(session: Session, principal: Principal) -> None:
        """The transcript into a container (through the content server's tool), then the event."""
        if session.segments:
            args = {"source": f"spaces:{session.space}", "text": session.transcript(), "content_type": "text/plain",
                    "title": session.title or f"Space {session.space}",
                    "lineage": {"connector": "spaces", "external_id": session.space, "kind": session.kind},
                    "meta": {"space": session.space, "duration_s": round(session.duration, 3),
                             "speakers": sorted({s.speaker for s in session.segments}),
                             "segments": len(session.segments), "recogniser": "pocketsphinx en-us"}}
            try:
                got = _tool_json(await ctx.tools.call(principal, "content__ingest_item", args, source="spaces"))
                session.container = {k: got.get(k) for k in ("container_id", "version", "created", "status", "reason")}
            except Exception as exc:  # the transcript stays readable with spaces_status
                session.errors.append(f"container: {str(exc)[:300]}")
        else:
            session.errors.append("container: no speech was recognised, so no transcript container was made")
        session.state = "done"
        session.finished = time.time()
        await ctx.bus.publish(Event(topic=f"spaces.{session.space}.transcript", tenant=session.tenant,
                                    type="spaces.transcript", data={
                                        "space": session.space, "segments": len(session.segments),
                                        "duration_s": round(session.duration, 3), "container": session.container,
                                        "errors": session.errors[-5:]}))

    async def run_file(session: Session, lanes: list[Lane], principal: Principal) -> None:
        try:
            while not all(lane.done for lane in lanes):
                for lane in lanes:  # a block of every channel in turn: events follow the recording's time
                    if not lane.done:
                        await emit(session, await work(timed, session, lane.step))
            await finish(session, principal)
        except asyncio.CancelledError:
            session.state = "cancelled"
            raise
        except Exception as exc:
            session.state = "failed"
            session.errors.append(str(exc)[:300])
            await ctx.bus.publish(Event(topic=f"spaces.{session.space}.error", tenant=session.tenant,
                                        type="spaces.error", data={"error": str(exc)[:300]}))

    def timed(session: Session, step: Callable[[], list[Segment]]) -> list[Segment]:
        t0 = time.perf_counter()
        try:
            return step()
        finally:
            session.busy += time.perf_counter() - t0

    def claim(principal: Principal, space: str, session: Session) -> Session:
        key = (principal.tenant_id, space)
        old = sessions.get(key)
        if old is not None and old.active:
            raise Conflict(f"space {space!r} is still being transcribed ({old.kind}); stop it or wait for it")
        sessions[key] = session
        return session

    def current(principal: Principal, space: str) -> Session:
        session = sessions.get((principal.tenant_id, _space(space)))
        if session is None:
            raise NotFound(f"no transcription of space {space!r}")
        return session

    async def read_source(path: str | None, base64: str | None) -> bytes:
        if (path is None) == (base64 is None):
            raise InvalidArguments("give exactly one of 'path' (a WAV file under VSM_SPACES_ROOT) or 'base64'")
        if base64 is not None:
            data = _b64(base64, "base64")
            if len(data) > settings.spaces_upload_max_bytes:
                raise InvalidArguments(f"base64 holds {len(data)} bytes; the limit is {settings.spaces_upload_max_bytes} "
                                       "(VSM_SPACES_UPLOAD_MAX_BYTES): put the file under VSM_SPACES_ROOT and give its path")
            return data
        target = (root / (path or "")).resolve()
        if not target.is_relative_to(root):
            raise InvalidArguments(f"path {path!r} is outside VSM_SPACES_ROOT ({root})")
        try:
            return await asyncio.to_thread(target.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"path {path!r}: no such file under {root}") from None
        except (IsADirectoryError, PermissionError) as exc:
            raise InvalidArguments(f"path {path!r}: {exc.strerror}") from None

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        try:
            yield
        finally:
            tasks = [s.task for s in sessions.values() if s.task is not None and not s.task.done()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if workers:  # wait for a job in flight (one block of audio), so no thread outlives the server
                await asyncio.to_thread(workers[0].shutdown, True, cancel_futures=True)
                workers.clear()

    server = MCPServer("spaces", instructions="Transcribe the audio of a space (a WAV recording or a live "
                       "stream of PCM chunks) offline: segments as spaces.<space>.segment events, the transcript "
                       "as a container.", lifespan=lifespan)

    @server.tool(title="Transcribe an audio recording (speech to text) into a transcript", annotations=WRITE)
    @tool_errors
    async def spaces_transcribe(
        space: str, mcp_ctx: Context, path: str | None = None, base64: str | None = None,
        speakers: list[str] | None = None, turns: list[dict[str, Any]] | None = None, title: str = "",
        wait: bool = True,
    ) -> dict[str, Any]:
        """Transcribe a WAV recording (16-bit PCM, 8-48 kHz, 1-8 channels): ``path`` under
        VSM_SPACES_ROOT or ``base64`` bytes. Speakers as the source marks them: a multi-channel file
        has one speaker per channel (``speakers`` names them in order); a mono mix may come with
        ``turns`` [{speaker, start, end}] in seconds. Segments are published as
        spaces.<space>.segment while it runs; the transcript becomes a container at the end.
        ``wait``: answer when done or after VSM_SPACES_WAIT_S with the status so far."""
        _space(space)
        if len(title) > 500:
            raise InvalidArguments("title: at most 500 characters")
        wav = read_wav(await read_source(path, base64), f"path {path!r}" if path is not None else "base64")
        if wav.seconds > settings.spaces_max_seconds:
            raise InvalidArguments(f"the recording lasts {wav.seconds:.0f} s; the limit is "
                                   f"{settings.spaces_max_seconds:g} s (VSM_SPACES_MAX_SECONDS)")
        if wav.frames == 0:
            raise InvalidArguments("the WAV file holds no audio")
        names = list(speakers) if speakers is not None else ([""] if wav.channels == 1 else
                                                               [f"channel {n + 1}" for n in range(wav.channels)])
        if len(names) != wav.channels or not all(_NAME.match(n) for n in names):
            raise InvalidArguments(f"speakers: one name (0-64 characters) per channel; the file has {wav.channels}")
        if turns is not None and wav.channels != 1:
            raise InvalidArguments("turns are for a mono mix; a multi-channel file has one speaker per channel")
        tiles = parse_turns(turns or [], wav.seconds) if turns else None
        principal = await ctx.principal_of(mcp_ctx)
        session = claim(principal, space, Session(space, principal.tenant_id, "file", title, pool,
                                                  duration=wav.seconds))
        lanes = []
        for n in range(wav.channels):
            lane = Lane(wav, n, tiles or parse_turns([], wav.seconds), pool)
            if tiles is None:
                lane.track.speaker = names[n]
            lanes.append(lane)
        session.task = asyncio.get_running_loop().create_task(run_file(session, lanes, principal),
                                                              name=f"spaces:{space}")
        if wait:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(session.task), settings.spaces_wait_s)
        return session.status()

    @server.tool(title="Start live transcription of an audio stream", annotations=WRITE)
    @tool_errors
    async def spaces_stream_start(space: str, mcp_ctx: Context, sample_rate: int = 16000,
                                  title: str = "") -> dict[str, Any]:
        """Open a live stream for ``space``: push raw 16-bit little-endian mono PCM at ``sample_rate``
        with spaces_stream_push (one feed per speaker), end it with spaces_stream_stop."""
        _space(space)
        if not MIN_RATE <= sample_rate <= MAX_RATE:
            raise InvalidArguments(f"sample_rate: {MIN_RATE}-{MAX_RATE} Hz")
        principal = await ctx.principal_of(mcp_ctx)
        claim(principal, space, Session(space, principal.tenant_id, "stream", title[:500], pool,
                                        rate=sample_rate, state="streaming"))
        return {"space": space, "topic": f"spaces.{space}.segment", "sample_rate": sample_rate}

    @server.tool(title="Push a chunk of audio to a live transcription stream", annotations=WRITE)
    @tool_errors
    async def spaces_stream_push(space: str, pcm: str, mcp_ctx: Context, speaker: str = "",
                                 at: float | None = None) -> dict[str, Any]:
        """A chunk of the stream: ``pcm`` base64 of 16-bit LE mono samples at the stream's rate, from
        ``speaker`` (each speaker's chunks are one track). ``at``: seconds from the stream's start
        where the chunk begins, if the speaker was silent (sent nothing) since their last chunk.
        Answers the segments this chunk completed (also published as events)."""
        session = current(await ctx.principal_of(mcp_ctx), space)
        if session.state != "streaming":
            raise Conflict(f"space {space!r} is not streaming (state {session.state})")
        if not _NAME.match(speaker):
            raise InvalidArguments("speaker: at most 64 characters, no control characters")
        if at is not None and at < 0:
            raise InvalidArguments("at: seconds from the stream's start, >= 0")
        data = _b64(pcm, "pcm")
        if len(data) % 2:
            raise InvalidArguments("pcm: 16-bit samples take 2 bytes each; got an odd byte count")
        if len(data) > settings.spaces_upload_max_bytes:
            raise InvalidArguments(f"pcm: {len(data)} bytes; at most {settings.spaces_upload_max_bytes} per chunk")
        async with session.lock:
            track = session.tracks.get(speaker)
            if at is not None and track is not None and at < track.fed - 0.05:
                raise InvalidArguments(f"at={at}: speaker {speaker!r} is already at {track.fed:.2f} s")
            segments = await work(session.push, data, speaker, at, settings.spaces_max_seconds)
            await emit(session, segments)
        return {"space": space, "segments": [s.as_dict() for s in segments], "duration_s": round(session.duration, 3)}

    @server.tool(title="Stop a live transcription stream and keep its transcript", annotations=WRITE)
    @tool_errors
    async def spaces_stream_stop(space: str, mcp_ctx: Context) -> dict[str, Any]:
        """End the stream: the last segments, then the transcript into a container."""
        principal = await ctx.principal_of(mcp_ctx)
        session = current(principal, space)
        if session.state != "streaming":
            raise Conflict(f"space {space!r} is not streaming (state {session.state})")
        session.state = "running"  # no more pushes
        try:
            async with session.lock:
                await emit(session, await work(session.close_tracks))
            await finish(session, principal)
        except BaseException as exc:
            session.state = "failed"
            session.errors.append(str(exc)[:300] or type(exc).__name__)
            raise
        return session.status()

    @server.tool(title="Status and transcript segments of a transcription", annotations=READ)
    @tool_errors
    async def spaces_status(space: str, mcp_ctx: Context, since: int = 0) -> dict[str, Any]:
        """A space's transcription: state (running, streaming, done, failed, cancelled), duration,
        processing time and real-time factor, speakers, the segments from index ``since`` on,
        the transcript's container and the last errors."""
        return current(await ctx.principal_of(mcp_ctx), space).status(max(0, since))

    return server
