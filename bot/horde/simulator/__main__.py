"""``python -m bot.horde.simulator`` (or ``horde-simulator``): serve a local AI Horde until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from bot.horde.simulator._server import run_simulator
from bot.horde.simulator.config import Knobs, RateLimits, SimulatorConfig, default_users, load_users_file

log = logging.getLogger("bot.horde.simulator")


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="horde-simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7001, help="0 picks a free port")
    parser.add_argument("--worker-delay", type=float, default=0.0, help="seconds before a worker takes a job")
    parser.add_argument("--speed", type=_speed, default=2.0, help="seconds per job, or a range like 1-3")
    parser.add_argument("--threads", type=int, default=2, help="pops of each kind processed at once")
    parser.add_argument(
        "--worker-speeds",
        type=lambda text: tuple(float(part) for part in text.split(",")),
        default=(),
        help="seconds a pop for each thread, like 3,5,5,12 (replaces --speed)",
    )
    parser.add_argument(
        "--speed-jitter", type=float, default=0.0, help="with --worker-speeds: ± this fraction"
    )
    parser.add_argument("--batch", type=int, default=1, help="jobs of one request a worker takes per pop")
    parser.add_argument(
        "--check-cache", type=float, default=0.0, help="seconds a check answer is kept (the real Horde: 1)"
    )
    parser.add_argument("--users-file", help="JSON list of users (alias, api_key, id, kudos, concurrency…)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=1200.0, help="request lifetime in seconds")
    parser.add_argument("--no-rate-limits", action="store_true")
    parser.add_argument("--log-level", default="INFO")
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
        rate_limits=RateLimits(enabled=not args.no_rate_limits),
    )
    users = load_users_file(args.users_file) if args.users_file else default_users()
    return SimulatorConfig(host=args.host, port=args.port, users=users, knobs=knobs, seed=args.seed)


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
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"horde-simulator: {exc}") from exc
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
