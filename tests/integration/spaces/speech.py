"""Test speech made by Debian's ``espeak-ng`` from a known text, and word error rate.

Two speakers are two espeak-ng voices taking turns; the conversation is rendered as a two-channel
recording (one speaker per channel, silent while the other speaks), as a mono mix with its turns,
and as per-speaker PCM for a live stream. Also used by benchmarks/spaces_bridge.py.

Voices: ``en-us+f2`` and ``en-us+f5`` at 140 words/min, pitch 60 — of the espeak-ng English
voices tried (m1, m3, m7, f1-f5, klatt*), these two are what PocketSphinx's US-English model
recognises best (the male variants came out at WER 0.6-0.9 on the same text).
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
import wave
from dataclasses import dataclass

import numpy as np

ESPEAK = shutil.which("espeak-ng")
VOICES = {"alice": "en-us+f2", "bob": "en-us+f5"}
GAP_S = 0.6  # silence between turns: a real pause, longer than the endpointer's 0.3 s window
CONVERSATION = [
    ("alice", "The weather today is sunny with a light breeze."),
    ("bob", "We will meet at the station at nine in the morning."),
    ("alice", "Please bring your ticket and a warm coat."),
    ("bob", "The train leaves from platform four at half past nine."),
    ("alice", "I will call you when I arrive in the city."),
    ("bob", "Thank you and have a good trip."),
]

# The benchmark's longer text (benchmarks/spaces_bridge.py), a different one than the test's.
MEETING = [
    ("alice", "Good morning everyone and welcome to the weekly planning meeting."),
    ("bob", "Thank you. I would like to start with the budget for next year."),
    ("alice", "The first quarter was better than we expected."),
    ("bob", "Sales grew in every region except the north."),
    ("alice", "We should hire two more people for the support team."),
    ("bob", "I agree, but we need to finish the new office first."),
    ("alice", "The building will be ready at the end of the month."),
    ("bob", "Then we can move the computers and the furniture in one week."),
    ("alice", "Please send me the list of open questions before Friday."),
    ("bob", "I will write it today and share it with the whole group."),
    ("alice", "Our customers asked for a simpler price list."),
    ("bob", "We can show the new prices at the next meeting."),
    ("alice", "Does anyone have a question about the travel plans?"),
    ("bob", "Yes, who will book the hotel for the conference?"),
    ("alice", "I will do that this afternoon."),
    ("bob", "Good, then we are done for today. Thank you all."),
]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance: substitutions + deletions + insertions."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[:], i
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
    return row[-1]


def wer(reference: str, hypothesis: str) -> float:
    ref = words(reference)
    return word_errors(ref, words(hypothesis)) / max(1, len(ref))


def say(voice: str, text: str) -> tuple[int, np.ndarray]:
    """espeak-ng's rendering of ``text``: (sample rate, int16 mono samples)."""
    assert ESPEAK, "espeak-ng is not installed"
    out = subprocess.run([ESPEAK, "-v", voice, "-s", "140", "-p", "60", "--stdout", text],
                         capture_output=True, check=True, timeout=60).stdout
    with wave.open(io.BytesIO(out)) as w:
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def wav_bytes(rate: int, channels: list[np.ndarray]) -> bytes:
    """A 16-bit PCM WAV of equally long ``channels``."""
    inter = np.empty(len(channels[0]) * len(channels), dtype="<i2")
    for n, ch in enumerate(channels):
        inter[n::len(channels)] = ch
    data = inter.tobytes()
    fmt = struct.pack("<HHIIHH", 1, len(channels), rate, rate * 2 * len(channels), 2 * len(channels), 16)
    return b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", len(data)) + data


@dataclass
class Conversation:
    rate: int
    tracks: dict[str, np.ndarray]  # speaker -> their channel (silence while the other speaks)
    turns: list[dict[str, object]]  # [{speaker, start, end, text}] in seconds
    text: str  # the reference transcript

    @property
    def seconds(self) -> float:
        return len(next(iter(self.tracks.values()))) / self.rate

    def stereo(self) -> bytes:
        return wav_bytes(self.rate, list(self.tracks.values()))

    def mono(self) -> bytes:
        mix = sum(t.astype(np.int32) for t in self.tracks.values())
        return wav_bytes(self.rate, [np.clip(mix, -32768, 32767).astype("<i2")])


def conversation(lines: list[tuple[str, str]] = CONVERSATION) -> Conversation:
    rendered = [(who, text, *say(VOICES[who], text)) for who, text in lines]
    rate = rendered[0][2]
    gap = np.zeros(int(GAP_S * rate), dtype="<i2")
    parts: dict[str, list[np.ndarray]] = {who: [] for who in VOICES}
    turns, clock = [], 0.0
    for who, text, _rate, samples in rendered:
        for other in parts:
            parts[other] += [samples if other == who else np.zeros(len(samples), dtype="<i2"), gap]
        turns.append({"speaker": who, "start": round(clock, 3), "end": round(clock + len(samples) / rate, 3),
                      "text": text})
        clock += (len(samples) + len(gap)) / rate
    return Conversation(rate, {who: np.concatenate(p) for who, p in parts.items()}, turns,
                        " ".join(text for _, text in lines))
