"""What can be checked of the Docker image without Docker: where its database lands, the order of
its layers, its user, and that the README's Docker section publishes the commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

from bot.config import BotSettings, load_settings
from bot.storage import SQLiteURL, parse_database_url

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def last(keyword: str) -> str:
    return [rest for name, rest in instructions() if name == keyword][-1]


def test_the_database_lands_in_the_volume_at_the_documented_path() -> None:
    # The image starts with the example config (copied to /data/config.toml), from its last WORKDIR.
    settings = load_settings(ROOT / "config.example.toml", environ={})
    location = parse_database_url(settings.database.url)
    assert isinstance(location, SQLiteURL)
    assert location.path is not None
    workdir = PurePosixPath(last("WORKDIR"))
    volume = PurePosixPath(last("VOLUME").strip('[]"'))

    database = workdir / PurePosixPath(location.path.as_posix())
    assert database == volume / "bot.sqlite3"
    assert "`/data/bot.sqlite3`" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_dependencies_layer_comes_before_the_code() -> None:
    steps = instructions()
    copies = [index for index, (name, _) in enumerate(steps) if name == "COPY"]
    install = next(index for index, (name, rest) in enumerate(steps) if name == "RUN" and "-r " in rest)
    code = next(
        index for index, (name, rest) in enumerate(steps) if name == "COPY" and rest.startswith("bot ")
    )

    copied_before = [steps[index][1] for index in copies if index < install]
    assert copied_before == ["pyproject.toml ./"]  # only what lists the dependencies
    assert install < code
    assert any(name == "RUN" and "--no-deps" in rest for name, rest in steps[code:])


def test_the_dependency_list_the_image_installs_is_pyprojects(tmp_path: Path) -> None:
    run = next(rest for name, rest in instructions() if name == "RUN" and "tomllib" in rest)
    command = shlex.split(run.split(">", 1)[0])
    assert command[:2] == ["python", "-c"]
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())

    listed = subprocess.run(
        [sys.executable, "-c", command[2]], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()

    with (ROOT / "pyproject.toml").open("rb") as file:
        assert listed == tomllib.load(file)["project"]["dependencies"]


def test_the_image_runs_as_a_numeric_user_that_is_not_root() -> None:
    user = last("USER")
    assert re.fullmatch(r"\d+:\d+", user)
    uid, gid = user.split(":")
    assert int(uid) != 0
    setup = next(rest for name, rest in instructions() if name == "RUN" and "useradd" in rest)
    assert f"--uid {uid}" in setup
    assert f"--gid {gid}" in setup


def test_the_readmes_docker_section_publishes_the_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    docker = readme.split("### Docker", 1)[1].split("\n### ", 1)[0]
    commands = [line for line in docker.splitlines() if line.startswith("docker run")]

    assert any(shlex.split(line.split("#", 1)[0])[-1] == "sync" for line in commands)
    assert any(shlex.split(line)[-1] == "horde-bot" for line in commands)  # then the bot itself


def test_the_default_shutdown_deadline_fits_the_composes_stop_grace_period() -> None:
    # The whole exit holds shutdown_deadline_s (bot/app.py); Docker kills at stop_grace_period.
    grace = re.search(r"stop_grace_period:\s*(\d+)s", (ROOT / "docker-compose.yml").read_text("utf-8"))
    assert grace is not None
    example = tomllib.loads((ROOT / "config.example.toml").read_text("utf-8"))
    for deadline in (BotSettings().shutdown_deadline_s, example["bot"]["shutdown_deadline_s"]):
        assert deadline + 5 <= int(grace.group(1)), deadline  # 5 s for the interpreter's own exit
