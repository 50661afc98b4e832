"""The simulator's command line, background thread, control surface, counters and settings."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from horde_simulator import (
    Fault,
    FaultPlan,
    Knobs,
    RateLimits,
    Simulator,
    SimulatorConfig,
    SimulatorThread,
    SimUser,
    load_users_file,
    run_simulator,
)
from horde_simulator.__main__ import build_parser, config_from_args

REPO = Path(__file__).resolve().parents[2]
ALICE = {"apikey": "sim-alice-key-00000001"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    knobs = Knobs(speed=0.01, rate_limits=RateLimits(enabled=False))
    async with run_simulator(SimulatorConfig(knobs=knobs)) as running:
        yield running


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_cli_serves_until_terminated(tmp_path: Path) -> None:
    port = _free_port()
    users = tmp_path / "users.json"
    users.write_text(json.dumps([{"alias": "carol", "api_key": "carol-key-000000000000", "kudos": 42}]))
    log = tmp_path / "simulator.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "horde_simulator", "--host", "127.0.0.1", "--port", str(port),
             "--speed", "0.01", "--users-file", str(users)],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}/api/"
            deadline = time.monotonic() + 20
            while True:
                try:
                    beat = _get_json(base + "v2/status/heartbeat")
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert process.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the simulator never answered"
                    time.sleep(0.1)
            assert beat["message"] == "OK"
            assert (
                _get_json(base + "v2/find_user", {"apikey": "carol-key-000000000000"})["username"]
                == "carol#1"
            )
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert f"AI Horde simulator listening on http://127.0.0.1:{port}/api/" in log.read_text()
    assert "carol-key" not in log.read_text()


def test_cli_arguments_become_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["--port", "0", "--worker-delay", "1.5", "--speed", "0.5-2", "--threads", "4", "--no-rate-limits"]
    )
    config = config_from_args(args)
    assert (config.port, config.knobs.worker_delay, config.knobs.speed, config.knobs.worker_threads) == (
        0,
        1.5,
        (0.5, 2.0),
        4,
    )
    assert config.knobs.rate_limits.enabled is False
    assert (config.knobs.worker_batch, config.knobs.check_cache) == (1, 0.0)
    like_the_fake_worker = build_parser().parse_args(["--threads", "1", "--batch", "4", "--check-cache", "1"])
    knobs = config_from_args(like_the_fake_worker).knobs
    assert (knobs.worker_threads, knobs.worker_batch, knobs.check_cache) == (1, 4, 1.0)
    assert [u.username for u in config.users] == ["alice#1", "bob#2", "poor#3"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--speed", "fast"])


def test_simulator_thread_for_synchronous_clients() -> None:
    with SimulatorThread(SimulatorConfig(knobs=Knobs(speed=0.01))) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert sim.base_url.endswith("/api/")
        assert _get_json(sim.url("v2/status/heartbeat"))["version"] == "5.1.5"
        sim.state.knobs.heartbeat_message = "DOWN"
        assert _get_json(sim.base_url + "v2/status/heartbeat")["message"] == "DOWN"
        sim.state.add_user(SimUser("dave", 40, "dave-key-0000000000000", kudos=5))
        assert _get_json(sim.url("v2/find_user"), {"apikey": "dave-key-0000000000000"})["id"] == 40
        assert sim.counters.calls("heartbeat") == 2
    with pytest.raises(RuntimeError):
        _ = sim.base_url


def test_simulator_thread_reports_start_failures() -> None:
    port = _free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        with pytest.raises(RuntimeError, match="failed to start"):
            SimulatorThread(SimulatorConfig(port=port)).start()


async def test_counters(http: aiohttp.ClientSession, sim: Simulator) -> None:
    async with http.post(sim.url("v2/generate/async"), json={"prompt": "x"}, headers=ALICE) as response:
        gen_id = (await response.json())["id"]
    for _ in range(3):
        async with http.get(sim.url(f"v2/generate/check/{gen_id}")):
            pass
    async with http.get(sim.url("v2/generate/check/other")):
        pass
    async with http.delete(sim.url(f"v2/generate/status/{gen_id}")):
        pass
    counters = sim.counters
    assert counters.calls("generate_check") == counters.total("generate_check") == 4
    assert counters.calls("generate_check", id=gen_id) == 3
    assert counters.calls("generate_delete", id=gen_id) == counters.deletes(gen_id) == 1
    assert counters.status(404) == 1
    assert counters.status(200, "generate_check") == 3
    assert counters.statuses() == {202: 1, 200: 4, 404: 1}
    async with http.get(sim.root_url + "_sim/counters") as response:
        snapshot = await response.json()
    assert snapshot["calls"]["generate_check"] == 4
    assert snapshot["calls_by_id"]["generate_check"][gen_id] == 3
    assert snapshot["statuses"]["generate_check"] == {"200": 3, "404": 1}
    assert sim.counters.calls("sim_counters") == 0  # the control surface is not counted
    async with http.post(sim.root_url + "_sim/reset") as response:
        assert response.status == 200
    assert counters.calls("generate_check") == 0
    assert counters.statuses() == {}
    assert gen_id in sim.state.requests
    async with http.post(sim.root_url + "_sim/reset", json={"requests": True}):
        pass
    assert sim.state.requests == {}


async def test_control_surface_users_and_knobs(http: aiohttp.ClientSession, sim: Simulator) -> None:
    async with http.post(
        sim.root_url + "_sim/users", json={"alias": "erin", "api_key": "erin-key", "kudos": 7}
    ) as r:
        assert (r.status, await r.json()) == (201, {"username": "erin#4", "id": 4})
    async with http.get(sim.url("v2/find_user"), headers={"apikey": "erin-key"}) as response:
        me = await response.json()
    assert (me["username"], me["kudos"]) == ("erin#4", 7.0)
    async with http.post(sim.root_url + "_sim/users", json={"alias": "x", "api_key": "erin-key"}) as response:
        assert response.status == 400
    async with http.post(sim.root_url + "_sim/users", json={"alias": "x#1", "api_key": "k"}) as response:
        assert response.status == 400

    patch = {"served_image_models": ["only-this"], "speed": [0.1, 0.2], "rate_limits": {"check": "5/second"}}
    async with http.post(sim.root_url + "_sim/config", json=patch) as response:
        knobs = (await response.json())["knobs"]
    assert knobs["served_image_models"] == ["only-this"]
    assert knobs["speed"] == [0.1, 0.2]
    assert sim.state.knobs.speed == (0.1, 0.2)
    assert sim.state.knobs.rate_limits.check == "5/second"
    for bad in (
        {"speed": "fast"},
        {"worker_threads": -1},
        {"rate_limits": {"check": "often"}},
        {"maintenance_mode": 1},
    ):
        async with http.post(sim.root_url + "_sim/config", json=bad) as response:
            assert response.status == 400, bad
    assert sim.state.knobs.worker_threads == 2  # a rejected patch changes nothing
    async with http.post(sim.root_url + "_sim/config", json={"served_image_models": None}) as response:
        assert (await response.json())["knobs"]["served_image_models"] is None


def test_settings_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="censor_probability"):
        Knobs(censor_probability=2.0)
    with pytest.raises(ValueError, match="bad rate limit"):
        RateLimits(check="ten a second")
    assert RateLimits().limit("check") is not None
    assert RateLimits(check=None).limit("check") is None
    knobs = Knobs()
    knobs.apply_patch({"served_text_models": ["a"], "fail_next_jobs": 2, "worker_delay": 1})
    assert (knobs.served_text_models, knobs.fail_next_jobs, knobs.worker_delay) == (("a",), 2, 1.0)
    users_file = tmp_path / "users.json"
    users_file.write_text(json.dumps([{"alias": "zed", "api_key": "zed-key", "id": 9, "concurrency": 3}]))
    (zed,) = load_users_file(users_file)
    assert (zed.username, zed.concurrency, zed.kudos) == ("zed#9", 3, 0.0)
    assert "zed-key" not in repr(zed)
    users_file.write_text(json.dumps([{"alias": "zed", "api_key": "k", "colour": "red"}]))
    with pytest.raises(ValueError, match="colour"):
        load_users_file(users_file)


async def test_faults_can_be_scripted_before_start(http: aiohttp.ClientSession) -> None:
    plan = FaultPlan()
    plan.script("heartbeat", Fault.http(500))
    async with run_simulator(SimulatorConfig(faults=plan)) as sim:
        assert sim.state.faults is plan
        async with http.get(sim.url("v2/status/heartbeat")) as response:
            assert response.status == 500
        async with http.get(sim.url("v2/status/heartbeat")) as response:
            assert response.status == 200


def test_fault_plan_is_deterministic() -> None:
    plan = FaultPlan()
    plan.script("generate_check", Fault.http(503), times=2)
    plan.script("generate_check", Fault.drop(), id="abc")
    rng = random.Random(1)
    assert plan.pending("generate_check") == 3
    assert [plan.draw("generate_check", "xyz", rng) for _ in range(3)] == [
        Fault.http(503),
        Fault.http(503),
        None,
    ]
    assert plan.draw("generate_status", "abc", rng) is None
    assert plan.draw("generate_check", "abc", rng) == Fault.drop()
    plan.apply_json(
        {"probabilities": [{"endpoint": "news", "kind": "delay", "seconds": 0.5, "probability": 1}]}
    )
    assert plan.draw("news", None, rng) == Fault.delay(0.5)
    with pytest.raises(ValueError, match="times"):
        plan.apply_json({"script": [{"endpoint": "news", "kind": "http", "times": 0}]})
    plan.clear()
    assert plan.to_json() == {"script": [], "probabilities": []}


def test_cli_default_port_is_not_the_real_servers_dev_port() -> None:
    assert build_parser().parse_args([]).port not in (7001, 0)


def test_cli_fault_and_mode_flags_become_knobs() -> None:
    args = build_parser().parse_args(
        [
            "--job-faults",
            "0.25",
            "--censor",
            "0.5",
            "--http-errors",
            "0.1",
            "--maintenance",
            "--log-level",
            "debug",
        ]
    )
    config = config_from_args(args)
    assert (config.knobs.job_fault_probability, config.knobs.censor_probability) == (0.25, 0.5)
    assert config.knobs.maintenance_mode is True
    assert config.faults.to_json()["probabilities"] == [
        {"endpoint": "*", "probability": 0.1, **Fault.http(503).to_json()}
    ]
    assert args.log_level == "DEBUG"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--job-faults", "2"])


def test_cli_help_explains_every_option_and_the_keys(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for option, words in (
        ("--host", "address to bind"),
        ("--seed", "seed of every random choice"),
        ("--no-rate-limits", "rate limits off"),
        ("--log-level", "log verbosity"),
    ):
        listed = text.split("\n  " + option, 1)[1].split("\n  -", 1)[0]
        assert words in " ".join(listed.split()), option
    assert "sim-alice-key-00000001" in text
    assert "0000000000" in text


def test_cli_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "horde_simulator", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("horde-simulator:")] == [
        f"horde-simulator: port {port} on 127.0.0.1 is already in use; "
        "pick another with --port (0 picks a free one)"
    ]
