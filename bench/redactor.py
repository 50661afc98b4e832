"""The log redactor at scale: what a member's login and a log line cost with N registered keys.
Not part of the tests.

    python bench/redactor.py                 # N = 1,000, 10,000, 100,000
    python bench/redactor.py --sizes 10000

Keys are shaped like the Horde's (22 characters of letters, digits, ``-`` and ``_``). A login is
``register_secret`` of one more key; a line is a 200-character log line holding one key.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bot.logging import SecretRedactor

LINE_REPEATS = 2_000


def measure(size: int) -> dict[str, float]:
    redactor = SecretRedactor()
    started = time.perf_counter()
    for index in range(size):
        redactor.register_secret(f"memberkey-{index:012d}")
    register_all = time.perf_counter() - started

    logins = []
    for index in range(size, size + 200):
        started = time.perf_counter()
        redactor.register_secret(f"memberkey-{index:012d}")
        logins.append(time.perf_counter() - started)

    line = f"POST https://aihorde.net/api/v2/generate/async apikey=memberkey-{size // 2:012d} " + "x" * 120
    started = time.perf_counter()
    for _ in range(LINE_REPEATS):
        redactor.redact(line)
    per_line = (time.perf_counter() - started) / LINE_REPEATS
    return {
        "keys": size,
        "register_all_s": register_all,
        "login_median_us": statistics.median(logins) * 1e6,
        "line_us": per_line * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    print("| keys | register all (s) | one login (µs, median) | one 200-char line (µs) |")
    print("| ---: | ---: | ---: | ---: |")
    for size in sizes:
        row = measure(size)
        cells = (f"{size:,}", f"{row['register_all_s']:.3f}", f"{row['login_median_us']:.1f}")
        print("| " + " | ".join((*cells, f"{row['line_us']:.1f}")) + " |")


if __name__ == "__main__":
    main()
