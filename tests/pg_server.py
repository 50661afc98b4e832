"""A throwaway PostgreSQL server for the tests and CI.

Its own cluster in a temporary folder, listening on 127.0.0.1 only (and a Unix socket in that folder),
trust authentication, no durability (fsync off): fast to start, gone when stopped. PostgreSQL refuses
to run as root, so as root the server runs as the ``postgres`` user (created by Debian's package).

Standard library only, so CI can run it with the system ``python3`` before any virtualenv exists::

    python3 tests/pg_server.py start       # prints: export TEST_DATABASE_URL=... TEST_PG_DIR=...
    python3 tests/pg_server.py stop DIR    # stops the server started in DIR and deletes DIR

The storage tests call :func:`start` themselves when ``TEST_DATABASE_URL`` is not set, naming
their own process as the owner: a test run killed before it could stop its server leaves it
running, and the next :func:`start` stops it (see :func:`reap_orphans`).
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

URL_ENV: Final = "TEST_DATABASE_URL"
DIR_ENV: Final = "TEST_PG_DIR"
DATABASE: Final = "bot_test"
SUPERUSER: Final = "postgres"
_DEBIAN_BIN_DIRS: Final = Path("/usr/lib/postgresql")
_PREFIX: Final = "horde-bot-pg-"
_OWNER_FILE: Final = "owner.pid"
_PROGRAMS: Final = ("initdb", "pg_ctl", "createdb")
_START_ATTEMPTS: Final = 3
_INITDB_OPTIONS: Final = ("-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
_SERVER_OPTIONS: Final = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
)


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed here, or cannot be run by this user."""


def find_bin_dir() -> Path:
    """The folder of ``initdb``, ``pg_ctl`` and ``createdb``: that of ``initdb`` on the PATH (links
    resolved: some systems link only a few of the programs into a common folder), else Debian's
    newest version."""
    on_path = shutil.which("initdb")
    found = [] if on_path is None else [Path(on_path).resolve().parent]
    found = [path for path in found if all((path / name).exists() for name in _PROGRAMS)]
    if found:
        return found[0]
    found = [path.parent for path in _DEBIAN_BIN_DIRS.glob("*/bin/initdb")]
    found = [path for path in found if all((path / name).exists() for name in _PROGRAMS)]
    if not found:
        raise PostgresUnavailable(
            "initdb was not found; install PostgreSQL (Debian: apt-get install postgresql) "
            f"or set {URL_ENV} to a database the tests may create schemas in"
        )
    return max(found, key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.name)])


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int


def _run_as() -> _RunAs | None:
    """The unprivileged user to run PostgreSQL as, when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresUnavailable(
            f"PostgreSQL refuses to run as root and there is no {SUPERUSER!r} user to run it as"
        ) from None
    return _RunAs(entry.pw_uid, entry.pw_gid)


def _run(args: list[str], *, user: _RunAs | None, cwd: Path, check: bool = True) -> int:
    result = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        user=None if user is None else user.uid,
        group=None if user is None else user.gid,
        extra_groups=None if user is None else [],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
    )
    if check and result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): {output[-2000:]}")
    return result.returncode


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ThrowawayPostgres:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def stop(self) -> None:
        stop(self.root)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans() -> list[Path]:
    """Stop and delete the servers whose owner process is gone; returns their folders.

    Only servers started with an ``owner_pid`` are considered: CI's is stopped by its trap.
    """
    reaped = []
    for root in sorted(Path(tempfile.gettempdir()).glob(f"{_PREFIX}*")):
        try:
            owner = int((root / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _alive(owner):
            stop(root)
            reaped.append(root)
    return reaped


def start(*, owner_pid: int | None = None) -> ThrowawayPostgres:
    """Create a cluster in a new temporary folder, start it and create the ``bot_test`` database.

    With ``owner_pid``, a later :func:`reap_orphans` stops the server once that process is gone.
    """
    bin_dir = find_bin_dir()
    user = _run_as()
    reap_orphans()
    root = Path(tempfile.mkdtemp(prefix=_PREFIX))
    try:
        if owner_pid is not None:
            (root / _OWNER_FILE).write_text(str(owner_pid))
        if user is not None:
            os.chown(root, user.uid, user.gid)
        data = root / "data"
        _run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, *_INITDB_OPTIONS],
            user=user,
            cwd=root,
        )
        for attempt in range(1, _START_ATTEMPTS + 1):
            # Another process may take the free port before the server binds it: try another one.
            port = _free_port()
            options = f"{_SERVER_OPTIONS} -p {port} -k {shlex.quote(str(root))}"
            try:
                pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log")]
                _run([*pg_ctl, "-w", "-t", "30", "-o", options, "start"], user=user, cwd=root)
                break
            except RuntimeError:
                if attempt == _START_ATTEMPTS:
                    raise
        _run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, DATABASE],
            user=user,
            cwd=root,
        )
    except BaseException:
        stop(root)
        raise
    return ThrowawayPostgres(root, port)


def stop(root: Path) -> None:
    """Stop the server started in ``root``, if it runs, and delete ``root``."""
    data = root / "data"
    try:
        if (data / "postmaster.pid").exists():
            user = _run_as()
            pg_ctl = [str(find_bin_dir() / "pg_ctl"), "-D", str(data)]
            try:
                _run([*pg_ctl, "-m", "fast", "-w", "stop"], user=user, cwd=root)
            except RuntimeError:
                # A stale pid file (the server died with the machine) is fine; a live server is not.
                if _run([*pg_ctl, "status"], user=user, cwd=root, check=False) == 0:
                    raise
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"] and len(argv) == 1:
        server = start()
        print(f"export {URL_ENV}={shlex.quote(server.url)}")
        print(f"export {DIR_ENV}={shlex.quote(str(server.root))}")
        return 0
    if argv[:1] == ["stop"] and len(argv) == 2:
        stop(Path(argv[1]))
        return 0
    print(f"usage: {sys.argv[0]} start | stop DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
