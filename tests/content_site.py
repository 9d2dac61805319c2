"""A generated web site for ingest tests and benchmarks, served on 127.0.0.1 by a thread.

``Site(n)`` holds ``n`` documents: HTML pages (every ``pdf_every``-th one a PDF), an index page
linking to all of them — some links through a redirect (``/go/<i>`` → 302 → the document) —
and each page linking to the next. Responses carry ETag and Last-Modified and answer
conditional requests with 304. ``change(ids)`` edits documents in place (new text, new ETag).
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler

from tests.http_thread import serve_http

WORDS = (
    "container ingest pipeline vector search tenant policy version storage chunk embed index fetch normalize "
    "language document archive river mountain garden library quantum ocean forest engine signal network "
    "market harvest planet music theatre history science kitchen bridge railway castle winter summer"
).split()


def _pdf_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(title: str, lines: list[str]) -> bytes:
    """A minimal one-page PDF (Helvetica text) that pypdf extracts ``lines`` from."""
    ops = ["BT", "/F1 11 Tf", "72 760 Td", "14 TL"]
    for line in lines:
        ops.append(f"({_pdf_escape(line)}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1", "replace")
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Title (" + _pdf_escape(title).encode("latin-1", "replace") + b") >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


class Site:
    def __init__(self, n: int, *, pdf_every: int = 10, redirect_every: int = 7, words: int = 120, seed: int = 7) -> None:
        self.n, self.pdf_every, self.redirect_every, self.words = n, pdf_every, redirect_every, words
        self.rng = random.Random(seed)
        self.revision = dict.fromkeys(range(n), 0)
        self.bodies: dict[str, tuple[bytes, str]] = {}
        self.requests = 0
        self.not_modified = 0
        self._lock = threading.Lock()
        for i in range(n):
            self._render(i)
        self._render_index()

    # --- content ---------------------------------------------------------------------
    def path(self, i: int) -> str:
        return f"/docs/{i}.pdf" if self.is_pdf(i) else f"/docs/{i}.html"

    def is_pdf(self, i: int) -> bool:
        return i % self.pdf_every == self.pdf_every - 1

    def _sentences(self, i: int) -> list[str]:
        rng = random.Random(f"{i}:{self.revision[i]}")
        out = []
        for s in range(max(1, self.words // 12)):
            out.append(" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + f" doc{i} rev{self.revision[i]} s{s}.")
        return out

    def _render(self, i: int) -> None:
        title = f"Document {i}"
        sentences = self._sentences(i)
        if self.is_pdf(i):
            self.bodies[self.path(i)] = (make_pdf(title, sentences), "application/pdf")
            return
        nxt = self.path((i + 1) % self.n)
        paras = "".join(f"<p>{s}</p>" for s in sentences)
        html = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
            f"<nav><a href='/'>home</a> | <a href='{nxt}'>next</a></nav>"
            f"<article><h1>{title}</h1>{paras}</article><footer>generated site</footer></body></html>"
        )
        self.bodies[self.path(i)] = (html.encode(), "text/html; charset=utf-8")

    def link(self, i: int) -> str:
        return f"/go/{i}" if i % self.redirect_every == 0 else self.path(i)

    def _render_index(self) -> None:
        items = "".join(f"<li><a href='{self.link(i)}'>Document {i}</a></li>" for i in range(self.n))
        html = f"<!doctype html><html><head><title>Index</title></head><body><h1>Index</h1><ul>{items}</ul></body></html>"
        self.bodies["/"] = (html.encode(), "text/html; charset=utf-8")

    def change(self, ids: Iterable[int]) -> None:
        with self._lock:
            for i in ids:
                self.revision[i] += 1
                self._render(i)

    def urls(self, base: str) -> list[str]:
        return [base + self.path(i) for i in range(self.n)]

    # --- serving ---------------------------------------------------------------------
    def handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                with site._lock:
                    site.requests += 1
                if self.path.startswith("/go/"):
                    target = site.path(int(self.path.rsplit("/", 1)[1]))
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                found = site.bodies.get(self.path)
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, ctype = found
                etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    with site._lock:
                        site.not_modified += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", formatdate(1_700_000_000, usegmt=True))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@contextmanager
def serve_site(site: Site) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 (an ephemeral port); yields the base URL."""
    with serve_http(site.handler(), name="content-site") as url:
        yield url


if __name__ == "__main__":  # `python -m tests.content_site N`: serve N documents, print the URL, stop at EOF
    import sys

    site_ = Site(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
    with serve_site(site_) as url:
        print(url, flush=True)
        sys.stdin.read()
