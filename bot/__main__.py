"""Command line: ``python -m bot`` (or ``horde-bot``).

::

    horde-bot [--config config.toml] [run]          start the bot (commands are NOT synced)
    horde-bot [--config config.toml] sync [--guild ID]
                                                    publish the slash commands, globally or to one guild
    horde-bot [--config config.toml] rotate-key     re-encrypt stored API keys with the newest key, bound
    horde-bot gen-key [--key-version N]             print a new entry for HORDE_BOT_SECRET_KEYS
    horde-bot playground [--port P] [--config FILE] [--speed S] [--horde-url URL [--apikey KEY]] [--open]
                                                    the real bot in the browser: no token, no secrets
    horde-bot --version

A configuration error prints one line to stderr and exits with status 2; every missing secret the
command needs is named at once, one line each, with how to get it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Final, Protocol

import aiohttp
import discord

from bot.app import HordeBot, app_version, create_bot
from bot.config import DISCORD_TOKEN_ENV_VAR, ConfigError, Settings, load_settings
from bot.crypto import ENV_VAR as SECRET_KEYS_ENV_VAR
from bot.crypto import CryptoError, generate_key_value
from bot.logging import SecretRedactor, setup_logging
from bot.storage import open_storage
from bot.storage.keys_at_rest import check_keyring, count_unbound, rotate_all

log = logging.getLogger("bot")

EXIT_CONFIG_ERROR = 2
EXIT_FAILURE = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Runnable(Protocol):
    async def start(self, token: str) -> None: ...

    async def close(self) -> None: ...


# What each command needs from the environment, and how a newcomer gets it.
SECRETS_NEEDED: Final[dict[str, tuple[str, ...]]] = {
    "run": (DISCORD_TOKEN_ENV_VAR, SECRET_KEYS_ENV_VAR),
    "sync": (DISCORD_TOKEN_ENV_VAR, SECRET_KEYS_ENV_VAR),
    "rotate-key": (SECRET_KEYS_ENV_VAR,),
}
HOW_TO_GET: Final = {
    DISCORD_TOKEN_ENV_VAR: "the bot's token, from https://discord.com/developers/applications "
    "(your application → Bot → Reset Token)",
    SECRET_KEYS_ENV_VAR: f'run `export {SECRET_KEYS_ENV_VAR}="$(horde-bot gen-key)"` once, and keep '
    "the value: it decrypts the API keys the bot stores",
}
ENVIRONMENT_HELP: Final = f"""\
environment (secrets are read from here, never from the settings file):
  {DISCORD_TOKEN_ENV_VAR:<22} the bot's token, from https://discord.com/developers/applications
  {"":<22} (your application → Bot → Reset Token). Needed by run and sync.
  {SECRET_KEYS_ENV_VAR:<22} the keys that encrypt the AI Horde API keys the bot stores: create
  {"":<22} them with `horde-bot gen-key`. Needed by run, sync and rotate-key.

`horde-bot playground` needs neither: it runs the bot in your browser against a local AI Horde.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="horde-bot",
        description="A Discord bot for the AI Horde.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {app_version()}")
    parser.add_argument("--config", default="config.toml", help="settings file (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="start the bot (the default)")
    sync = commands.add_parser("sync", help="publish the slash commands to Discord and exit")
    sync.add_argument(
        "--guild",
        type=int,
        metavar="ID",
        help="sync to this server only (instant; copies the global commands)",
    )
    commands.add_parser("rotate-key", help="re-encrypt every stored API key with the newest key and exit")
    gen_key = commands.add_parser("gen-key", help=f"print a new {SECRET_KEYS_ENV_VAR} entry and exit")
    gen_key.add_argument("--key-version", type=int, default=1, metavar="N", help="version number of the key")
    add_playground_parser(commands)
    parser.set_defaults(command="run")
    return parser


def add_playground_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    playground = commands.add_parser(
        "playground",
        help="try the real bot in your browser: no Discord token, no secrets, no kudos",
        description="Runs the real bot in a simulated Discord shown in your browser, against a "
        "local AI Horde simulator (or the AI Horde at --horde-url). Prints the page's address; "
        "Ctrl-C stops it. Needs the playground extra: pip install -e '.[playground]'",
    )
    playground.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    playground.add_argument(
        "--config",
        dest="playground_config",
        metavar="FILE",
        help="settings file to use, with its database (default: built-in settings, a temporary database)",
    )
    playground.add_argument(
        "--speed",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="seconds a simulated worker takes per image (default: %(default)s)",
    )
    playground.add_argument(
        "--horde-url",
        metavar="URL",
        help="use this AI Horde instead of the simulator, e.g. https://aihorde.net/api/",
    )
    playground.add_argument(
        "--apikey",
        metavar="KEY",
        help="with --horde-url: log 'you' in with this AI Horde key. Generations spend its REAL kudos",
    )
    playground.add_argument("--open", action="store_true", help="open the page in your web browser")


async def run_until_stopped(bot: Runnable, token: str) -> None:
    """Run the bot until it stops by itself or SIGINT/SIGTERM asks it to; it is always closed."""
    loop = asyncio.get_running_loop()
    stopping: set[asyncio.Task[None]] = set()

    def request_stop(sig: signal.Signals) -> None:
        log.info("Received %s; shutting down", sig.name)
        task = loop.create_task(bot.close())
        stopping.add(task)
        task.add_done_callback(stopping.discard)

    installed = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError):  # no loop signal handlers on Windows
            loop.add_signal_handler(sig, request_stop, sig)
            installed.append(sig)
    try:
        await bot.start(token)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await bot.close()


async def run_bot(settings: Settings, redactor: SecretRedactor) -> None:
    token = settings.require_token()
    # A wrong HORDE_BOT_SECRET_KEYS stops the start with one line, before anyone is served.
    async with open_storage(settings.database.url) as storage:
        unreadable = await check_keyring(storage, settings.require_keyring())
        unbound = await count_unbound(storage)
    if unreadable:
        log.warning("%d stored API key(s) can't be decrypted; their owners must log in again", unreadable)
    if unbound:
        log.warning(
            "%d stored API key(s) are not bound to their row yet (stored before keys were bound); "
            "run `python -m bot rotate-key` once to bind them",
            unbound,
        )
    bot = await create_bot(settings, redactor=redactor)
    await run_until_stopped(bot, token)


async def sync_commands(bot: HordeBot, guild_id: int | None) -> list[discord.app_commands.AppCommand]:
    """Publish the tree's commands: globally, or to one guild (a copy of the global commands)."""
    if guild_id is None:
        return await bot.tree.sync()
    guild = discord.Object(guild_id)
    bot.tree.copy_global_to(guild=guild)
    return await bot.tree.sync(guild=guild)


async def _sync(settings: Settings, redactor: SecretRedactor, guild_id: int | None) -> int:
    token = settings.require_token()
    bot = await create_bot(settings, redactor=redactor)
    try:
        await bot.login(token)  # HTTP only: runs setup_hook, which loads the extensions' commands
        synced = await sync_commands(bot, guild_id)
    finally:
        await bot.close()
    where = "globally" if guild_id is None else f"to guild {guild_id}"
    print(f"Synced {len(synced)} command(s) {where}: {', '.join(sorted(c.name for c in synced))}")
    return 0


async def rotate_keys(settings: Settings) -> int:
    """Re-encrypt every stored secret with the newest key; returns how many changed."""
    keyring = settings.require_keyring()
    async with open_storage(settings.database.url) as storage:
        return await rotate_all(storage, keyring)


def missing_secrets(settings: Settings, command: str) -> list[str]:
    """One line per secret ``command`` needs and the environment lacks, saying how to get it."""
    present = {
        DISCORD_TOKEN_ENV_VAR: settings.discord_token is not None,
        SECRET_KEYS_ENV_VAR: settings.secret_keys is not None,
    }
    return [
        f"environment variable {name} is not set: {HOW_TO_GET[name]}"
        for name in SECRETS_NEEDED.get(command, ())
        if not present[name]
    ]


def silence_voice_warnings() -> None:
    """The bot has no voice: discord.py's warnings that PyNaCl and davey are missing are noise."""
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    silence_voice_warnings()
    if args.command == "playground":
        from bot.playground.command import run_playground_command

        return run_playground_command(args)
    if args.command == "gen-key":
        try:
            print(generate_key_value(args.key_version))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFIG_ERROR
        return 0
    try:
        settings = load_settings(args.config)
        missing = missing_secrets(settings, args.command)
        if missing:
            for line in missing:
                print(f"error: {line}", file=sys.stderr)
            return EXIT_CONFIG_ERROR
        redactor = setup_logging(settings.bot.log_level, redactor=SecretRedactor(settings.secret_values()))
        if args.command == "sync":
            return asyncio.run(_sync(settings, redactor, args.guild))
        if args.command == "rotate-key":
            count = asyncio.run(rotate_keys(settings))
            current = settings.require_keyring().current_version
            print(f"Re-encrypted {count} stored value(s) with key version {current}, each bound to its row.")
            return 0
        asyncio.run(run_bot(settings, redactor))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except discord.LoginFailure:
        print("error: Discord rejected the token (DISCORD_TOKEN)", file=sys.stderr)
        return EXIT_FAILURE
    except aiohttp.ClientConnectionError as exc:  # Discord unreachable before the gateway retries begin
        print(f"error: cannot reach Discord: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except CryptoError as exc:  # its messages never contain key material
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
