"""Every example of the horde_sdk "Getting Started" page, run against the local simulator.

The examples below are copied verbatim from the seed document; the only change made before
running them is rewriting their ``from horde_sdk… import`` lines to ``from bot.horde import``.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import PIL.Image
import pytest

from bot.horde import (
    AIHordeAPIClientSession,
    AIHordeAPIManualClient,
    AIHordeAPISimpleClient,
    ImageGenerateAsyncRequest,
    ImageGenerateAsyncResponse,
)
from horde_simulator import Knobs, SimulatorConfig, SimulatorThread

# Copied from ../shared/seed (origin in tests/fixtures/README.md).
SEED_DOCUMENT = Path(__file__).resolve().parents[1] / "fixtures" / "seed" / "horde-sdk-getting-started.txt"

SYNC_SIMPLE_IMAGE = """\
from horde_sdk import ANON_API_KEY
from horde_sdk.ai_horde_api.ai_horde_clients import AIHordeAPISimpleClient
from horde_sdk.ai_horde_api.apimodels import (
    ImageGenerateAsyncRequest,
    ImageGenerationInputPayload,
)
from horde_sdk.generation_parameters.image.consts import KNOWN_IMAGE_SAMPLERS

simple_client = AIHordeAPISimpleClient()

status_response, gen_id = simple_client.image_generate_request(
    ImageGenerateAsyncRequest(
        apikey=ANON_API_KEY,
        prompt="A cat in a hat",
        models=["Deliberate"],
        params=ImageGenerationInputPayload(
            width=512,
            height=512,
            sampler_name=KNOWN_IMAGE_SAMPLERS.k_euler,
        ),
    ),
)

for generation in status_response.generations:
    image = simple_client.download_image_from_generation(generation)
    image.save(f"{generation.id_}.webp")
"""


ASYNC_SIMPLE_IMAGE = """\
import aiohttp
from horde_sdk import ANON_API_KEY
from horde_sdk.ai_horde_api.ai_horde_clients import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
)
from horde_sdk.ai_horde_api.apimodels import (
    ImageGenerateAsyncRequest,
    ImageGenerationInputPayload,
)

async def generate_image() -> None:
    aiohttp_session = aiohttp.ClientSession()
    horde_client_session = AIHordeAPIAsyncClientSession(aiohttp_session)

    async with aiohttp_session, horde_client_session:
        simple_client = AIHordeAPIAsyncSimpleClient(
            horde_client_session=horde_client_session,
        )

        status_response, gen_id = await simple_client.image_generate_request(
            ImageGenerateAsyncRequest(
                apikey=ANON_API_KEY,
                prompt="A cat in a hat",
                models=["Deliberate"],
                params=ImageGenerationInputPayload(
                    height=512,
                    width=512,
                    n=2,
                ),
            ),
        )

        for generation in status_response.generations:
            image, image_gen_id = await simple_client.download_image_from_generation(generation)
            image.save(f"{image_gen_id}.webp")
"""


MANUAL_CLIENT = """\
import time
from horde_sdk import ANON_API_KEY, RequestErrorResponse
from horde_sdk.ai_horde_api import AIHordeAPIManualClient, download_image_from_generation
from horde_sdk.ai_horde_api.apimodels import (
    ImageGenerateAsyncRequest,
    ImageGenerateAsyncResponse,
    ImageGenerateStatusRequest,
    ImageGenerateStatusResponse,
)

manual_client = AIHordeAPIManualClient()

image_generate_async_request = ImageGenerateAsyncRequest(
    apikey=ANON_API_KEY,
    prompt="A cat in a hat",
    models=["Deliberate"],
)

response: ImageGenerateAsyncResponse | RequestErrorResponse
response = manual_client.submit_request(
    image_generate_async_request,
    image_generate_async_request.get_default_success_response_type(),
)

if isinstance(response, RequestErrorResponse):
    raise RuntimeError(f"Error: {response.message}")

# Poll until the generation is done.
while True:
    check = manual_client.get_generate_check(gen_id=response.id_)
    if check.done:
        break
    time.sleep(5)

# Retrieve the finished images.
status = manual_client.get_generate_status(gen_id=response.id_)
for generation in status.generations:
    image = download_image_from_generation(generation)
    image.save(f"{generation.id_}.webp")
"""


DRY_RUN = """\
from horde_sdk.ai_horde_api.ai_horde_clients import AIHordeAPISimpleClient
from horde_sdk.ai_horde_api.apimodels import (
    ImageGenerateAsyncRequest,
    ImageGenerationInputPayload,
)

simple_client = AIHordeAPISimpleClient()

dry_run_response = simple_client.image_generate_request_dry_run(
    ImageGenerateAsyncRequest(
        prompt="A cat in a hat",
        params=ImageGenerationInputPayload(
            height=832,
            width=832,
        ),
        models=["Deliberate"],
        dry_run=True,
    ),
)

print(f"Estimated kudos cost: {dry_run_response.kudos}")
"""


TEXT = """\
from horde_sdk.ai_horde_api.ai_horde_clients import AIHordeAPISimpleClient
from horde_sdk.ai_horde_api.apimodels import (
    ModelGenerationInputKobold,
    TextGenerateAsyncRequest,
)

simple_client = AIHordeAPISimpleClient()

status_response, gen_id = simple_client.text_generate_request(
    TextGenerateAsyncRequest(
        prompt="Once upon a time",
        models=["koboldcpp/LLaMA2-13B-Psyfighter2"],
        params=ModelGenerationInputKobold(
            max_context_length=1024,
            max_length=80,
        ),
    ),
)

for generation in status_response.generations:
    print(generation.text)
"""


ALCHEMY = """\
import asyncio
import base64
from pathlib import Path

import aiohttp
from horde_sdk import ANON_API_KEY
from horde_sdk.ai_horde_api.ai_horde_clients import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
)
from horde_sdk.ai_horde_api.apimodels import (
    AlchemyAsyncRequest,
    AlchemyAsyncRequestFormItem,
)
from horde_sdk.generation_parameters.alchemy.consts import KNOWN_ALCHEMY_TYPES

async def alchemy_example() -> None:
    source_image_base64 = base64.b64encode(Path("my_image.webp").read_bytes()).decode()

    aiohttp_session = aiohttp.ClientSession()
    horde_client_session = AIHordeAPIAsyncClientSession(aiohttp_session)
    async with aiohttp_session, horde_client_session:
        simple_client = AIHordeAPIAsyncSimpleClient(horde_client_session=horde_client_session)

        status_response, gen_id = await simple_client.alchemy_request(
            AlchemyAsyncRequest(
                apikey=ANON_API_KEY,
                forms=[
                    AlchemyAsyncRequestFormItem(name=KNOWN_ALCHEMY_TYPES.caption),
                    AlchemyAsyncRequestFormItem(name=KNOWN_ALCHEMY_TYPES.RealESRGAN_x2plus),
                ],
                source_image=source_image_base64,
            ),
        )

        for caption_result in status_response.all_caption_results:
            print(f"Caption: {caption_result.caption}")

        for upscale_result in status_response.all_upscale_results:
            upscaled_image = await simple_client.download_image_from_url(upscale_result.url)
            upscaled_image.save(f"{gen_id}_{upscale_result.upscaler_used}.webp")
"""


SESSION = """\
from horde_sdk.ai_horde_api.ai_horde_clients import AIHordeAPIClientSession

with AIHordeAPIClientSession() as horde_session:
    response = horde_session.submit_request(
        my_request,
        my_request.get_default_success_response_type(),
    )
    # If an exception is raised here, the session will attempt to
    # cancel any pending generation requests on exit.
"""


EXAMPLES = {
    "sync_simple_image": SYNC_SIMPLE_IMAGE,
    "async_simple_image": ASYNC_SIMPLE_IMAGE,
    "manual_client": MANUAL_CLIENT,
    "dry_run": DRY_RUN,
    "text": TEXT,
    "alchemy": ALCHEMY,
    "session": SESSION,
}

_SDK_IMPORT = re.compile(r"^from horde_sdk(?:\.[\w.]+)? import ", re.MULTILINE)


def with_bot_imports(source: str) -> str:
    return _SDK_IMPORT.sub("from bot.horde import ", source)


@pytest.mark.parametrize("name", EXAMPLES)
def test_only_the_import_lines_change(name: str) -> None:
    original = EXAMPLES[name].splitlines()
    rewritten = with_bot_imports(EXAMPLES[name]).splitlines()
    changed = [
        line for line in difflib.unified_diff(original, rewritten, lineterm="", n=0) if line[:1] in "+-"
    ]
    changed = [line for line in changed if not line.startswith(("+++", "---"))]
    assert changed, "every example imports from horde_sdk"
    assert all(re.match(r"[+-]from (horde_sdk|bot\.horde)[\w.]* import ", line) for line in changed), changed
    assert "horde_sdk" not in "\n".join(rewritten)


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_are_the_seed_documents(name: str) -> None:
    assert EXAMPLES[name] in SEED_DOCUMENT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorThread]:
    # The examples ask for models real workers serve; so do these simulated ones.
    knobs = Knobs(speed=0.05, advertised_text_models=("koboldcpp/LLaMA2-13B-Psyfighter2",))
    with SimulatorThread(SimulatorConfig(knobs=knobs)) as sim:
        yield sim


@pytest.fixture
def workdir(simulator: SimulatorThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AI_HORDE_URL", simulator.base_url)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_example(name: str, **given: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"seed_{name}", **given}
    exec(compile(with_bot_imports(EXAMPLES[name]), f"<seed example {name}>", "exec"), namespace)
    return namespace


def close_clients(namespace: dict[str, Any]) -> None:
    """The examples leave their sync clients open; close them rather than wait for the GC."""
    for value in namespace.values():
        if isinstance(value, AIHordeAPISimpleClient | AIHordeAPIManualClient):
            value.close()


def saved_images(directory: Path) -> list[Path]:
    images = sorted(directory.glob("*.webp"))
    for path in images:
        with PIL.Image.open(path) as image:
            assert image.format == "WEBP"
    return images


def test_sync_simple_client_example(workdir: Path, simulator: SimulatorThread) -> None:
    namespace = run_example("sync_simple_image")
    close_clients(namespace)
    gen_id = namespace["gen_id"]
    (generation,) = namespace["status_response"].generations
    assert [path.name for path in saved_images(workdir)] == [f"{generation.id_}.webp"]
    assert simulator.counters.calls("generate_status", id=gen_id) == 1
    assert simulator.counters.calls("generate_check", id=gen_id) >= 1
    assert simulator.counters.deletes(gen_id) == 0


def test_async_simple_client_example(workdir: Path, simulator: SimulatorThread) -> None:
    namespace = run_example("async_simple_image")
    asyncio.run(namespace["generate_image"]())
    assert len(saved_images(workdir)) == 2


def test_manual_client_example(
    workdir: Path, simulator: SimulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda seconds: real_sleep(min(seconds, 0.05)))
    namespace = run_example("manual_client")
    close_clients(namespace)
    gen_id = namespace["response"].id_
    assert isinstance(namespace["response"], ImageGenerateAsyncResponse)
    assert namespace["check"].done
    assert len(saved_images(workdir)) == 1
    assert simulator.counters.calls("generate_status", id=gen_id) == 1


def test_dry_run_example(
    workdir: Path, simulator: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    checks_before = simulator.counters.calls("generate_check")
    namespace = run_example("dry_run")
    close_clients(namespace)
    printed = capsys.readouterr().out
    match = re.fullmatch(r"Estimated kudos cost: (\d+(\.\d+)?)\n", printed)
    assert match is not None, printed
    assert float(match[1]) > 0
    assert simulator.counters.calls("generate_check") == checks_before


def test_text_generation_example(
    workdir: Path, simulator: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = run_example("text")
    close_clients(namespace)
    (generation,) = namespace["status_response"].generations
    assert generation.text
    assert capsys.readouterr().out == generation.text + "\n"
    assert simulator.counters.calls("text_status", id=namespace["gen_id"]) >= 1


def test_alchemy_example(
    workdir: Path, simulator: SimulatorThread, capsys: pytest.CaptureFixture[str]
) -> None:
    PIL.Image.new("RGB", (64, 48), "teal").save(workdir / "my_image.webp")
    namespace = run_example("alchemy")
    asyncio.run(namespace["alchemy_example"]())
    printed = capsys.readouterr().out
    assert printed.startswith("Caption: ")
    (upscaled,) = [path for path in saved_images(workdir) if path.name != "my_image.webp"]
    assert upscaled.name.endswith("_RealESRGAN_x2plus.webp")
    with PIL.Image.open(upscaled) as image:
        assert image.size == (128, 96)


def test_session_example_cancels_the_pending_request(workdir: Path, simulator: SimulatorThread) -> None:
    my_request = ImageGenerateAsyncRequest(prompt="A cat in a hat", models=["Deliberate"])
    namespace = run_example("session", my_request=my_request)
    session = namespace["horde_session"]
    assert isinstance(session, AIHordeAPIClientSession)
    gen_id = namespace["response"].id_
    assert simulator.counters.deletes(gen_id) == 1
    assert session.pending == ()


def test_default_success_response_type() -> None:
    assert ImageGenerateAsyncRequest.get_default_success_response_type() is ImageGenerateAsyncResponse
