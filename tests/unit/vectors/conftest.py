"""faiss on one OpenMP thread in these tests: on a shared, oversubscribed machine OpenMP's
spin-waiting makes k-means several times slower with 2 threads than with 1."""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import pytest


@pytest.fixture(autouse=True, scope="package")
def _faiss_one_thread() -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
