#!/usr/bin/env bash
# Start (or stop) a real AI Horde on loopback for the conformance suite, with ../shared/real-horde.
#
#   eval "$(bash .ci/real-horde.sh)"        # exports REAL_HORDE_KEYS: the keys.env of this instance
#   trap 'bash .ci/real-horde.sh stop' EXIT
#
# The instance has its own folder, PostgreSQL data directory and ports, so it never meets a
# developer's (port 7001) or another run's: set RH_DIR, RH_PGDATA, HORDE_PORT, PG_PORT,
# REDIS_PORT, REF_PORT and S3_PORT to run several side by side (stop with the same values), and
# REAL_HORDE_DIR when ../shared/real-horde is elsewhere. It starts FRESH: an empty database and
# queue, rate limits and IP whitelists reset, keys minted anew. The first start on a new machine
# installs apt packages and builds two virtualenvs (minutes); later starts take seconds.
# Only the export line goes to stdout; start.sh's log goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

shared=${REAL_HORDE_DIR:-../shared/real-horde}
export RH_DIR=${RH_DIR:-$HOME/.cache/realhorde-ci}
export RH_PGDATA=${RH_PGDATA:-/var/lib/postgresql/realhorde-ci-pg15}
export HORDE_PORT=${HORDE_PORT:-7651}
export PG_PORT=${PG_PORT:-5651}
export REDIS_PORT=${REDIS_PORT:-6651}
export REF_PORT=${REF_PORT:-7652}
export S3_PORT=${S3_PORT:-7653}

if [[ "${1:-start}" == stop ]]; then
    if [[ -x "$shared/stop.sh" ]]; then
        "$shared/stop.sh" >&2
    fi
    exit 0
fi

[[ -x "$shared/start.sh" ]] || { echo "real-horde.sh: no $shared/start.sh" >&2; exit 1; }
FRESH=1 "$shared/start.sh" >&2
printf 'export REAL_HORDE_KEYS=%q REAL_HORDE_WORKER=%q\n' "$RH_DIR/keys.env" "$(cd "$shared" && pwd)/fake_worker.py"
