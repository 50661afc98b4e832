#!/usr/bin/env bash
# CI: the playground's browser tests (tests/playground), in a real headless Chromium, never skipped.
#
#   bash .ci/playground.sh            every browser test against the built-in AI Horde simulator
#   bash .ci/playground.sh real       /imagine against the real AI Horde server: needs
#                                     REAL_HORDE_KEYS=<keys.env written by ../shared/real-horde/start.sh>
#                                     (HORDE_URL, ALICE_KEY), with its fake worker running (WORKER=1)
#
# Run it with the project's virtualenv active (as .ci/run leaves it). It installs Debian's chromium
# when no Chromium is there (Playwright drives it through executable_path: nothing is downloaded,
# `playwright install` is never run) and the test extra when Playwright is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

part="${1:-simulator}"
case "$part" in
  simulator) selection=(-k "not real_ai_horde") ;;
  real)
    if [ -z "${REAL_HORDE_KEYS:-}" ] || [ ! -r "$REAL_HORDE_KEYS" ]; then
      echo "playground.sh real: REAL_HORDE_KEYS must name the real server's keys.env" >&2
      exit 2
    fi
    selection=(-k "real_ai_horde") ;;
  *) echo "usage: $0 [simulator|real]" >&2; exit 2 ;;
esac

chromium=""
for candidate in /usr/bin/chromium /usr/bin/chromium-headless-shell; do
  if [ -x "$candidate" ]; then chromium="$candidate"; break; fi
done
if [ -z "$chromium" ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  chromium=/usr/bin/chromium
fi

if ! python -c "import playwright, simcord.preview, markdown_it" 2>/dev/null; then
  python -m pip install --quiet -e '.[test]'
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# A missing browser, Playwright or real server fails these tests instead of skipping them.
PLAYGROUND_BROWSER_TESTS=required PLAYGROUND_CHROMIUM="$chromium" \
  python -m pytest -p no:cacheprovider -q -rs tests/playground/test_browser.py "${selection[@]}" | tee "$log"
if grep -Eq "[0-9]+ skipped" "$log"; then
  echo "playground.sh: browser tests were skipped; CI must run them all" >&2
  exit 1
fi
