#!/usr/bin/env bash
# Start a throwaway PostgreSQL for the storage tests and print the variables that point them at it.
#
#   eval "$(bash .ci/postgres.sh)"            # exports TEST_DATABASE_URL and TEST_PG_DIR
#   trap 'bash .ci/postgres.sh stop' EXIT     # stops the server and deletes its folder
#
# The server runs detached, in a temporary folder, on 127.0.0.1 with a free port, with trust
# authentication; as root it runs as the `postgres` user. Installs Debian's postgresql package when
# initdb is missing. Only the export lines go to stdout; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-start}" == stop ]]; then
    if [[ -n "${TEST_PG_DIR:-}" ]]; then
        python3 tests/pg_server.py stop "$TEST_PG_DIR" >&2
    fi
    exit 0
fi

if ! command -v initdb >/dev/null && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    echo "postgres.sh: installing PostgreSQL" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi
if [[ $(id -u) == 0 ]] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi

python3 tests/pg_server.py start
echo "postgres.sh: PostgreSQL is running" >&2
