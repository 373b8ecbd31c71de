#!/bin/sh
# The container image's install, start and health commands, one copy for both worlds: the
# Dockerfile runs exactly these (it copies this file in), and CI runs them outside Docker
# (tests/deploy/test_image_commands.py), because no image can be built where CI runs.
#
#   image-commands.sh install      install castbridge and its locked dependencies into $CASTBRIDGE_VENV
#   image-commands.sh web          castbridge serve --no-worker (HTTP only; scale behind a load balancer)
#   image-commands.sh worker       castbridge worker (scale with `docker compose up --scale worker=N`)
#   image-commands.sh all          castbridge serve (web and worker in one process)
#   image-commands.sh healthcheck  exit 0 when /healthz answers 200 on CASTBRIDGE_PORT
# castbridge logs to stderr (so `--json` output of the CLI stays clean); the services send it
# to stdout, where a container runtime collects it.
set -eu

venv="${CASTBRIDGE_VENV:-/app/.venv}"

case "${1:-}" in
install)
    # From the lock file only (--frozen), without the dev tools, castbridge itself installed as
    # a package (--no-editable) so the final image needs no source tree.
    # castbridge is rebuilt every time: uv would otherwise reuse a cached wheel of the same version.
    UV_PROJECT_ENVIRONMENT="$venv" uv sync --frozen --no-dev --extra postgres --no-editable \
        --reinstall-package castbridge \
        --compile-bytecode
    ;;
web)
    exec "$venv/bin/castbridge" serve --no-worker 2>&1
    ;;
worker)
    exec "$venv/bin/castbridge" worker 2>&1
    ;;
all)
    exec "$venv/bin/castbridge" serve 2>&1
    ;;
healthcheck)
    exec "$venv/bin/python" -c '
import os, sys, urllib.request
port = os.environ.get("CASTBRIDGE_PORT", "8080")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except Exception:
    sys.exit(1)
'
    ;;
*)
    echo "usage: $0 install|web|worker|all|healthcheck" >&2
    exit 2
    ;;
esac
