"""A speaker turn may end anywhere — in the pause after a word, or mid-word — and its track must end
cleanly (regression: at such a cut the endpointer's end_stream returned b"", PocketSphinx reads
out of bounds on an empty buffer, and the whole transcription failed; found on MEETING's mono mix)."""

from __future__ import annotations

import pytest

from servers.spaces.audio import read_wav
from servers.spaces.recognizer import DecoderPool
from servers.spaces.session import Lane, parse_turns
from tests.integration.spaces.speech import ESPEAK, MEETING, conversation

pytestmark = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng (Debian package) is not installed: no test speech")


def test_turns_that_cut_speech_end_cleanly() -> None:
    talk = conversation(MEETING[:3])
    wav = read_wav(talk.mono(), "mono")
    turns = [{k: t[k] for k in ("speaker", "start", "end")} for t in talk.turns]
    lane, segments = Lane(wav, 0, parse_turns(turns, wav.seconds), DecoderPool()), []
    while not lane.done:
        segments += lane.step()
    assert [s.speaker for s in segments] == ["alice", "bob", "alice"]
    assert all(t["start"] - 0.05 <= s.start < s.end <= t["end"] + 0.05  # type: ignore[operator]
               for s, t in zip(segments, talk.turns, strict=True))
