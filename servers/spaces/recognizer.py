"""Offline speech recognition: PocketSphinx (PyPI ``pocketsphinx``, its US-English acoustic model,
language model and dictionary ship in the wheel — nothing is downloaded).

A ``Track`` is one speaker's audio at 16 kHz, fed in pieces: its ``Endpointer`` (PocketSphinx's
VAD-based speech detector) finds where speech starts and stops, and each stretch of speech is
decoded as its own utterance, which becomes one ``Segment`` with its start and end time (seconds
from the track's start) and per-word times — what a live stream needs. It costs some accuracy
against decoding a whole recording at once (which normalises the cepstrum over the whole file):
WER 0.357 vs 0.325 on the benchmark's meeting (benchmarks/RESULTS.md, "spaces bridge").

Threads: PocketSphinx holds the GIL while it decodes (measured: a 5 s ``process_raw`` call
starved the event loop for seconds), so a track feeds it one endpointer frame (30 ms) at a time,
which lets the event loop in between; the server runs tracks on its own worker threads.
A track is not thread-safe: the server runs one job per track at a time.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pocketsphinx import Decoder, Endpointer

from servers.spaces.audio import RATE

FRAME_S = 0.01  # PocketSphinx's feature frame (its default frate is 100 per second)
MAX_UTTERANCE_S = 30.0  # speech running longer is cut here, so one decode job stays bounded
_ALT = re.compile(r"\(\d+\)\Z")  # dictionary alternates: "the(2)" is the word "the"
_FILLERS = {"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "[BREATH]", "[COUGH]", "[UH]", "[UM]", "[SMACK]"}


@dataclass
class Segment:
    start: float
    end: float
    text: str
    speaker: str = ""
    words: list[dict[str, Any]] = field(default_factory=list)  # {word, start, end}
    index: int = -1  # set when the session emits it

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "start": round(self.start, 3), "end": round(self.end, 3),
                "speaker": self.speaker, "text": self.text, "words": self.words}


class DecoderPool:
    """Decoders are costly to make (~0.3 s, the model load) and reusable across utterances."""

    def __init__(self, keep: int = 4) -> None:
        self._idle: list[Decoder] = []
        self._keep = keep
        self.cmninit = ""  # the model's initial cepstral mean (a fresh decoder's)
        self._lock = threading.Lock()

    def get(self) -> Decoder:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        dec = Decoder(samprate=RATE, logfn="/dev/null")
        self.cmninit = self.cmninit or dec.get_cmn(False)
        return dec

    def put(self, decoder: Decoder) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(decoder)


class Track:
    """One speaker's audio → segments, fed incrementally (call from one thread at a time)."""

    def __init__(self, speaker: str, pool: DecoderPool, offset: float = 0.0) -> None:
        self.speaker = speaker
        self._pool = pool
        self._ep = Endpointer(sample_rate=RATE)
        self._frame = self._ep.frame_bytes
        self._pending = b""
        self._decoder: Decoder | None = None
        self._buffer: list[bytes] | None = None  # the first utterance's speech, see _end_utterance
        self._cmn: str | None = None  # this channel's cepstral mean, once estimated
        self._utt_start = 0.0
        self._utt_bytes = 0
        self.offset = offset  # seconds of the stream before this track's first sample
        self.fed = offset  # the track's clock: seconds of the stream fed so far (offset included)

    def feed(self, pcm: bytes) -> list[Segment]:
        """16 kHz int16 mono bytes; the segments that ended within them."""
        self._pending += pcm
        self.fed += len(pcm) / (2 * RATE)
        usable = len(self._pending) - len(self._pending) % self._frame
        data, self._pending = self._pending[:usable], self._pending[usable:]
        return list(self._frames(data))

    def finish(self) -> list[Segment]:
        """End of this track's audio: the last segment, if speech was running."""
        out: list[Segment] = []
        if self._ep.in_speech:
            # A whole frame: end_stream reads out of bounds on an empty buffer; the padding is silence.
            speech = self._ep.end_stream(self._pending.ljust(self._frame, b"\0"))
            if speech:  # None or empty: nothing left (process_raw reads out of bounds on b"")
                self._process(speech)
            out.append(self._end_utterance(self._ep.speech_end))
        self._pending = b""
        # A new stretch (another turn) may follow; the new endpointer's clock starts at 0.
        self._ep = Endpointer(sample_rate=RATE)
        self.offset = self.fed
        return [s for s in out if s.text]

    def gap(self, seconds: float) -> list[Segment]:
        """Silence of ``seconds`` (a speaker who sent nothing for a while): ends a running segment."""
        out = self.finish()
        self.offset = self.fed = self.fed + seconds
        return out

    def _frames(self, data: bytes) -> Iterator[Segment]:
        for pos in range(0, len(data), self._frame):
            was = self._ep.in_speech
            speech = self._ep.process(data[pos:pos + self._frame])
            if speech is None:
                continue
            if not was:
                self._start_utterance(self._ep.speech_start)
            self._process(speech)
            if not self._ep.in_speech:
                seg = self._end_utterance(self._ep.speech_end)
                if seg.text:
                    yield seg
            elif self._utt_bytes >= MAX_UTTERANCE_S * 2 * RATE:  # keep a decode job bounded
                now = self._utt_start + self._utt_bytes / (2 * RATE)
                seg = self._end_utterance(now)
                self._start_utterance(now)
                if seg.text:
                    yield seg

    def _start_utterance(self, at: float) -> None:
        self._utt_start, self._utt_bytes = at, 0
        if self._cmn is None:  # the track's first utterance: buffered, see _end_utterance
            self._buffer = []
        else:
            self._decoder = self._open(self._cmn)

    def _open(self, cmn: str | None) -> Decoder:
        """A decoder started on an utterance with cepstral mean ``cmn`` (None: the model's default)."""
        dec = self._pool.get()
        dec.set_cmn(cmn or self._pool.cmninit)  # this track's channel, not a pooled decoder's last user's
        dec.start_utt()
        return dec

    def _process(self, speech: bytes) -> None:
        if self._buffer is None and self._decoder is None:  # end_stream can return speech not yet started
            self._start_utterance(self._ep.speech_start)
        if self._buffer is not None:
            self._buffer.append(speech)
        else:
            assert self._decoder is not None
            self._decoder.process_raw(speech)
        self._utt_bytes += len(speech)

    def _end_utterance(self, at: float) -> Segment:
        if self._buffer is not None:
            # No cepstral mean for this channel yet: the model's default (tuned to other
            # microphones) garbled first utterances (WER 0.6-1.1 on them). Estimate it from the
            # utterance itself (features only, no search), then decode the utterance with it.
            data, self._buffer = b"".join(self._buffer), None
            if data:  # (process_raw reads out of bounds on b"")
                prime = self._open(None)
                prime.process_raw(data, no_search=True)
                prime.end_utt()
                self._cmn = prime.get_cmn(False)
                self._pool.put(prime)
            self._decoder = self._open(self._cmn)
            for pos in range(0, len(data), self._frame):
                self._decoder.process_raw(data[pos:pos + self._frame])
        dec = self._decoder
        assert dec is not None
        dec.end_utt()
        self._cmn = dec.get_cmn(False)  # carried to the track's next utterance
        start, words = self.offset + self._utt_start, []
        for seg in dec.seg():
            if seg.word in _FILLERS or seg.word.startswith("++"):
                continue
            words.append({"word": _ALT.sub("", seg.word), "start": round(start + seg.start_frame * FRAME_S, 3),
                          "end": round(start + (seg.end_frame + 1) * FRAME_S, 3)})
        self._decoder = None
        self._pool.put(dec)
        return Segment(start, self.offset + max(at, self._utt_start), " ".join(w["word"] for w in words),
                       self.speaker, words)
