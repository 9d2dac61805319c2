"""MiniLM on onnxruntime: same vectors as the numpy pass, a cached model file, safe fallbacks."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vsm_mcp.embeddings import MiniLMEmbedder, make_embedder
from vsm_mcp.embeddings import onnx_encoder as embeddings_onnx
from vsm_mcp.errors import ConfigError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from vsm_mcp.embeddings.onnx_encoder import OnnxMiniLMEmbedder  # noqa: E402

SENTENCES = [
    "A man is eating pasta.",
    "Someone in a gorilla costume is playing a set of drums.",
    "list the open pull requests of a GitHub repository",
    "read_file: Read the complete contents of a file from the file system. Parameters: path",
    "create_issue. Create a new issue in a GitHub repository. Parameters: owner, repo, title, body",
    "x",
    "word " * 300,  # truncated to 256 tokens
]


@pytest.fixture(autouse=True)
def fresh_sessions() -> Iterator[None]:
    """Each test sees the cache directory it made, not a session another test loaded."""
    embeddings_onnx._SESSIONS.clear()
    yield
    embeddings_onnx._SESSIONS.clear()


@pytest.fixture(scope="module")
def numpy_vectors() -> np.ndarray:
    return MiniLMEmbedder().embed(SENTENCES)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)  # rows are unit length


def test_fp32_matches_the_numpy_forward_pass(tmp_path: Path, numpy_vectors: np.ndarray) -> None:
    emb = OnnxMiniLMEmbedder("fp32", cache_dir=tmp_path)
    assert emb.name == "minilm"  # same numbers, so stored "minilm" vectors stay valid
    got = emb.embed(SENTENCES)
    assert got.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    assert _cos(got, numpy_vectors).min() >= 0.9999
    # Padding inside a batch must not change a sentence's vector.
    alone = np.vstack([emb.embed([s]) for s in SENTENCES])
    assert _cos(got, alone).min() >= 0.99999


def test_int8_is_close_to_fp32_and_named_apart(tmp_path: Path, numpy_vectors: np.ndarray) -> None:
    emb = OnnxMiniLMEmbedder("int8", cache_dir=tmp_path)
    assert emb.name == "minilm:int8"  # other numbers: stored vectors are keyed apart
    got = emb.embed(SENTENCES)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cos(got, numpy_vectors).min() >= 0.998
    # The published sentence-transformers scores still hold to 2 decimals.
    q = emb.embed(["A man is eating pasta."])
    corpus = emb.embed(["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."])
    assert np.allclose((q @ corpus.T)[0], [0.7035, 0.5272, 0.1889], atol=0.01)


def test_second_construction_reuses_the_cached_file(tmp_path: Path) -> None:
    OnnxMiniLMEmbedder("int8", cache_dir=tmp_path).embed(["hello"])
    files = list(tmp_path.glob("minilm-int8-*.onnx"))
    assert len(files) == 1
    mtime, builds = files[0].stat().st_mtime_ns, embeddings_onnx.builds
    embeddings_onnx._SESSIONS.clear()  # as a new process would
    OnnxMiniLMEmbedder("int8", cache_dir=tmp_path).embed(["hello"])
    assert embeddings_onnx.builds == builds
    assert files[0].stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other-weights"])
def test_a_corrupt_cached_file_is_rebuilt_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    first = OnnxMiniLMEmbedder("int8", cache_dir=tmp_path).embed(SENTENCES[:2])
    path = next(tmp_path.glob("minilm-int8-*.onnx"))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(4096))
    else:  # a valid model, but another file's (as after a wrong copy)
        OnnxMiniLMEmbedder("fp32", cache_dir=tmp_path / "other").embed(["x"])
        path.write_bytes(next((tmp_path / "other").glob("*.onnx")).read_bytes())
    embeddings_onnx._SESSIONS.clear()
    builds = embeddings_onnx.builds
    with caplog.at_level(logging.WARNING, logger="vsm_mcp.embeddings.onnx_encoder"):
        again = OnnxMiniLMEmbedder("int8", cache_dir=tmp_path).embed(SENTENCES[:2])
    assert embeddings_onnx.builds == builds + 1
    assert any("unusable" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    assert np.allclose(first, again, atol=1e-6)
    assert path.read_bytes() == data  # the rebuilt file replaced the damaged one


def test_make_embedder_picks_onnxruntime_and_falls_back_to_numpy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(make_embedder("minilm"), OnnxMiniLMEmbedder)
    assert make_embedder("minilm").name == "minilm:dyn8"
    assert make_embedder("minilm:int8").name == "minilm:int8"
    assert make_embedder("minilm:fp32").name == "minilm"
    numpy_one = make_embedder("minilm:numpy")
    assert type(numpy_one) is MiniLMEmbedder and numpy_one.name == "minilm"
    monkeypatch.setattr(embeddings_onnx, "onnxruntime_available", lambda: False)
    fallback = make_embedder("minilm")
    assert type(fallback) is MiniLMEmbedder and fallback.name == "minilm"
    assert fallback.embed(["still works"]).shape == (1, 384)
    for spec in ("minilm:int8", "minilm:dyn8"):
        with pytest.raises(ConfigError, match="onnxruntime"):
            make_embedder(spec)
    with pytest.raises(ConfigError, match="minilm:fp16"):
        make_embedder("minilm:fp16")


def test_onnxruntime_available_is_false_when_it_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def no_ort(name: str, *args: object, **kwargs: object) -> object:
        return None if name == "onnxruntime" else real_find_spec(name, *args, **kwargs)  # type: ignore[arg-type]

    assert embeddings_onnx.onnxruntime_available()
    monkeypatch.setattr(importlib.util, "find_spec", no_ort)
    assert not embeddings_onnx.onnxruntime_available()


def test_the_availability_check_does_not_import_onnx() -> None:
    """Importing onnx costs ~0.5 s (ml_dtypes) of every CLI start-up; only building the model needs it."""
    code = ("import sys; from vsm_mcp.embeddings import onnx_encoder as e; "
            "assert e.onnxruntime_available(); print('onnx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_an_unwritable_cache_still_gives_a_working_embedder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    with caplog.at_level(logging.WARNING, logger="vsm_mcp.embeddings.onnx_encoder"):
        vec = OnnxMiniLMEmbedder("int8", cache_dir=blocker / "models").embed(["hello"])
    assert vec.shape == (1, 384)
    assert any("cannot cache" in r.getMessage() for r in caplog.records)


def test_a_catalog_embedded_on_two_threads_gets_the_same_vectors(tmp_path: Path) -> None:
    texts = [f"{s} (variant {i})" for i in range(6) for s in SENTENCES]  # several batches of 4
    one = OnnxMiniLMEmbedder("int8", cache_dir=tmp_path, batch_size=4, bulk_workers=1).embed(texts)
    two = OnnxMiniLMEmbedder("int8", cache_dir=tmp_path, batch_size=4, bulk_workers=2).embed(texts)
    assert np.array_equal(one, two)


# --- dyn8: 8-bit weights and activations, one text per run (vsm_mcp/embeddings/onnx_dyn8.py) ---


def test_dyn8_is_close_to_fp32_and_named_apart(tmp_path: Path, numpy_vectors: np.ndarray) -> None:
    emb = OnnxMiniLMEmbedder("dyn8", cache_dir=tmp_path)
    assert emb.name == "minilm:dyn8"
    got = emb.embed(SENTENCES)
    assert got.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = _cos(got, numpy_vectors)
    # Activations are quantised per text: a one-token text ("x") is the worst case (~0.982).
    assert cos.min() >= 0.98 and cos.mean() >= 0.99
    assert np.all(cos[[len(s.split()) > 3 for s in SENTENCES]] >= 0.995)
    q = emb.embed(["A man is eating pasta."])
    corpus = emb.embed(["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."])
    assert np.allclose((q @ corpus.T)[0], [0.7035, 0.5272, 0.1889], atol=0.02)


def test_dyn8_graph_is_the_quantised_one(tmp_path: Path) -> None:
    """The fast path is engaged: int8 products on dynamically quantised inputs, no
    SkipLayerNormalization (~5x slower than Add + LayerNormalization here), no mask input."""
    import onnx

    OnnxMiniLMEmbedder("dyn8", cache_dir=tmp_path).embed(["x"])
    model = onnx.load(str(next(tmp_path.glob("minilm-dyn8-*.onnx"))))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("DynamicQuantizeMatMul") == 6 * 4 and "MatMul" not in ops and "MatMulNBits" not in ops
    assert "SkipLayerNormalization" not in ops and ops.count("LayerNormalization") == 1 + 6 * 2
    assert [i.name for i in model.graph.input] == ["input_ids"]


def test_dyn8_vector_depends_only_on_the_text(tmp_path: Path) -> None:
    """Alone (a query) or among many texts on two threads (indexing): the same bits."""
    texts = [f"{s} (variant {i})" for i in range(6) for s in SENTENCES]
    one = OnnxMiniLMEmbedder("dyn8", cache_dir=tmp_path, bulk_workers=1).embed(texts)
    two = OnnxMiniLMEmbedder("dyn8", cache_dir=tmp_path, bulk_workers=2).embed(texts)
    alone = np.vstack([OnnxMiniLMEmbedder("dyn8", cache_dir=tmp_path).embed([t]) for t in texts[:8]])
    assert np.array_equal(one, two)
    assert np.array_equal(one[:8], alone)
    assert np.array_equal(one[:8], OnnxMiniLMEmbedder("dyn8", cache_dir=tmp_path).embed(texts[:8][::-1])[::-1])


def _weight_range(path: Path) -> int:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    weights = [numpy_helper.to_array(inits[n.input[1]]) for n in model.graph.node if n.op_type == "DynamicQuantizeMatMul"]
    return max(int(np.abs(w.astype(np.int16)).max()) for w in weights)


def test_dyn8_weights_avoid_a_saturating_int8_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """x86 without VNNI (VPMADDUBSW saturates 16-bit pair sums) gets 7-bit weights, its own file."""
    from vsm_mcp.embeddings import onnx_dyn8

    exact = onnx_dyn8.exact_int8_dot()
    OnnxMiniLMEmbedder("dyn8", cache_dir=tmp_path).embed(["hello"])
    monkeypatch.setattr(onnx_dyn8, "exact_int8_dot", lambda: not exact)
    embeddings_onnx._SESSIONS.clear()
    builds = embeddings_onnx.builds
    other = OnnxMiniLMEmbedder("dyn8", cache_dir=tmp_path).embed(SENTENCES)
    assert embeddings_onnx.builds == builds + 1  # the recipe (weight bits) keys the cached file
    ranges = sorted(_weight_range(p) for p in tmp_path.glob("minilm-dyn8-*.onnx"))
    assert ranges == [63, 127]
    assert _cos(other, MiniLMEmbedder().embed(SENTENCES)).mean() >= 0.99


def test_dyn8_cached_file_depends_on_its_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vsm_mcp.embeddings import onnx_dyn8

    OnnxMiniLMEmbedder("dyn8", cache_dir=tmp_path).embed(["hello"])
    monkeypatch.setattr(onnx_dyn8, "ALPHA", onnx_dyn8.ALPHA - 0.1)
    embeddings_onnx._SESSIONS.clear()
    builds = embeddings_onnx.builds
    OnnxMiniLMEmbedder("dyn8", cache_dir=tmp_path).embed(["hello"])
    assert embeddings_onnx.builds == builds + 1
    assert len(list(tmp_path.glob("minilm-dyn8-*.onnx"))) == 2
