"""``python -m horde_simulator`` (or ``horde-simulator``): serve a local AI Horde until stopped.

It accepts the API keys of its users: by default alice (sim-alice-key-00000001, 5000 kudos),
bob (sim-bob-key-0000000002, 100 kudos) and poor (sim-poor-key-000000003, 0 kudos), plus the
anonymous key 0000000000. Log the bot in with one of them (/login), or pass --users-file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import signal
from collections.abc import Sequence
from typing import Final

from horde_simulator._faults import ANY_ENDPOINT, Fault
from horde_simulator._server import run_simulator
from horde_simulator.config import Knobs, RateLimits, SimulatorConfig, default_users, load_users_file

log = logging.getLogger("horde_simulator")

# Not 7001: that is the real AI Horde server's development port, so both can run side by side.
DEFAULT_PORT: Final = 8765
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")


def _speed(text: str) -> float | tuple[float, float]:
    """``"0.5"`` or a range ``"0.5-2"`` (seconds per job)."""
    try:
        if "-" in text.strip("-"):
            low, high = (float(part) for part in text.split("-", 1))
            if not 0 <= low <= high:
                raise ValueError
            return (low, high)
        value = float(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"bad speed {text!r}: use seconds like 0.5 or a range like 0.5-2"
        ) from exc


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"bad probability {text!r}: use a number from 0 to 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="horde-simulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every knob can also change while it runs: POST /_sim/config (see docs/SIMULATOR.md).",
    )
    serve = parser.add_argument_group("where it listens")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to bind (default: {DEFAULT_PORT}; 0 picks a free one)",
    )
    workers = parser.add_argument_group("workers and queue")
    workers.add_argument(
        "--worker-delay", type=float, default=0.0, help="seconds before a worker takes a job"
    )
    workers.add_argument("--speed", type=_speed, default=2.0, help="seconds per job, or a range like 1-3")
    workers.add_argument(
        "--threads",
        type=int,
        default=2,
        help="pops of each kind processed at once; fewer makes the queue deeper, 0 holds every request",
    )
    workers.add_argument(
        "--worker-speeds",
        type=lambda text: tuple(float(part) for part in text.split(",")),
        default=(),
        help="seconds a pop for each thread, like 3,5,5,12 (replaces --speed)",
    )
    workers.add_argument(
        "--speed-jitter", type=float, default=0.0, help="with --worker-speeds: ± this fraction"
    )
    workers.add_argument("--batch", type=int, default=1, help="jobs of one request a worker takes per pop")
    workers.add_argument(
        "--check-cache", type=float, default=0.0, help="seconds a check answer is kept (the real Horde: 1)"
    )
    workers.add_argument("--lifetime", type=float, default=1200.0, help="request lifetime in seconds")
    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--job-faults", type=_probability, default=0.0, help="probability that a worker faults a job (0-1)"
    )
    faults.add_argument(
        "--censor", type=_probability, default=0.0, help="probability that an image comes back censored (0-1)"
    )
    faults.add_argument(
        "--http-errors",
        type=_probability,
        default=0.0,
        help="probability that any API call is answered 503 (0-1), to try retries",
    )
    faults.add_argument(
        "--maintenance", action="store_true", help="start in maintenance mode (refuses generations)"
    )
    others = parser.add_argument_group("others")
    others.add_argument("--users-file", help="JSON list of users (alias, api_key, id, kudos, concurrency…)")
    others.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of every random choice (ids, image seeds, durations, faults)",
    )
    others.add_argument(
        "--no-rate-limits", action="store_true", help="turn the Horde's per-key and per-IP rate limits off"
    )
    others.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="log verbosity (default: INFO)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    knobs = Knobs(
        worker_delay=args.worker_delay,
        speed=args.speed,
        worker_threads=args.threads,
        worker_speeds=args.worker_speeds,
        speed_jitter=args.speed_jitter,
        worker_batch=args.batch,
        check_cache=args.check_cache,
        request_lifetime=args.lifetime,
        job_fault_probability=args.job_faults,
        censor_probability=args.censor,
        maintenance_mode=args.maintenance,
        rate_limits=RateLimits(enabled=not args.no_rate_limits),
    )
    users = load_users_file(args.users_file) if args.users_file else default_users()
    config = SimulatorConfig(host=args.host, port=args.port, users=users, knobs=knobs, seed=args.seed)
    if args.http_errors:
        config.faults.set_probability(ANY_ENDPOINT, Fault.http(503), args.http_errors)
    return config


async def serve(config: SimulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with run_simulator(config):
        await stop.wait()
    log.info("AI Horde simulator stopped")


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"horde-simulator: {exc}") from exc
    try:
        asyncio.run(serve(config))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SystemExit(
                f"horde-simulator: port {config.port} on {config.host} is already in use; "
                "pick another with --port (0 picks a free one)"
            ) from None
        raise SystemExit(
            f"horde-simulator: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from None


if __name__ == "__main__":
    main()
