"""``horde-bot playground``, as the command line runs it: print the address, stop on Ctrl-C.

Imported by ``bot.__main__`` only for this command; it imports SimCord only once
:func:`~bot.playground.missing_requirements` found the extra installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bot.config import ConfigError
from bot.logging import SecretRedactor, setup_logging
from bot.playground import missing_requirements

if TYPE_CHECKING:
    from bot.playground.runner import Playground

EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
INSTALL: Final = "pip install -e '.[playground]'"


def note(line: str) -> None:
    print(f"playground: {line}", file=sys.stderr, flush=True)


def run_playground_command(args: argparse.Namespace) -> int:
    missing = missing_requirements()
    if missing:
        print(
            f"error: the playground needs its extra ({', '.join(missing)} missing): {INSTALL}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if args.apikey and not args.horde_url:
        print("error: --apikey needs --horde-url (the simulator has its own demo key)", file=sys.stderr)
        return EXIT_USAGE
    from bot.playground.runner import Playground, PlaygroundError, PlaygroundOptions

    config = args.playground_config
    if config is None and args.config != "config.toml":  # `horde-bot --config FILE playground`
        config = args.config
    options = PlaygroundOptions(
        port=args.port,
        config=None if config is None else Path(config),
        speed=args.speed,
        horde_url=args.horde_url,
        apikey=args.apikey,
    )
    redactor = setup_logging("WARNING", redactor=SecretRedactor((args.apikey,) if args.apikey else ()))
    try:
        return asyncio.run(_serve(Playground(options, note=note, redactor=redactor), open_browser=args.open))
    except (PlaygroundError, ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


async def _serve(playground: Playground, *, open_browser: bool) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no loop signal handlers on Windows
            loop.add_signal_handler(sig, playground.request_stop)
    async with playground:
        print(f"Playground: {playground.url}  (Ctrl-C to stop)", flush=True)
        if open_browser:
            webbrowser.open(playground.url)
        await playground.wait_stopped()
        note("stopping: generations still running are cancelled on the AI Horde")
    return 0
