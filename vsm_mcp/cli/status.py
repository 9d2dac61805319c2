"""`vsm-mcp status`: what a running router says about itself (its /readyz), one line per part.

Shows each upstream's state, live sessions, sessions being drained as zombies, zombies seen and
restarts; exits 0 when the router is ready, 1 when it is not, 2 when it cannot be reached.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

from vsm_mcp.cli.common import fail, handle_errors, out, settings_from


@handle_errors
def status(
    url: Annotated[str | None, typer.Option(help="Router base URL (default http://VSM_HOST:VSM_PORT).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print /readyz as JSON.")] = False,
) -> None:
    """Show whether the running router is ready, and what is draining."""
    if url is None:
        s = settings_from()
        host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
        url = f"http://{host}:{s.port}"
    try:
        r = httpx.get(f"{url.rstrip('/')}/readyz", timeout=10)
        body: dict[str, Any] = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        fail(f"cannot reach the router at {url}: {type(exc).__name__}: {exc}", 2)
        return
    if as_json:
        out.print_json(json.dumps(body))
    else:
        out.print(f"vsm-mcp at {url}: {'ready' if body.get('ready') else 'NOT ready'}")
        for name, check in body.get("checks", {}).items():
            if name != "upstreams":
                out.print(f"  {name}: {'ok' if check.get('ok') else 'DOWN'} ({check.get('detail', '')})")
        for name, st in sorted(body.get("checks", {}).get("upstreams", {}).items()):
            extra = f", DRAINING {st['draining']}" if st.get("draining") else ""
            out.print(f"  upstream {name}: {st.get('state')} ({st.get('sessions', 0)} sessions{extra}, "
                      f"{st.get('zombies', 0)} zombies, {st.get('restarts', 0)} restarts)"
                      + (f" — {st['error']}" if st.get("error") else ""))
        if body.get("reason"):
            out.print(f"  why not ready: {body['reason']}")
    raise typer.Exit(0 if body.get("ready") else 1)
