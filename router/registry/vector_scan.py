"""Approximate cosines of a query to every tool vector: 8-bit codes scanned with integer kernels.

Why: at 10,000 tools the float32 matrix is 15 MB; a query's exact matvec streams all of it and,
on the shared 2-core machine, took 0.45 ms alone and ~1 ms inside the search (the other
processes evict it from the L3). As 8-bit codes with one scale per row it is 3.8 MB, and
numkong's packed int8 dot-product kernels (AVX-512 VNNI; numkong ships with usearch) scan it
in ~0.08 ms. The scan only chooses candidates: with each cosine comes a bound on its error, and
the registry re-scores with the float32 vectors every tool that the bound does not rule out
(router/registry/index.py), so the ranking is the exact one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Int8Scan", "int8_scan_available"]

Vector = npt.NDArray[np.float32]


def int8_scan_available() -> bool:
    try:
        import numkong  # noqa: F401
    except ImportError:
        return False
    return True


def _codes(x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.int8], Vector]:
    """Symmetric 8-bit codes per row and the scale that turns each row's codes back into floats."""
    scale = np.abs(x).max(axis=-1, keepdims=True) / np.float32(127.0)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    codes = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
    return codes, scale.reshape(x.shape[:-1])


class Int8Scan:
    """``cosines(q)`` ≈ ``vectors @ q`` for a fixed matrix of unit rows."""

    def __init__(self, vectors: npt.NDArray[np.float32]) -> None:
        import numkong

        self._nk: Any = numkong
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        codes, self._row_scale = _codes(vectors)
        self._packed = numkong.dots_pack(codes)
        self.rows, self.dim = codes.shape
        self._max_scale = float(self._row_scale.max(initial=0.0))
        self._max_l1 = float(np.abs(vectors).sum(axis=1).max(initial=0.0))

    def cosines(self, query: npt.NDArray[np.float32]) -> tuple[Vector, float]:
        """Approximate ``vectors @ query`` and a bound on every entry's absolute error.

        With v = s_v·c_v + e_v (|e_v| ≤ s_v/2 per element) and q likewise:
        |v·q − s_v s_q c_v·c_q| ≤ s_v/2·‖q‖₁ + s_q/2·(‖v‖₁ + d·s_v/2), taken at its worst row.
        """
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        codes, scale = _codes(q)
        dots = np.asarray(self._nk.dots_packed(codes, self._packed))[0]  # int32: exact sums of code products
        out: Vector = np.multiply(dots, self._row_scale * scale[0], dtype=np.float32)
        s_q = float(scale[0])
        bound = self._max_scale / 2 * float(np.abs(q).sum()) + s_q / 2 * (self._max_l1 + self.dim * self._max_scale / 2)
        return out, bound + 1e-5  # + float32 rounding of the products and scales
