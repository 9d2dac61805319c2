"""One space being transcribed: a recording (file) or a live stream, its tracks and its segments.

Where speakers come from — the source marks them, we never guess (no diarization):

* a multi-channel WAV, one speaker per channel: what multi-track recorders export (a Spaces or
  podcast recording made per participant; Zoom, Riverside and Craig write one track per
  speaker). ``speakers`` names the channels in order;
* a mono mix with a sidecar of speaker turns ``[{speaker, start, end}]`` (seconds) — the shape of
  an RTTM diarization file or of a platform's caption export; audio outside every turn is
  transcribed with speaker ``""``; where turns overlap, the earlier one keeps the audio;
* a live stream: each pushed chunk names its ``speaker`` (one feed per participant, as a live
  audio room delivers them); a speaker's chunks form one track with its own clock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servers.spaces.audio import RATE, Resampler, Wav
from servers.spaces.recognizer import DecoderPool, Segment, Track
from vsm_mcp.errors import InvalidArguments

BLOCK_S = 5.0  # audio per worker job: bounds how long one job holds a worker thread


@dataclass
class Turn:
    start: float
    end: float
    speaker: str


def parse_turns(raw: list[dict[str, Any]], duration: float) -> list[Turn]:
    """Validated turns, sorted, overlaps clipped, gaps filled with speaker ``""``: they tile the file."""
    turns: list[Turn] = []
    for n, item in enumerate(raw):
        speaker, start, end = item.get("speaker"), item.get("start"), item.get("end")
        if not isinstance(speaker, str) or not 0 < len(speaker) <= 64:
            raise InvalidArguments(f"turns[{n}].speaker must be a name of 1-64 characters")
        if not isinstance(start, int | float) or not isinstance(end, int | float) or not 0 <= start < end:
            raise InvalidArguments(f"turns[{n}]: start and end are seconds with 0 <= start < end")
        if start >= duration:
            raise InvalidArguments(f"turns[{n}] starts at {start} s, after the audio's end ({duration:.2f} s)")
        turns.append(Turn(float(start), min(float(end), duration), speaker))
    turns.sort(key=lambda t: t.start)
    tiled: list[Turn] = []
    clock = 0.0
    for t in turns:
        if t.end <= clock:
            continue  # wholly inside an earlier turn
        if t.start > clock:
            tiled.append(Turn(clock, t.start, ""))
        tiled.append(Turn(max(t.start, clock), t.end, t.speaker))
        clock = t.end
    if clock < duration:
        tiled.append(Turn(clock, duration, ""))
    return tiled


class Lane:
    """One channel of a recording → its track, a block of audio per ``step`` (run in a worker)."""

    def __init__(self, wav: Wav, channel: int, turns: list[Turn], pool: DecoderPool) -> None:
        self._samples = wav.channel(channel)
        self._rate = wav.rate
        self._resampler = Resampler(wav.rate)
        self._turns = turns
        self._turn = 0
        self._pos = 0  # input samples consumed
        self._clock = 0  # 16 kHz samples fed
        self.track = Track(turns[0].speaker, pool)
        self.done = False

    def step(self) -> list[Segment]:
        block = int(BLOCK_S * self._rate)
        chunk = self._samples[self._pos:self._pos + block]
        self._pos += len(chunk)
        final = self._pos >= len(self._samples)
        pcm = self._resampler.push(chunk, final=final)
        out: list[Segment] = []
        while len(pcm):
            cut = max(0, int(round(self._turns[self._turn].end * RATE)) - self._clock)
            if cut > len(pcm) or self._turn == len(self._turns) - 1:
                out += self.track.feed(pcm.tobytes())
                self._clock += len(pcm)
                break
            out += self.track.feed(pcm[:cut].tobytes())
            out += self.track.finish()  # a turn ends: its speaker's segment ends with it
            self._clock += cut
            self._turn += 1
            self.track.speaker = self._turns[self._turn].speaker
            pcm = pcm[cut:]
        if final:
            out += self.track.finish()
            self.done = True
        return out


@dataclass
class Session:
    space: str
    tenant: str
    kind: str  # file | stream
    title: str
    pool: DecoderPool
    rate: int = RATE  # a stream's sample rate
    state: str = "running"  # running | streaming | done | failed | cancelled
    segments: list[Segment] = field(default_factory=list)
    tracks: dict[str, Track] = field(default_factory=dict)  # a stream's tracks by speaker
    resamplers: dict[str, Resampler] = field(default_factory=dict)
    duration: float = 0.0  # audio seconds (the longest track)
    busy: float = 0.0  # seconds of recognition work
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    container: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one job per track at a time
    task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self.state in ("running", "streaming")

    def push(self, pcm: bytes, speaker: str, at: float | None, max_seconds: float) -> list[Segment]:
        """A stream's chunk (int16 LE mono at ``rate``) → the segments it completed. In a worker."""
        t0 = time.perf_counter()
        track = self.tracks.get(speaker)
        if track is None:
            track = self.tracks[speaker] = Track(speaker, self.pool, offset=at or 0.0)
            self.resamplers[speaker] = Resampler(self.rate)
        out: list[Segment] = []
        if at is not None and at > track.fed + 0.05:  # the speaker sent nothing for a while
            out += track.gap(at - track.fed)
        samples = np.frombuffer(pcm, dtype="<i2")
        if track.fed + len(samples) / self.rate > max_seconds:
            raise InvalidArguments(f"speaker {speaker!r} passes VSM_SPACES_MAX_SECONDS ({max_seconds:g} s)")
        out += track.feed(self.resamplers[speaker].push(samples).tobytes())
        self.duration = max(self.duration, track.fed)
        self.busy += time.perf_counter() - t0
        return out

    def close_tracks(self) -> list[Segment]:
        """A stream's end: flush every track. In a worker."""
        t0 = time.perf_counter()
        out: list[Segment] = []
        for speaker, track in self.tracks.items():
            out += track.feed(self.resamplers[speaker].push(np.zeros(0, dtype="<i2"), final=True).tobytes())
            out += track.finish()
        self.busy += time.perf_counter() - t0
        return out

    def ordered(self) -> list[Segment]:
        return sorted(self.segments, key=lambda s: (s.start, s.speaker, s.index))

    def transcript(self) -> str:
        """Plain text, one line per segment in time order: ``[h:mm:ss.s-h:mm:ss.s] speaker: text``."""
        lines = [f"# {self.title}", ""] if self.title else []
        for s in self.ordered():
            who = f"{s.speaker}: " if s.speaker else ""
            lines.append(f"[{clock(s.start)}-{clock(s.end)}] {who}{s.text}")
        return "\n".join(lines) + "\n"

    def status(self, since: int = 0) -> dict[str, Any]:
        return {
            "space": self.space, "kind": self.kind, "state": self.state, "title": self.title,
            "duration_s": round(self.duration, 3), "processing_s": round(self.busy, 3),
            "rtf": round(self.busy / self.duration, 4) if self.duration else None,
            "speakers": sorted({s.speaker for s in self.segments}),
            "segment_count": len(self.segments),
            "segments": [s.as_dict() for s in self.segments if s.index >= since],
            "container": self.container, "errors": self.errors[-5:],
        }


def clock(seconds: float) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}"
