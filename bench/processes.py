"""Ending the benchmark's helper processes (standard library only)."""

from __future__ import annotations

import signal
import subprocess


def stop(process: subprocess.Popen[bytes], wait_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``wait_s`` seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
