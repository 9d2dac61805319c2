"""Settings: one object, built once at start and passed down (never a module global).

Every field is read from the environment with the prefix ``VSM_`` (``VSM_PORT=9000``) or from
an optional ``.env`` file in the working directory. ``.env.example`` documents each one;
``tests/unit/test_config.py`` fails when a field is missing from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vsm_mcp.auth import DEFAULT_ANONYMOUS_SCOPES, is_admin_scope, validate_scopes
from vsm_mcp.errors import ConfigError, VsmError


class Settings(BaseSettings):
    """Every setting of vsm-mcp. Field descriptions double as the `.env.example` help."""

    model_config = SettingsConfigDict(
        env_prefix="VSM_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- core -------------------------------------------------------------------------
    home: Path = Field(Path(".vsm"), description="Directory for the embedded SQLite file, caches and indexes.")
    runtime_dir: str = Field(
        "",
        description="Where `vsm-mcp serve` leaves a note of its address and data folder for `vsm-mcp connect` run "
        "elsewhere. Empty = $XDG_STATE_HOME/vsm-mcp/gateways (~/.local/state/vsm-mcp/gateways).",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy async URL. Empty = sqlite+aiosqlite:///<home>/vsm.db; "
        "PostgreSQL: postgresql+asyncpg://vsm_app@127.0.0.1:5432/vsm",
    )
    migration_database_url: str = Field(
        "",
        description="URL migrations run as (the table owner). Empty = database_url. On PostgreSQL the app "
        "should connect as the non-owner role vsm_app so row-level security applies.",
    )
    db_pool_size: int = Field(10, ge=1, le=500, description="Database connection pool size (PostgreSQL).")
    db_max_overflow: int = Field(10, ge=0, le=500, description="Connections allowed above the pool size.")
    db_statement_timeout_ms: int = Field(30_000, ge=100, description="PostgreSQL statement_timeout per connection.")
    bus_url: str = Field("memory://", description="Event bus: memory:// (in-process) or amqp://user:pass@host:5672/")
    host: str = Field("127.0.0.1", description="Address `vsm-mcp serve` binds to.")
    port: int = Field(8765, ge=1, le=65535, description="Port `vsm-mcp serve` listens on.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    default_tenant: str = Field(
        "default", description="Tenant name used for anonymous loopback callers and standalone servers."
    )
    allow_anonymous: bool = Field(
        True,
        description="Allow calls without an API key from a loopback peer that sends no forwarding header "
        "(VSM_ANONYMOUS_SCOPES, default tenant).",
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest accepted JSON request body.")
    hot_lane: bool = Field(
        True, description="Serve POST /mcp on the server's short road (router/fastlane/hot_protocol.py) instead of uvicorn's ASGI cycle.",
    )

    # --- router (issue 4) ----------------------------------------------------------------
    manifests: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Manifest files or directories, comma-separated (JSON list also accepted). "
        "Empty = the packaged manifests/default.yaml.",
    )
    expose: Literal["all", "search", "both"] = Field(
        "both", description="What /mcp lists: all upstream tools, only the search meta-tools, or both."
    )
    # Defaults sized for an agent's burst: a loop of 1,000 calls at concurrency 8 runs at a few
    # thousand calls/s through the router; the burst absorbs it, the rate bounds a runaway.
    rate_limit: float = Field(
        100.0, ge=0, description="Tool calls per second per API key, or per tenant for anonymous callers (token bucket; 0 = off).",
    )
    rate_burst: float = Field(1000.0, ge=0, description="Burst size of the per-key rate limit (calls allowed at once).")
    audit_journal: bool = Field(
        True, description="Append each episode to <home>/journal before the call is answered, so a crash loses no "
        "audit record of an answered call (replayed into the database at the next start).",
    )
    otel_endpoint: str = Field(
        "", description="OpenTelemetry collector base URL (OTLP over HTTP, e.g. http://127.0.0.1:4318): every tool "
        "call is exported as a span. Empty = no export.",
    )
    upstream_start_wait: float = Field(
        10.0, ge=0, description="Seconds start-up waits for upstreams to connect before serving anyway."
    )
    # --- upstreams managed at run time (issue 27) -------------------------------------------
    upstreams_poll_s: float = Field(
        0.5, ge=0, description="Seconds between checks of the upstream registry table for changes made elsewhere "
        "(a replica whose bus message was lost, `vsm-mcp upstreams` next to an embedded router); 0 = off.",
    )
    manifest_watch_s: float = Field(
        2.0, ge=0, description="Seconds between checks of the manifest files; a changed file is validated, then applied "
        "(a bad one keeps the running upstreams); 0 = off.",
    )
    upstream_drain_s: float = Field(
        30.0, ge=0, description="Seconds a removed or changed upstream's calls in flight may take before its processes stop."
    )
    admin_tools: bool = Field(
        True, description="Mount the router's own `admin` MCP server (admin__upstream_add …; callers need the admin scope)."
    )

    @field_validator("manifests", "fetch_allow", mode="before")
    @classmethod
    def _split_manifests(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                import json

                return json.loads(v)
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    # --- tool search (issue 5) ------------------------------------------------------------
    embedder: str = Field(
        "minilm",
        pattern=r"^(minilm(:(dyn8|int8|fp32|numpy))?|hash(:[0-9]+)?|litellm:.+)$",
        description="Text embedder for tool search: minilm (local, offline; minilm:dyn8 on onnxruntime, or "
        "minilm:int8 / minilm:fp32 / minilm:numpy), litellm:<model> (remote) or hash (tests only).",
    )
    search_fusion: Literal["rrf", "weighted"] = Field(
        "weighted", description="How tool search fuses BM25 and embedding ranks: weighted (normalised score sum) or rrf."
    )
    tool_search_rerank_model: str = Field(
        "", description="LLM-CDN model (a name in VSM_LLM_MODELS) that reorders tool search's best candidates through "
        "llm__llm_complete; empty = off. The caller needs llm:call; any failure keeps the first-stage order.",
    )
    tool_search_rerank_candidates: int = Field(
        10, ge=2, le=32, description="How many of tool search's best tools the rerank model is shown (name + one line)."
    )
    tool_search_rerank_timeout_s: float = Field(
        2.0, gt=0, le=60, description="Seconds a search waits for the rerank model before answering in first-stage order."
    )

    # --- LLM-CDN (issue 8) ---------------------------------------------------------------
    llm_models: str = Field(
        "",
        description="LLM-CDN model list: path to a YAML/JSON file or inline JSON (see docs/llm_cdn.md). Empty = no models.",
    )
    llm_cache_mode: Literal["deterministic", "all", "off"] = Field(
        "deterministic",
        description="Which chat requests the LLM cache stores: deterministic (temperature 0 or a seed), all, or off.",
    )
    llm_cache_ttl_s: float = Field(
        3600.0, gt=0, description="Default seconds a cached LLM answer lives (a model entry's ttl_s overrides it)."
    )
    llm_cache_max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024 * 1024, description="Size bound of the LLM cache (per tenant on PostgreSQL); the oldest stored answers are evicted first."
    )
    llm_timeout_s: float = Field(60.0, gt=0, description="Default seconds one upstream LLM call may take.")
    llm_retries: int = Field(2, ge=0, le=10, description="Retries (with backoff) of an LLM call answered 429 or 5xx.")
    llm_breaker_threshold: int = Field(
        5, ge=1, description="Consecutive failures that open an LLM provider's circuit breaker."
    )
    llm_breaker_reset_s: float = Field(
        30.0, gt=0, description="Seconds an open LLM provider circuit waits before one trial call."
    )
    llm_dedup_window_s: float = Field(
        120.0, gt=0, description="Seconds identical concurrent LLM requests wait for the one in flight (single-flight)."
    )
    llm_semantic_cache: bool = Field(
        False, description="Serve near-identical prompts from the LLM cache by embedding similarity (never with tools or seed)."
    )
    llm_semantic_threshold: float = Field(
        0.97, gt=0, le=1, description="Cosine similarity a prompt needs to reuse a cached answer semantically."
    )

    # --- events and edge (issue 6) --------------------------------------------------------
    event_log_retention_hours: float = Field(
        24.0, gt=0, description="Hours the durable event log keeps events for SSE replay (older rows are pruned)."
    )
    event_log_flush_ms: int = Field(
        200, ge=10, le=60_000, description="Event log writes are batched; a batch is flushed at least this often."
    )
    sse_heartbeat_s: float = Field(15.0, gt=0, description="Seconds between SSE heartbeat comments.")
    sse_queue_size: int = Field(
        256, ge=1, le=100_000, description="Events buffered per SSE connection; a client further behind gets 'overflow' and is closed."
    )
    sse_buffer_bytes: int = Field(
        256 * 1024, ge=1024,
        description="Unsent bytes an SSE connection may pile up in the server before it gets 'overflow' and is closed.",
    )
    sse_direct_write: bool = Field(
        True, description="Write SSE events straight to uvicorn's socket transport (falls back to ASGI send elsewhere).",
    )
    sse_replay_max: int = Field(
        10_000, ge=0, description="Most events replayed to one reconnecting SSE client (Last-Event-ID)."
    )
    edge_rate_per_s: float = Field(
        100.0, gt=0, description="Edge rate limit: sustained requests per second per principal (or per IP when anonymous)."
    )
    edge_rate_burst: int = Field(1000, ge=1, description="Edge rate limit: burst size per principal / IP.")
    telegram_secret: str = Field(
        "", description="Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token. Empty = webhook disabled."
    )
    telegram_bot_token: str = Field("", description="Bot API token used to send replies (sendMessage).")
    telegram_api_base: str = Field("https://api.telegram.org", description="Bot API base URL.")
    telegram_chats: str = Field(
        "", description="Chats allowed to use the bot and the tenant each acts as: 'chat_id=tenant,chat_id=tenant'."
    )
    telegram_scopes: str = Field("tools:call", description="Comma-separated scopes of the principal a bound chat acts as.")
    telegram_rate_per_min: float = Field(20.0, gt=0, description="Commands per minute allowed from one Telegram chat.")

    # --- storage (issue 7) ----------------------------------------------------------------
    storage_url: str = Field(
        "",
        description="Default storage backend: file:///dir, s3://bucket[/prefix]?endpoint_url=URL&region=R or "
        "memory://. Empty = file://<home>/storage.",
    )
    storage_backends: dict[str, str] = Field(
        default_factory=dict,
        description='Extra named backends a bucket may choose, as JSON: {"archive": "s3://bucket?endpoint_url=..."}.',
    )
    storage_auto_create_buckets: bool = Field(
        True, description="Create a bucket with no quota on its first put instead of answering not found."
    )
    storage_max_inline_bytes: int = Field(
        1024 * 1024, ge=1, description="Largest object storage_put/storage_get carry inside an MCP message; "
        "larger ones move over PUT/GET /v1/storage/{bucket}/{key}.",
    )
    storage_sweep_interval_s: float = Field(
        3600.0, ge=0, description="Seconds between lifecycle sweeps of all buckets (0 = only on demand)."
    )

    # --- beliefs CRDT (issue 11) ------------------------------------------------------------
    beliefs_node_id: str = Field(
        "", max_length=64, description="Replica id of this process in the beliefs CRDT; unique per process. "
        "Empty = generated once and kept in <home>/beliefs-node-id.",
    )
    beliefs_anti_entropy_s: float = Field(
        5.0, gt=0, description="Seconds between anti-entropy digests of the beliefs CRDT (catch-up after lost deltas)."
    )
    beliefs_snapshot_every: int = Field(
        1000, ge=1, description="Beliefs write-ahead log rows after which a replica's state is snapshotted and the log trimmed."
    )

    # --- policy (issue 10) ------------------------------------------------------------------
    policy_fuel: int = Field(
        1_000_000, ge=1000, description="Fuel (WebAssembly instructions, roughly) one policy evaluation may burn."
    )
    policy_memory_bytes: int = Field(
        16 * 1024 * 1024, ge=65536, description="Linear memory limit of one policy instance, in bytes."
    )
    policy_cache_ttl_s: float = Field(
        300.0, ge=0, description="Seconds a tenant's loaded policies are trusted before re-reading them "
        "(policy.changed events reload at once; 0 = only on events).",
    )

    # --- event intelligence (issue 21): CEP, tool-result cache, zombies -----------------------
    cep_queue: str = Field(
        "cep.matchers", min_length=1, max_length=200,
        description="Bus work queue the CEP matchers consume (durable on RabbitMQ: events published while "
        "the router is down are matched when it is back).",
    )
    cep_timer_flush_ms: int = Field(
        200, ge=10, le=60_000,
        description="Milliseconds between writes of changed CEP timers (absence deadlines, tumbling windows); "
        "a crash loses at most this much arming.",
    )
    redis_url: str = Field(
        "", description="Redis shared by router replicas (rate limits, tool-result cache). Empty = in-process "
        "and on-disk state per replica. Example: redis://127.0.0.1:6379/0",
    )
    tool_cache: bool = Field(
        True, description="Cache results of tools marked readOnlyHint+idempotentHint (or cacheable: true in a "
        "manifest), per tenant, on disk under <home>/tool-cache (Redis when VSM_REDIS_URL is set).",
    )
    tool_cache_ttl_s: float = Field(
        60.0, gt=0, le=86400 * 30,
        description="Default seconds a cached tool result is served; a manifest's cache_ttl overrides it per tool.",
    )
    tool_cache_max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024 * 1024, description="Size bound of the on-disk tool-result cache (oldest evicted first)."
    )
    upstream_zombie_s: float = Field(
        10.0, gt=0, le=3600,
        description="Seconds a stdio upstream may stop reading its stdin or answering pings before it is "
        "declared a zombie: drained, its process group killed and a new process started.",
    )
    upstream_drain_grace_s: float = Field(
        5.0, ge=0, le=600, description="Seconds a draining upstream's in-flight calls get before its process group is killed."
    )
    sse_stall_s: float = Field(
        60.0, gt=0, le=3600,
        description="Seconds an SSE connection may go without any write progress (the client stopped reading) "
        "before it is closed as a zombie.",
    )

    # --- content (issue 22) ------------------------------------------------------------------
    fetch_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Non-public destinations the ingest fetcher may reach, comma-separated: host[:port] or CIDR "
        "(10.0.0.0/8, 127.0.0.1:8080, intranet.example). Everything else that resolves to a loopback, private, "
        "link-local or metadata address is refused.",
    )
    fetch_max_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest document the ingest fetcher reads (bytes, after decoding).")
    fetch_timeout_s: float = Field(30.0, gt=0, description="Seconds one fetch may take in all, redirects included.")
    fetch_max_redirects: int = Field(5, ge=0, le=20, description="Redirects one fetch follows (each target checked again).")
    search_pgvector_url: str = Field(
        "", description="PostgreSQL (with the vector extension) for search collections created with backend=pgvector; "
        "its role must be able to create tables. Empty = VSM_MIGRATION_DATABASE_URL when the database is PostgreSQL.",
    )
    content_bucket: str = Field("content", description="Storage bucket holding the original bytes of every container version.")
    content_collection: str = Field("content", description="Search collection (per tenant) holding container chunks.")
    content_index_backend: Literal["usearch", "pq", "pgvector"] = Field(
        "usearch", description="Vector backend of the content collection when it is created (pgvector needs PostgreSQL)."
    )
    content_batch_size: int = Field(32, ge=1, le=500, description="Documents per durable ingest step (fetch → index).")
    content_parallel_batches: int = Field(
        2, ge=1, le=16, description="Batches an ingest job prepares at once (their fetch, normalize and index overlap)."
    )
    content_wait_s: float = Field(
        25.0, gt=0, description="Longest an ingest call with wait=true waits for its job before answering the status so "
        "far (keep it below the upstream timeout of the content server's manifest entry, 30 s by default).",
    )

    # --- spaces bridge (issue 24): audio → transcript ---------------------------------------
    spaces_root: str = Field(
        "", description="Directory whose WAV files spaces_transcribe may read by path (nothing outside it). "
        "Empty = <home>/spaces.",
    )
    spaces_max_seconds: float = Field(
        7200.0, gt=0, le=86400, description="Longest audio one transcription or one stream speaker may carry (seconds)."
    )
    spaces_upload_max_bytes: int = Field(
        32 * 1024 * 1024, ge=1024,
        description="Largest WAV a spaces_transcribe call may carry as base64, and largest pushed chunk (bytes, decoded).",
    )
    spaces_wait_s: float = Field(
        25.0, gt=0, description="Longest spaces_transcribe with wait=true waits before answering the status so far "
        "(keep it below the spaces manifest entry's timeout).",
    )
    spaces_workers: int = Field(
        1, ge=1, le=64, description="Worker threads for speech recognition (the recogniser holds the GIL while it "
        "decodes a frame, so more threads mostly share one core).",
    )

    # --- connectors (issue 23): cms and drive -------------------------------------------------
    connector_page_size: int = Field(100, ge=1, le=1000, description="Items a connector asks its source for per page (one durable sync step per page).")
    connector_max_retries: int = Field(
        8, ge=0, le=100, description="Times a connector retries one request answered 429 or 5xx (Retry-After honoured, else backoff)."
    )
    connector_backoff_s: float = Field(0.5, ge=0, description="First backoff of a connector's retried request without Retry-After (doubles per retry).")
    connector_max_wait_s: float = Field(60.0, ge=0, description="Longest a connector waits before one retry, whatever Retry-After says.")

    # --- workers (issue 20): episode analyzer, policy evaluator, notifier ---------------------
    analyzer_interval_s: int = Field(
        60, ge=1, le=3600,
        description="Seconds per episode-analyzer window; it runs that often, aligned to the clock. Must divide "
        "a minute (1-59 s) or an hour (whole minutes).",
    )
    analyzer_min_calls: int = Field(
        20, ge=1, description="Calls that reached an upstream (or tool) in a window before its error rate or latency can raise an alert."
    )
    analyzer_error_rate: float = Field(
        0.25, gt=0, le=1, description="Error rate (failed / reached calls in a window) at which an error_rate alert fires."
    )
    analyzer_latency_factor: float = Field(
        2.0, gt=1, description="A latency alert fires when a window's p95 is this many times its running baseline …"
    )
    analyzer_latency_floor_ms: float = Field(
        100.0, ge=0, description="… and at least this many milliseconds above it."
    )
    analyzer_flap_changes: int = Field(
        4, ge=1, description="Up/down switches of an upstream within one window that raise a flapping alert."
    )
    policy_audit_topics: str = Field(
        "tool.called,tool.failed", description="Bus topic patterns the policy evaluator judges against tenant policies (comma-separated)."
    )
    policy_audit_queue: str = Field(
        "workers.policy", min_length=1, max_length=200,
        description="Bus work queue the policy evaluators share (durable on RabbitMQ: each event is judged by one of them).",
    )
    notify_queue: str = Field(
        "workers.notify", min_length=1, max_length=200,
        description="Bus work queue the notification routers share (durable on RabbitMQ).",
    )
    notify_topics: str = Field(
        "alert.#,policy.violation",
        description="Bus topic patterns the notifier routes to tenant channels (comma-separated); a channel only sees these.",
    )
    notify_max_attempts: int = Field(6, ge=1, le=50, description="Attempts to deliver one notification before giving up.")
    notify_backoff_s: float = Field(2.0, gt=0, description="First wait before retrying a notification; doubles per attempt.")
    notify_backoff_max_s: float = Field(300.0, gt=0, description="Longest wait between two attempts (Retry-After included).")
    notify_timeout_s: float = Field(10.0, gt=0, description="Seconds one notification request (HTTP or SMTP) may take.")
    smtp_url: str = Field(
        "", description="SMTP server for e-mail channels: smtp://[user:pass@]host[:port][?starttls=true] or smtps://… Empty = no e-mail."
    )
    smtp_from: str = Field("vsm-mcp@localhost", description="From address of notification e-mails.")

    @field_validator("analyzer_interval_s")
    @classmethod
    def _check_interval(cls, v: int) -> int:
        ok = 60 % v == 0 if v < 60 else v % 60 == 0 and 60 % (v // 60) == 0
        if not ok:
            raise ValueError(f"{v} s does not divide a minute or an hour; use e.g. 10, 15, 30, 60, 300 or 900")
        return v

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, v: str) -> str:
        if v and (urlsplit(v).scheme not in {"smtp", "smtps"} or not urlsplit(v).hostname):
            raise ValueError("use smtp://[user:pass@]host[:port][?starttls=true] or smtps://host[:port]")
        return v
    # --- durable spine and planner (issue 20) -----------------------------------------------
    dbos_database_url: str = Field(
        "",
        description="DBOS system database (workflow state). Empty = the PostgreSQL database of VSM_DATABASE_URL "
        "(schema dbos), or sqlite:///<home>/dbos.sqlite on SQLite. postgresql://… or sqlite:///path.",
    )
    dbos_executor_id: str = Field(
        "", max_length=200,
        description="Executor id of this process in the DBOS system database; unique per process. "
        "Empty = 'local' on SQLite, generated per process on PostgreSQL.",
    )
    dbos_executor_lease_s: float = Field(
        15.0, gt=0, le=3600,
        description="Seconds an executor may stay silent before another process presumes it dead and "
        "recovers its pending workflows.",
    )
    serve_queues: str = Field(
        "*",
        description="Durable queues `vsm-mcp serve` works itself: * = all, none = leave them to "
        "`vsm-mcp worker` processes, or a comma-separated list.",
    )
    plan_max_steps: int = Field(1000, ge=1, le=100_000, description="Most steps one plan may have.")
    plan_tenant_parallelism: int = Field(
        16, ge=1, le=1024, description="Plan step tool calls one tenant may have in flight at once, per process."
    )
    # --- the gate (issue 18) ----------------------------------------------------------------
    anonymous_scopes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_ANONYMOUS_SCOPES),
        description="Scopes of an anonymous caller (a loopback peer with no key and no forwarding header), "
        "comma-separated; admin scopes (*, admin, <family>, <family>:admin, <family>:*) are refused.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names clients may use besides the loopback names, comma-separated ('*' = any). "
        "Empty = loopback names only on a loopback bind, any name on a wider bind.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins (scheme://host[:port]) allowed to call the gateway cross-origin, "
        "comma-separated. Empty = none but the gateway's own.",
    )
    tool_route_rate_per_s: float = Field(
        200.0, ge=0, description="Requests per second per caller on routes that carry tool calls (/mcp, /mcp/<server>, "
        "/sse, POST /v1/tools/<name>/call, Telegram): a flood guard; each call also spends VSM_RATE_LIMIT. 0 = off.",
    )
    tool_route_rate_burst: int = Field(400, ge=1, description="Burst of VSM_TOOL_ROUTE_RATE_PER_S per caller.")
    max_sessions_per_principal: int = Field(
        64, ge=0, description="Open MCP sessions one API key (or anonymous address) may hold; 0 = no cap.",
    )
    session_idle_s: float = Field(600.0, gt=0, description="Seconds an idle MCP session is kept before it is closed.")
    ssl_certfile: str = Field("", description="PEM certificate file: `vsm-mcp serve` speaks HTTPS (with VSM_SSL_KEYFILE).")
    ssl_keyfile: str = Field(
        "", validate_default=True, description="PEM private key file of VSM_SSL_CERTFILE."
    )

    @field_validator("anonymous_scopes", "allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, v: object) -> object:
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("anonymous_scopes")
    @classmethod
    def _no_admin_for_anonymous(cls, v: list[str]) -> list[str]:
        try:
            clean = validate_scopes(v)
        except VsmError as exc:
            raise ValueError(exc.message) from None
        admin = [s for s in clean if is_admin_scope(s)]
        if admin:
            raise ValueError(f"anonymous callers may not hold {admin[0]!r}: no admin scope, no whole family")
        return clean

    @field_validator("ssl_keyfile")
    @classmethod
    def _tls_pair(cls, v: str, info: ValidationInfo) -> str:
        cert = info.data.get("ssl_certfile", "")
        if bool(cert) != bool(v):
            raise ValueError("set both VSM_SSL_CERTFILE and VSM_SSL_KEYFILE (or neither)")
        for path in (cert, v):
            if path and not Path(path).is_file():
                raise ValueError(f"no such file: {path}")
        return v

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _check_db_url(cls, v: str) -> str:
        if not v:
            return v
        scheme = urlsplit(v).scheme
        if scheme not in {"sqlite+aiosqlite", "postgresql+asyncpg"}:
            raise ValueError(
                f"scheme {scheme or '(none)'!r} is not supported; use sqlite+aiosqlite:///path or "
                "postgresql+asyncpg://user@host:port/db"
            )
        if scheme.startswith("postgresql") and not urlsplit(v).hostname and "host=" not in v:
            raise ValueError("a PostgreSQL URL needs a host, e.g. postgresql+asyncpg://vsm_app@127.0.0.1:5432/vsm")
        return v

    @field_validator("dbos_database_url")
    @classmethod
    def _check_dbos_url(cls, v: str) -> str:
        if not v:
            return v
        scheme = urlsplit(v).scheme
        if not (scheme == "sqlite" or scheme.startswith("postgresql")):
            raise ValueError(
                f"scheme {scheme or '(none)'!r} is not supported; use sqlite:///path or postgresql://user@host:port/db"
            )
        return v

    @field_validator("otel_endpoint")
    @classmethod
    def _check_otel(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL of an OTLP/HTTP collector, e.g. http://127.0.0.1:4318")
        return v

    @field_validator("bus_url")
    @classmethod
    def _check_bus_url(cls, v: str) -> str:
        scheme = urlsplit(v).scheme
        if scheme not in {"memory", "amqp", "amqps"}:
            raise ValueError(f"scheme {scheme or '(none)'!r} is not supported; use memory:// or amqp://host:5672/")
        return v

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = default_database_url(self.home)
        if not self.migration_database_url:
            self.migration_database_url = self.database_url
        return self

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def is_loopback(self) -> bool:
        return self.host in {"127.0.0.1", "localhost", "::1"}


def default_database_url(home: Path) -> str:
    """The embedded database of a home: its SQLite file, when VSM_DATABASE_URL says nothing."""
    return f"sqlite+aiosqlite:///{(home / 'vsm.db').as_posix()}"


def sqlite_file(url: str) -> str:
    """The file a SQLite URL names; empty for an in-memory one or another database."""
    if not url.startswith("sqlite"):
        return ""
    path = url.split("///", 1)[-1]
    return "" if path == ":memory:" else path


def load_settings(**overrides: object) -> Settings:
    """Build Settings; a bad value raises ConfigError naming the setting and the problem, in one line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        env = f"VSM_{field.upper()}"
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {env}: {msg}") from None
