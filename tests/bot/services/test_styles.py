"""Horde styles (``bot.services.styles``) against the simulator: the cached list, finding a style by
name (from the list, else asked by name), and the Horde's template rules."""

from __future__ import annotations

import pytest

from bot.errors import UserInputError
from bot.horde import AIHordeAPIAsyncClientSession, AIHordeAPIAsyncSimpleClient
from bot.services.styles import LIST_WAIT_S, StylesCache, image_style_prompt, text_style_prompt
from horde_simulator import Fault, Simulator
from horde_simulator._records import SimStyle


async def test_finding_styles_by_name_uses_the_cached_list_then_asks_by_name(horde_sim: Simulator) -> None:
    # A style the listed pages leave out (here: not public) is still found by its exact name.
    horde_sim.state.styles.append(
        SimStyle(
            "rare-style-id", "image", "rare-style", "", "{p}, rare", {"steps": 9}, ["Deliberate"], [],
            "bob#2", 0.0, public=False,
        )
    )  # fmt: skip
    async with AIHordeAPIAsyncClientSession(base_url=horde_sim.base_url) as session:
        cache = StylesCache(AIHordeAPIAsyncSimpleClient(session), ttl_s=60)
        sketch = await cache.find("image", "SIM-Sketch")  # any case
        listed = horde_sim.counters.calls("styles_image")
        rare = await cache.find("image", "rare-style")
        with pytest.raises(UserInputError) as unknown:
            await cache.find("text", "sim-sketch")  # an image style is no text style
        suggested = await cache.suggest("image", "ske")
        await cache.close()

    assert (sketch.name, sketch.models, sketch.params["width"]) == ("sim-sketch", ("Deliberate",), 768)
    assert listed == 1
    assert (rare.name, rare.prompt, rare.params) == ("rare-style", "{p}, rare", {"steps": 9})
    assert horde_sim.counters.calls("styles_image") == 1  # the list was kept
    assert unknown.value.user_message.startswith("The AI Horde has no text style called “sim-sketch”")
    assert [(choice.name, choice.value) for choice in suggested] == [
        ("sim-sketch — Deliberate", "sim-sketch")
    ]


async def test_a_slow_styles_list_is_not_waited_for_the_style_is_asked_by_name(horde_sim: Simulator) -> None:
    # The list may take pages of requests; a command must answer its interaction within 3 s.
    horde_sim.state.faults.script("styles_image", Fault.delay(LIST_WAIT_S + 2), times=1)
    async with AIHordeAPIAsyncClientSession(base_url=horde_sim.base_url) as session:
        cache = StylesCache(AIHordeAPIAsyncSimpleClient(session), ttl_s=60)
        sketch = await cache.find("image", "sim-sketch")
        asked = horde_sim.counters.calls("style_image_by_name")
        listed = await cache.suggest("image", "ske")  # the list went on loading meanwhile
        await cache.close()

    assert sketch.name == "sim-sketch"
    assert asked == 1
    assert [choice.value for choice in listed] == ["sim-sketch"]
    assert horde_sim.counters.calls("styles_image") == 1


@pytest.mark.parametrize(
    ("template", "sent", "expected"),
    [
        ("{p}, photo{np}", "a fox ### blur", "a fox , photo### blur"),
        ("{p} ### {np}, ugly", "a fox ### blur", "a fox  ###  blur, ugly"),
        ("{p}, photo{np}", "a fox", "a fox, photo"),
        ("{p} {{literal}} {x}", "a fox", "a fox {{literal}} {x}"),
        ("{np}{p}", "{np} ### n", "### n{np} "),  # one pass: the prompt's "{np}" stays
    ],
)
def test_the_image_template_is_filled_as_the_horde_does(template: str, sent: str, expected: str) -> None:
    assert image_style_prompt(template, sent) == expected


def test_the_text_template_fills_the_prompt_only() -> None:
    assert text_style_prompt("Tell a story about {p}{np}", "a fox ### x") == "Tell a story about a fox ### x"
