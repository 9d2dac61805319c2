#!/bin/sh
# Container entrypoint: `serve`, `worker`, `migrate` … are vsm-mcp subcommands; anything else
# runs as given (a shell, a one-off python). With VSM_MIGRATE_ON_START=true a single-container
# deployment migrates before serving; compose runs the `migrate` service once instead.
set -eu
case "${1:-serve}" in
  serve|worker|migrate|stdio|call|server|tenants|keys|tools|policy|audit|upstreams|ingest|status|bench|connect|notify|plans|cep|states)
    if [ "${1:-serve}" = "serve" ] && [ "${VSM_MIGRATE_ON_START:-false}" = "true" ]; then
      vsm-mcp migrate
    fi
    exec vsm-mcp "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
