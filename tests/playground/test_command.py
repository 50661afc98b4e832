"""``horde-bot playground`` on the command line, before anything starts."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator

import pytest

from bot.__main__ import main
from bot.playground import REQUIRED_MODULES, missing_requirements


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_extra_is_installed_here() -> None:
    assert missing_requirements() == []


def test_without_the_extra_it_says_in_one_line_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name in {"simcord", "av"} else find_spec(name, *args),
    )
    assert missing_requirements() == ["simcord", "av"]
    assert set(missing_requirements()) <= set(REQUIRED_MODULES)

    code = main(["playground"])

    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "pip install -e '.[playground]'" in err


def test_a_key_without_a_horde_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["playground", "--apikey", "sim-alice-key-00000001"]) == 2
    err = capsys.readouterr().err
    assert "--apikey needs --horde-url" in err
    assert "sim-alice-key-00000001" not in err


def test_the_command_line_shape() -> None:
    from bot.__main__ import build_parser

    args = build_parser().parse_args(
        ["playground", "--port", "8080", "--config", "p.toml", "--speed", "0.5", "--horde-url", "u", "--open"]
    )
    assert (args.command, args.port, args.playground_config, args.speed, args.horde_url, args.open) == (
        "playground",
        8080,
        "p.toml",
        0.5,
        "u",
        True,
    )
    assert build_parser().parse_args(["playground"]).port == 0
