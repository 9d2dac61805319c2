"""Spaces bridge: word error rate and real-time factor on espeak-ng speech, bridge vs raw PocketSphinx.

Speech: a two-speaker conversation rendered by Debian's espeak-ng (voices en-us+f2 / en-us+f5,
tests/integration/spaces/speech.py) from a known text — ``--text test`` is the integration test's
6 lines, ``--text bench`` (default) the 16 other lines of ``MEETING`` (~55 s). WER = word-level Levenshtein distance /
reference words, on lower-cased words.

Rows, all on the same audio:

* ``baseline``: raw PocketSphinx — the mono mix resampled to 16 kHz, one ``process_raw(...,
  full_utt=True)`` call over the whole file, no segmentation, no speakers;
* ``bridge file 2ch``: ``spaces_transcribe`` of the two-channel recording (one speaker per channel)
  through the router (a real MCP client over streamable HTTP, the transcript container included);
* ``bridge file mono+turns``: the mono mix with its speaker turns, same path;
* ``bridge stream``: ``spaces_stream_push`` of each speaker's feed in 0.5 s chunks, as fast as the
  bridge takes them, then ``spaces_stream_stop``.

RTF = processing time / audio duration: ``wall`` is the client's time from the first call to the
transcript (container made); ``cpu`` the recogniser's own work (``processing_s``). For the stream,
``lag`` is how far behind the audio a segment comes out: audio pushed when it is returned minus
the segment's end (mean / max, seconds of audio).

    python benchmarks/spaces_bridge.py [--text bench|test] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from mcp import Client  # noqa: E402
from pocketsphinx import Decoder  # noqa: E402

from router.app import create_app  # noqa: E402
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest  # noqa: E402
from servers.spaces.audio import read_wav, to_16k  # noqa: E402
from tests.gate_helpers import admin_key, keyed_mcp  # noqa: E402
from tests.integration.edge.conftest import eventually, serve  # noqa: E402
from tests.integration.spaces.speech import CONVERSATION, MEETING, Conversation, conversation, wer  # noqa: E402
from vsm_mcp import migrate  # noqa: E402
from vsm_mcp.config import load_settings  # noqa: E402
from vsm_mcp.context import ServerContext  # noqa: E402

SERVERS = ("spaces", "content", "search", "storage")
SCOPES = ("content", "search", "storage", "events:read", "tools:call")


def baseline(talk: Conversation) -> dict[str, Any]:
    wav = read_wav(talk.mono(), "mono")
    t0 = time.perf_counter()
    pcm = to_16k(wav.channel(0), wav.rate).tobytes()
    dec = Decoder(samprate=16000, logfn="/dev/null")
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    took = time.perf_counter() - t0
    hyp = dec.hyp().hypstr if dec.hyp() else ""
    return {"row": "baseline", "wer": wer(talk.text, hyp), "wall_s": took, "cpu_s": took, "hypothesis": hyp}


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    res = await client.call_tool(f"spaces__{tool}", args)
    if res.is_error or res.structured_content is None:
        raise RuntimeError(" ".join(getattr(c, "text", "") for c in res.content))
    return res.structured_content


async def until_done(client: Client, space: str, status: dict[str, Any]) -> dict[str, Any]:
    while status["state"] == "running":
        await asyncio.sleep(0.2)
        status = await call(client, "spaces_status", space=space)
    if status["state"] != "done":
        raise RuntimeError(f"{space}: {status['state']}: {status['errors']}")
    return status


def row(name: str, talk: Conversation, status: dict[str, Any], wall: float, **extra: Any) -> dict[str, Any]:
    hyp = " ".join(s["text"] for s in sorted(status["segments"], key=lambda s: s["start"]))
    return {"row": name, "wer": wer(talk.text, hyp), "wall_s": wall, "cpu_s": status["processing_s"],
            "segments": len(status["segments"]), "speakers": status["speakers"],
            "container": (status["container"] or {}).get("status"), "hypothesis": hyp, **extra}


async def bridge_rows(talk: Conversation, home: Path) -> list[dict[str, Any]]:
    audio = home / "audio"
    audio.mkdir(parents=True)
    (audio / "talk.wav").write_bytes(talk.stereo())
    settings = load_settings(home=home / ".vsm", allow_anonymous=False, embedder="hash:64", rate_limit=0,
                             storage_sweep_interval_s=0, spaces_root=str(audio), tool_cache=False)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    manifest = yaml.safe_load(await asyncio.to_thread(Path(DEFAULT_MANIFEST).read_text))
    specs = parse_manifest({"upstreams": [u for u in manifest["upstreams"] if u["name"] in SERVERS]}, "default.yaml")
    ctx = ServerContext.create(settings)
    key = await admin_key(ctx.db, "default", SCOPES)
    app = create_app(settings, ctx, specs=specs)
    rows = []
    async with serve(app) as url, httpx.AsyncClient(base_url=url):
        await eventually(lambda: app.state.runtime.readiness()["ok"], 60, "the upstreams")
        async with Client(keyed_mcp(f"{url}/mcp", key), mode="legacy") as client:
            await call(client, "spaces_stream_start", space="warmup")  # decoders loaded before timing
            await call(client, "spaces_stream_push", space="warmup", pcm=base64.b64encode(talk.mono()[44:64044]).decode())
            await call(client, "spaces_stream_stop", space="warmup")

            t0 = time.perf_counter()
            st = await call(client, "spaces_transcribe", space="stereo", path="talk.wav", speakers=list(talk.tracks))
            st = await until_done(client, "stereo", st)
            rows.append(row("bridge file 2ch", talk, st, time.perf_counter() - t0))

            turns = [{k: t[k] for k in ("speaker", "start", "end")} for t in talk.turns]
            t0 = time.perf_counter()
            st = await call(client, "spaces_transcribe", space="mono", base64=base64.b64encode(talk.mono()).decode(),
                            turns=turns)
            st = await until_done(client, "mono", st)
            rows.append(row("bridge file mono+turns", talk, st, time.perf_counter() - t0))

            step = talk.rate // 2
            lags: list[float] = []
            t0 = time.perf_counter()
            await call(client, "spaces_stream_start", space="live", sample_rate=talk.rate)
            for pos in range(0, len(next(iter(talk.tracks.values()))), step):
                for who, samples in talk.tracks.items():
                    got = await call(client, "spaces_stream_push", space="live", speaker=who,
                                     pcm=base64.b64encode(samples[pos:pos + step].tobytes()).decode())
                    pushed = min(pos + step, len(samples)) / talk.rate
                    lags += [pushed - s["end"] for s in got["segments"]]
            st = await call(client, "spaces_stream_stop", space="live")
            rows.append(row("bridge stream", talk, st, time.perf_counter() - t0,
                            lag_mean_s=float(np.mean(lags)) if lags else None, lag_max_s=max(lags, default=None),
                            emitted_live=len(lags)))
    await ctx.aclose()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--text", choices=["bench", "test"], default="bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    talk = conversation(MEETING if args.text == "bench" else CONVERSATION)
    base = baseline(talk)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [base, *await bridge_rows(talk, Path(tmp))]
    for r in rows:
        r["rtf_wall"] = r["wall_s"] / talk.seconds
        r["rtf_cpu"] = r["cpu_s"] / talk.seconds
        r["wer_ratio_vs_baseline"] = r["wer"] / base["wer"] if base["wer"] else None
    out = {"audio_s": talk.seconds, "reference_words": len(talk.text.split()), "text": args.text, "rows": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"audio {talk.seconds:.1f} s, {out['reference_words']} reference words ({args.text} text)")
    print(f"{'row':<24} {'WER':>6} {'xbase':>6} {'RTF wall':>9} {'RTF cpu':>8} {'wall s':>7}  extra")
    for r in rows:
        extra = f"lag mean {r['lag_mean_s']:.2f} s, max {r['lag_max_s']:.2f} s" if r.get("lag_mean_s") is not None else ""
        print(f"{r['row']:<24} {r['wer']:6.3f} {r['wer_ratio_vs_baseline'] or 0:6.2f} {r['rtf_wall']:9.3f} "
              f"{r['rtf_cpu']:8.3f} {r['wall_s']:7.2f}  {extra}")
    for r in rows:
        print(f"  {r['row']}: {r['hypothesis']}")


if __name__ == "__main__":
    asyncio.run(main())
