"""The WAV reader and the 16 kHz resampler of the spaces bridge (servers/spaces/audio.py), and the
speaker turns that tile a mono mix (servers/spaces/session.py)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from servers.spaces.audio import RATE, Resampler, read_wav, to_16k
from servers.spaces.session import parse_turns
from vsm_mcp.errors import InvalidArguments


def wav(rate: int = 16000, channels: int = 1, bits: int = 16, tag: int = 1, data: bytes = b"\0\0" * 100,
        extra: bytes = b"") -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    body = b"WAVE" + extra + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_reads_channels_and_skips_unknown_chunks() -> None:
    samples = np.arange(-6, 6, dtype="<i2")
    w = read_wav(wav(22050, 2, data=samples.tobytes(), extra=b"LIST" + struct.pack("<I", 3) + b"abc\0"), "f")
    assert (w.rate, w.channels, w.frames) == (22050, 2, 6)
    assert list(w.channel(0)) == list(samples[0::2]) and list(w.channel(1)) == list(samples[1::2])


def test_extensible_pcm_is_pcm() -> None:
    ext = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 32000, 2, 16, 22, 16, 4) + \
        struct.pack("<H", 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    data = b"\1\0" * 10
    body = b"WAVEfmt " + struct.pack("<I", len(ext)) + ext + b"data" + struct.pack("<I", len(data)) + data
    assert read_wav(b"RIFF" + struct.pack("<I", len(body)) + body, "f").frames == 10


@pytest.mark.parametrize(("data", "message"), [
    (b"ID3\x03 an mp3", "f: not a WAV file"),
    (wav(bits=8, data=b"\0" * 10), "8-bit; only 16-bit PCM"),
    (wav(tag=3, bits=32), "format tag 0x3 (compressed or float)"),
    (wav(rate=96000), "sample rate 96000 Hz; 8000-48000 Hz"),
    (wav(channels=9), "9 channels; 1-8"),
    (wav()[:36], "no data chunk"),
])
def test_bad_files_are_refused_naming_what(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArguments) as err:
        read_wav(data, "f")
    assert message in str(err.value) and "\n" not in str(err.value)


@given(rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000]),
       cuts=st.lists(st.integers(1, 4000), max_size=12), seed=st.integers(0, 2**32 - 1))
def test_chunked_resampling_equals_whole(rate: int, cuts: list[int], seed: int) -> None:
    """A live stream's chunks, however cut, resample to exactly what the whole recording does."""
    x = np.random.default_rng(seed).integers(-20000, 20000, size=rate // 2, dtype=np.int16)
    r, out, pos = Resampler(rate), [], 0
    for n in cuts:
        out.append(r.push(x[pos:pos + n]))
        pos += n
    out.append(r.push(x[pos:], final=True))
    whole = to_16k(x, rate)
    assert np.array_equal(np.concatenate(out), whole)
    assert len(whole) == -(-len(x) * RATE // rate)  # ceil: one output per 1/16000 s of input


def test_a_tone_keeps_its_pitch_and_loudness() -> None:
    for rate in (22050, 44100, 8000):
        t = np.arange(rate) / rate
        y = to_16k((np.sin(2 * np.pi * 440 * t) * 10000).astype("<i2"), rate).astype(float)
        ref = np.sin(2 * np.pi * 440 * np.arange(len(y)) / RATE) * 10000
        assert np.abs(y[200:-200] - ref[200:-200]).max() < 200  # < 2 % of the amplitude


def test_content_above_the_new_nyquist_is_filtered_out() -> None:
    rate = 44100
    t = np.arange(rate) / rate
    y = to_16k((np.sin(2 * np.pi * 12000 * t) * 10000).astype("<i2"), rate)  # would alias to 4 kHz
    assert np.abs(y[200:-200]).max() < 500


turn = st.builds(lambda s, d, who: {"speaker": who, "start": s, "end": s + d},
                 st.floats(0, 59, allow_nan=False), st.floats(0.01, 20, allow_nan=False), st.sampled_from("abc"))


@given(st.lists(turn, max_size=10))
def test_turns_tile_the_recording(raw: list[dict[str, object]]) -> None:
    tiles = parse_turns(raw, 60.0)  # type: ignore[arg-type]
    assert tiles[0].start == 0 and tiles[-1].end == 60.0
    assert all(a.end == b.start and a.start < a.end for a, b in zip(tiles, tiles[1:], strict=False))
    for t in tiles:  # every named tile lies inside one of the given turns of that speaker
        if t.speaker:
            assert any(r["speaker"] == t.speaker and r["start"] <= t.start and t.end <= min(r["end"], 60.0)  # type: ignore[operator]
                       for r in raw)


def test_bad_turns_say_which() -> None:
    with pytest.raises(InvalidArguments, match=r"turns\[1\]\.speaker"):
        parse_turns([{"speaker": "a", "start": 0, "end": 1}, {"speaker": "", "start": 1, "end": 2}], 5)
    with pytest.raises(InvalidArguments, match=r"turns\[0\] starts at 9 s, after the audio's end"):
        parse_turns([{"speaker": "a", "start": 9, "end": 10}], 5)
