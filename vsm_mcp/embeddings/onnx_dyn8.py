"""The ``minilm:dyn8`` graph: all-MiniLM-L6-v2 with 8-bit weights and 8-bit activations.

Why (issue 26, benchmarks/RESULTS.md "encoder for bulk indexing"): indexing 10,000 tool texts
with ``minilm:int8`` cost ~15-20 ms of CPU per text (~66 tokens), minutes for a large catalog.
Measured per op, the time went to places other than the arithmetic:

* ``MatMulNBits`` (int8 weights in blocks of 32, the ``int8`` variant) runs its own integer
  kernel, about as fast as fp32 here. ``DynamicQuantizeMatMul`` quantises the activations of one
  product to 8 bits (one scale per tensor) and multiplies on onnxruntime's u8s8 GEMM, which uses
  the CPU's int8 units (AMX / VNNI): ~7x less time than fp32 for the FFN products.
* ``SkipLayerNormalization`` cost ~115 µs per call on 66 tokens, ``Add`` + ``LayerNormalization``
  ~20 µs: this graph uses the latter (biases go into the products instead).
* Padding and the attention mask: one text per run (no padding, no mask input) is as fast as
  batches, and a text's vector then depends on nothing but the text — the same whether it is
  embedded alone as a query or among 10,000 tools.

Quantising activations per tensor loses accuracy on MiniLM's outlier channels (a few hidden
channels run 10-15x larger than the rest, the same ones in every layer). SmoothQuant-style
scaling moves them into the weights: each product's input channel ``j`` is divided by
``s_j = rms_j ** ALPHA / max|W_j| ** (1 - ALPHA)`` and the weight row multiplied by it (exact in
fp32). ``rms_j`` is measured on ``CALIBRATION`` — sentences written for this purpose, not the
retrieval dev set — with the fp32 graph. Cosine to the fp32 vectors over 1,264 tool texts:
min 0.994, mean 0.998 (without smoothing 0.987 / 0.994); held-out retrieval unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from vsm_mcp.embeddings.onnx_encoder import OPSET
from vsm_mcp.embeddings.onnx_encoder import _Graph as Graph

__all__ = [
    "ALPHA", "CALIBRATION", "build_dyn8_graph", "build_encoder", "calibration_rms", "exact_int8_dot", "recipe",
]

Matrix = npt.NDArray[np.float32]
# (layer, product) → where a product sits; products: qkv, attn_out, ffn_in, ffn_out.
Key = tuple[int, str]
Product = Callable[[Graph, str, Matrix, Matrix, Key], str]

ALPHA = 0.8  # share of an outlier channel's size moved into the weights (chosen by cosine to fp32)
_LAYERS_MAX = 64

# Calibration text: tool descriptions and requests of the kinds a gateway indexes and is asked.
CALIBRATION: tuple[str, ...] = (
    "read file: read the contents of a file from the local disk. Parameters: path, encoding.",
    "github: create pull request. Open a new pull request from a branch. Parameters: owner, repo, title, head, base, body.",
    "postgres (managed PostgreSQL databases): run sql. Execute a SQL statement against a database branch and return the rows.",
    "slack: post message. Send a message to a channel or a direct conversation. Parameters: channel, text, thread ts.",
    "calendar: list events. List upcoming events of a calendar between two dates, with attendees and locations.",
    "kubernetes: scale deployment. Change the number of replicas of a deployment in a namespace. Parameters: name, namespace, replicas.",
    "browser: take screenshot. Capture a PNG screenshot of the current page or of one element, optionally full page.",
    "weather: get forecast. Hourly and daily forecast for a latitude and longitude, temperature in Celsius or Fahrenheit.",
    "s3: put object. Upload bytes to a bucket under a key; set the content type and storage class. Parameters: bucket, key, body.",
    "jira: transition issue. Move an issue to another status of its workflow and add an optional comment.",
    "memory: store a fact about the user so that later conversations can recall it.",
    "search: query the web index and return titles, snippets and links of the ten best pages.",
    "email: send an email with a subject, a body in plain text or HTML and optional attachments to one or more recipients.",
    "git: show the commit log of the current branch with authors, dates and messages; limit the number of entries.",
    "docker: list running containers with their image, status, ports and names.",
    "stripe: create a refund for a charge or a payment intent, fully or partially, with a reason.",
    "translate: translate a text into another language and detect the source language when it is not given.",
    "metrics: query a time series with PromQL over a range and step; returns matrix results.",
    "cms: publish an article draft, schedule it for a later date and set its tags and author.",
    "policy: deny tool calls that delete data outside business hours unless the caller is an administrator.",
    "list all open issues assigned to me in the backend repository",
    "what is the weather going to be like in Lisbon tomorrow afternoon?",
    "delete the temporary files older than seven days in the build directory",
    "show me the slowest SQL queries of the last hour",
    "book a meeting room for ten people next Tuesday at 3pm",
    "why did the last deployment fail and which pod keeps restarting",
    "summarize this PDF and extract the table on page 4",
    "find the customer by email address and show their last invoices",
    "rotate the API key of the staging environment",
    "Returns a paginated list of records matching the filter. Use the cursor from the previous response to fetch the next page.",
    "Creates or updates a DNS record (A, AAAA, CNAME, TXT, MX) in a zone; the TTL defaults to automatic.",
    "Runs a shell command in the sandbox and returns stdout, stderr and the exit code; times out after 60 seconds.",
    "Fetches a URL and converts the HTML page to Markdown, following redirects; robots.txt is respected.",
    "Gets the current price and 24h volume of a cryptocurrency pair on an exchange.",
    "Analyzes the sentiment of customer reviews and groups them by topic.",
    "Writes a key/value pair to the cache with an expiry in seconds. Parameters: key, value, ttl.",
    "Lists the tables of a schema with their row counts, sizes and last vacuum time.",
    "Sends an SMS to a phone number in E.164 format through the configured provider.",
    "Compiles the project, runs the unit tests and reports failures with file and line numbers.",
    "Generates an image from a text prompt at 1024x1024 and returns its URL.",
)


def exact_int8_dot() -> bool:
    """False on x86 CPUs without VNNI, where onnxruntime's u8s8 GEMM multiplies with VPMADDUBSW,
    whose 16-bit pair sums saturate for 8-bit weights (255 * 127 * 2 > 32767): weights then get
    7 bits (cosine to fp32 0.9966 mean instead of 0.9979, measured here). ARM's dot products and
    x86 VNNI / AMX accumulate in 32 bits."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True
    try:
        text = open("/proc/cpuinfo", encoding="ascii", errors="replace").read()
    except OSError:
        return False  # not Linux: assume the saturating path and take 7-bit weights
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def weight_levels() -> int:
    """Largest weight magnitude: 127 (8 bits) where the int8 dot product is exact, else 63."""
    return 127 if exact_int8_dot() else 63


def recipe() -> str:
    """Part of the cached model file's key: a change here (or another CPU class) builds a new file."""
    return f"dyn8/1/alpha={ALPHA}/levels={weight_levels()}/" + "\n".join(CALIBRATION)


def build_encoder(weights: dict[str, npt.NDArray[Any]], product: Product, taps: list[str] | None = None) -> Any:
    """The encoder as an ``onnx.ModelProto`` with every ``x @ W + b`` made by ``product``.

    Input ``input_ids`` (int64, ``(1, seq)``: one text, no padding, so no mask); output
    ``embeddings`` (float32, ``(1, 384)``, L2-normalised mean of the token states). With
    ``taps``, each product's input is also a graph output, named in ``taps`` (calibration).
    """
    from onnx import TensorProto, helper

    g = Graph()
    f32 = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items() if k != "embeddings.position_ids"}
    hidden = f32["embeddings.word_embeddings.weight"].shape[1]
    heads, eps = 12, 1e-12

    def dense(x: str, w: Matrix, b: Matrix, key: Key) -> str:
        if taps is not None:
            taps.append(x)
        return product(g, x, np.ascontiguousarray(w), b, key)

    def add_norm(x: str, residual: str, prefix: str) -> str:
        return g.op(
            "LayerNormalization", g.op("Add", x, residual), g.const(f32[prefix + ".weight"]),
            g.const(f32[prefix + ".bias"]), axis=-1, epsilon=eps,
        )

    x = g.op("Gather", g.const(f32["embeddings.word_embeddings.weight"]), "input_ids")
    seq_len = g.op("Shape", "input_ids", start=1, end=2)
    position = f32["embeddings.position_embeddings.weight"] + f32["embeddings.token_type_embeddings.weight"][0]
    pos = g.op("Slice", g.const(position), g.const([0], dtype=np.int64), seq_len, g.const([0], dtype=np.int64))
    x = g.op(
        "LayerNormalization", g.op("Add", x, pos), g.const(f32["embeddings.LayerNorm.weight"]),
        g.const(f32["embeddings.LayerNorm.bias"]), axis=-1, epsilon=eps,
    )
    for i in range(_LAYERS_MAX):
        p = f"encoder.layer.{i}."
        if p + "attention.self.query.weight" not in f32:
            break
        names = [p + f"attention.self.{n}" for n in ("query", "key", "value")]
        qkv = dense(
            x, np.concatenate([f32[n + ".weight"].T for n in names], axis=1),
            np.concatenate([f32[n + ".bias"] for n in names]), (i, "qkv"),
        )
        q, k, v = g.ops("Split", 3, qkv, g.const([hidden] * 3, dtype=np.int64), axis=-1)
        ctx = g.op("MultiHeadAttention", q, k, v, domain="com.microsoft", num_heads=heads)
        out = dense(ctx, f32[p + "attention.output.dense.weight"].T, f32[p + "attention.output.dense.bias"], (i, "attn_out"))
        x = add_norm(out, x, p + "attention.output.LayerNorm")
        inter = g.op(
            "Gelu", dense(x, f32[p + "intermediate.dense.weight"].T, f32[p + "intermediate.dense.bias"], (i, "ffn_in")),
            domain="com.microsoft",
        )
        out = dense(inter, f32[p + "output.dense.weight"].T, f32[p + "output.dense.bias"], (i, "ffn_out"))
        x = add_norm(out, x, p + "output.LayerNorm")

    pooled = g.op("ReduceMean", x, axes=[1], keepdims=0)  # no padding: every token counts
    norm = g.op("Max", g.op("ReduceL2", pooled, axes=[1], keepdims=1), g.const(1e-12))
    g.nodes.append(helper.make_node("Div", [pooled, norm], ["embeddings"]))
    outputs = [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])]
    outputs += [helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in taps or ()]
    graph = helper.make_graph(
        g.nodes, "all-MiniLM-L6-v2-dyn8",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])], outputs, g.inits,
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="vsm-mcp")
    model.ir_version = 8
    return model


def _fp32_product(g: Graph, x: str, w: Matrix, b: Matrix, key: Key) -> str:
    return g.op("Add", g.op("MatMul", x, g.const(w)), g.const(b))


def calibration_rms(
    weights: dict[str, npt.NDArray[Any]], token_ids: Sequence[Sequence[int]], open_session: Callable[[bytes], Any]
) -> dict[Key, Matrix]:
    """Root mean square of each product's input channels over the tokens of ``token_ids``.

    ``open_session(model_bytes)`` gives an onnxruntime session; the fp32 encoder with every
    product's input tapped runs once per text.
    """
    taps: list[str] = []
    keys: list[Key] = []

    def tapped(g: Graph, x: str, w: Matrix, b: Matrix, key: Key) -> str:
        keys.append(key)
        return _fp32_product(g, x, w, b, key)

    session = open_session(build_encoder(weights, tapped, taps).SerializeToString())
    sums: dict[Key, npt.NDArray[np.float64]] = {}
    count = 0
    for ids in token_ids:
        arrays = session.run(taps, {"input_ids": np.asarray([list(ids)], dtype=np.int64)})
        count += len(ids)
        for key, a in zip(keys, arrays, strict=True):
            sq = np.square(a.reshape(-1, a.shape[-1]).astype(np.float64)).sum(axis=0)
            sums[key] = sums[key] + sq if key in sums else sq
    return {k: np.sqrt(v / max(count, 1)).astype(np.float32) for k, v in sums.items()}


def _dyn8_product(rms: dict[Key, Matrix], levels: int) -> Product:
    def product(g: Graph, x: str, w: Matrix, b: Matrix, key: Key) -> str:
        # SmoothQuant: input channel j divided by s_j, weight row j multiplied by it.
        s = np.maximum(rms[key], 1e-5) ** ALPHA / np.maximum(np.abs(w).max(axis=1), 1e-5) ** (1 - ALPHA)
        s = (s / np.median(s)).astype(np.float32)
        w = w * s[:, None]
        # Weights: symmetric int8 (``levels``: 127, or 63 where the dot product saturates), one
        # scale per output column.
        col = np.abs(w).max(axis=0) / levels
        col = np.where(col > 0, col, 1.0).astype(np.float32)
        q = np.clip(np.rint(w / col), -levels, levels).astype(np.int8)
        return g.op(
            "DynamicQuantizeMatMul", g.op("Mul", x, g.const(1.0 / s)), g.const(q, dtype=np.int8), g.const(col),
            g.const(np.zeros(w.shape[1], dtype=np.int8), dtype=np.int8), g.const(b), domain="com.microsoft",
        )

    return product


def build_dyn8_graph(weights: dict[str, npt.NDArray[Any]], rms: dict[Key, Matrix], levels: int | None = None) -> Any:
    """The ``minilm:dyn8`` encoder, smoothing each product's input by ``rms`` (``calibration_rms``);
    weights in ``-levels..levels`` (default ``weight_levels()``)."""
    return build_encoder(weights, _dyn8_product(rms, levels or weight_levels()))
