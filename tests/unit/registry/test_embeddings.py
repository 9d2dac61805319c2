"""Embedders: MiniLM (numpy and onnxruntime fp32) matches sentence-transformers, hash is deterministic.

The quantised onnxruntime variants (``minilm:dyn8``, the ``minilm`` default when onnxruntime is
installed, and ``minilm:int8``) are checked against these in test_embeddings_onnx.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vsm_mcp.config import load_settings
from vsm_mcp.embeddings import Embedder, HashEmbedder, make_embedder
from vsm_mcp.errors import ConfigError, InvalidArguments

CORPUS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "A man is riding a white horse on an enclosed ground.",
    "A cheetah is running behind its prey.",
    "A monkey is playing drums.",
    "A woman is playing violin.",
]


@pytest.fixture(scope="module", params=["minilm:numpy", "minilm:fp32"])
def minilm(request: pytest.FixtureRequest) -> Embedder:
    if request.param == "minilm:fp32":
        pytest.importorskip("onnxruntime")
    return make_embedder(request.param)


def test_minilm_matches_published_sentence_transformers_scores(minilm: Embedder) -> None:
    # Scores printed by the sentence-transformers semantic_search example for all-MiniLM-L6-v2.
    query = minilm.embed(["A man is eating pasta."])
    corpus = minilm.embed(CORPUS)
    scores = (query @ corpus.T)[0]
    expected = [0.7035, 0.5272, 0.1889, 0.1047, 0.0980]
    assert np.allclose(scores[:5], expected, atol=6e-4), scores[:5]
    drums = (minilm.embed(["Someone in a gorilla costume is playing a set of drums."]) @ corpus.T)[0]
    assert abs(drums[5] - 0.6433) < 6e-4
    assert abs(drums[6] - 0.2564) < 6e-4


def test_minilm_shape_norm_and_batch_independence(minilm: Embedder) -> None:
    texts = ["short", "a much longer sentence with many more tokens than the first one", ""]
    together = minilm.embed(texts)
    assert together.shape == (3, 384) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    alone = np.vstack([minilm.embed([t]) for t in texts])
    # Padding must not change a sentence's vector.
    assert np.allclose(together, alone, atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)


def test_minilm_rejects_a_bare_string(minilm: Embedder) -> None:
    with pytest.raises(InvalidArguments, match="sequence"):
        minilm.embed("not a list")  # type: ignore[arg-type]


def test_minilm_truncates_very_long_text(minilm: Embedder) -> None:
    vec = minilm.embed(["word " * 2000])
    assert vec.shape == (1, 384) and np.isfinite(vec).all()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_hash_embedder_is_deterministic_and_normalised(texts: list[str]) -> None:
    a = HashEmbedder(32).embed(texts)
    b = HashEmbedder(32).embed(texts)
    assert np.array_equal(a, b)
    norms = np.linalg.norm(a, axis=1)
    assert np.all((np.abs(norms - 1.0) < 1e-5) | (norms == 0.0))


def test_make_embedder_specs() -> None:
    assert make_embedder("hash:16").dim == 16
    assert make_embedder("hash").name == "hash:64"
    assert make_embedder("litellm:text-embedding-3-small").name == "litellm:text-embedding-3-small"
    for bad in ("nope", "hash:x", "hash:1", "litellm:", "minilm:fp16"):
        with pytest.raises(ConfigError, match="embedder"):
            make_embedder(bad)


def test_embedder_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().embedder == "minilm"
    for spec in ("minilm:dyn8", "minilm:int8"):
        monkeypatch.setenv("VSM_EMBEDDER", spec)
        assert load_settings().embedder == spec
    monkeypatch.setenv("VSM_EMBEDDER", "word2vec")
    with pytest.raises(ConfigError, match="VSM_EMBEDDER"):
        load_settings()
