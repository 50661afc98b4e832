"""Every embed, message and modal the bot builds from what members, admins and the Horde send stays
within Discord's limits, for any accepted input (issue #14: a Details embed over 6,000 characters
was refused with HTTP 400 once an admin raised max_prompt_length)."""

from __future__ import annotations

import json
from typing import Any

import discord
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.config import GenerationDefaults
from bot.horde.consts import KNOWN_IMAGE_SAMPLERS
from bot.services.alchemy.render import render_alchemy_result
from bot.services.alchemy.request import AlchemyParams
from bot.services.delivery import limits
from bot.services.delivery.limits import fit_embed, fit_fields
from bot.services.image.render import render_details, render_progress, render_result
from bot.services.image.request import ImagineParams, NamedStrength
from bot.services.jobs import DeliveredImage, JobOutcome, JobProgress
from bot.services.text.render import render_text_result
from bot.services.text.request import TextParams, TextResult
from bot.storage import JobRecord, JobState
from cogs.imagine._views import EditModal

PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
LONGEST_PROMPT = GenerationDefaults.model_fields["max_prompt_length"].metadata[-1].le  # what an admin may set
CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",))


def long_text(max_size: int) -> st.SearchStrategy[str]:
    """Any length up to ``max_size``, often the longest: a short random piece (markdown, mentions,
    emoji…) repeated, so escaping can grow it."""
    piece = st.one_of(st.text(CHARS, min_size=1, max_size=12), st.sampled_from(["*", "_~`|>", "<@1>", "é🙂"]))
    size = st.one_of(st.just(max_size), st.integers(0, max_size))
    return st.builds(lambda base, n: (base * (n // len(base) + 1))[:n], piece, size)


@st.composite
def imagine_params(draw: st.DrawFn) -> ImagineParams:
    networks = st.lists(
        st.builds(NamedStrength, name=long_text(100).filter(bool), strength=st.floats(-5, 5)), max_size=5
    )
    return ImagineParams(
        prompt=draw(long_text(LONGEST_PROMPT)),
        negative_prompt=draw(long_text(LONGEST_PROMPT)),
        model=draw(long_text(200)),
        sampler=draw(st.sampled_from(list(KNOWN_IMAGE_SAMPLERS))),
        steps=draw(st.integers(1, 500)),
        cfg_scale=draw(st.floats(0, 100)),
        width=64,
        height=64,
        seed=draw(st.none() | long_text(100)),
        n=draw(st.integers(1, 20)),
        loras=tuple(draw(networks)),
        tis=tuple(draw(networks)),
        source_image=draw(st.none() | long_text(255)),
        denoising_strength=draw(st.none() | st.floats(0, 1)),
    )


@st.composite
def outcomes(draw: st.DrawFn, n: int) -> JobOutcome:
    images = tuple(
        DeliveredImage(
            generation_id=f"g{index}",
            index=index,
            seed=draw(long_text(100)),
            model=draw(st.none() | long_text(200)),
            worker_name=draw(st.none() | long_text(100)),
            worker_id=None,
            censored=draw(st.booleans()),
            data=b"",
        )
        for index in range(draw(st.integers(0, n)))
    )
    return JobOutcome(
        state=draw(st.sampled_from([JobState.DONE, JobState.FAILED, JobState.CANCELLED])),
        images=images,
        kudos=draw(st.floats(0, 1e9)),
        workers=tuple(image.worker_name for image in images if image.worker_name),
        error=draw(st.none() | long_text(500)),
        notes=tuple(draw(st.lists(long_text(300), max_size=3))),
    )


def assert_fits(content: str | None, embed: discord.Embed | None) -> None:
    assert len(content or "") <= limits.CONTENT
    if embed is None:
        return
    data: dict[str, Any] = embed.to_dict()
    assert len(data.get("title", "")) <= limits.EMBED_TITLE
    assert len(data.get("description", "")) <= limits.EMBED_DESCRIPTION
    assert len(data.get("fields", [])) <= limits.EMBED_FIELDS
    for field in data.get("fields", []):
        assert 1 <= len(field["name"]) <= limits.EMBED_FIELD_NAME
        assert 1 <= len(field["value"]) <= limits.EMBED_FIELD_VALUE
    assert len(data.get("footer", {}).get("text", "")) <= limits.EMBED_FOOTER
    assert limits.embed_size(embed) <= limits.EMBED_TOTAL
    event(f"embed {'near' if limits.embed_size(embed) > 5000 else 'under'} the total")


@PROPERTY_SETTINGS
@given(data=st.data())
def test_the_details_embed_fits(data: st.DataObject) -> None:
    params = data.draw(imagine_params())
    outcome = data.draw(outcomes(params.n))
    job = JobRecord(
        kind="image",
        state=outcome.state,
        channel_id=1,
        user_id=1,
        key_owner="user",
        request_json="{}",
        params_json=params.to_json(),
        result_json=json.dumps(
            {"images": [image.summary() for image in outcome.images], "notes": list(outcome.notes)}
        ),
        error=outcome.error,
        kudos=outcome.kudos,
    )
    assert_fits(None, render_details(job))


@PROPERTY_SETTINGS
@given(data=st.data(), anonymous=st.booleans())
def test_the_progress_and_result_messages_fit(data: st.DataObject, anonymous: bool) -> None:
    params = data.draw(imagine_params())
    outcome = data.draw(outcomes(params.n))
    notes = data.draw(st.lists(long_text(300), max_size=3))
    result = render_result(params, outcome, anonymous=anonymous, notes=notes)
    assert_fits(result.content, result.embed)
    progress = JobProgress(
        job_id="j",
        state="queued",
        queue_position=10**9,
        wait_time=10**9,
        finished=0,
        processing=0,
        waiting=params.n,
        restarted=0,
        n=params.n,
        kudos=1e9,
        elapsed_s=1e9,
        is_possible=False,
    )
    for shown in (None, progress):
        assert_fits(render_progress(params, shown, bar_width=40, anonymous=anonymous, notes=notes), None)


@PROPERTY_SETTINGS
@given(data=st.data(), anonymous=st.booleans())
def test_the_text_and_alchemy_results_fit(data: st.DataObject, anonymous: bool) -> None:
    outcome = data.draw(outcomes(0))
    params = TextParams(
        prompt=data.draw(long_text(LONGEST_PROMPT)), continued_from=data.draw(st.none() | st.just("0" * 32))
    )
    text = TextResult(
        text=data.draw(long_text(20_000)),
        model=data.draw(st.none() | long_text(200)),
        worker_name=data.draw(st.none() | long_text(100)),
        censored=data.draw(st.booleans()),
    )
    rendered = render_text_result(params, outcome, text, anonymous=anonymous)
    assert_fits(*_as_sent(rendered.content, rendered.embed))
    tags = {"tags": [{"text": data.draw(long_text(300)), "confidence": 0.5} for _ in range(50)]}
    result_json = json.dumps(
        {
            "forms": [
                {"form": "caption", "state": "done", "result": data.draw(long_text(10_000))},
                {
                    "form": "interrogation",
                    "state": "done",
                    "result": {**tags, **{f"c{i}": tags["tags"] for i in range(30)}},
                },
            ]
        }
    )
    alchemy = AlchemyParams(form="caption", filename=data.draw(long_text(255)))
    content, embed = render_alchemy_result(
        alchemy, outcome, result_json, image_filenames=(), anonymous=anonymous
    )
    assert_fits(*_as_sent(content, embed))


def _as_sent(content: str, embed: discord.Embed | None) -> tuple[str | None, discord.Embed | None]:
    """What a job message edit sends: every one goes through ``fit_fields``."""
    fields = fit_fields({"content": content, "embed": embed})
    return fields["content"], fields["embed"]


@PROPERTY_SETTINGS
@given(prompt=long_text(LONGEST_PROMPT), negative=long_text(LONGEST_PROMPT))
def test_the_edit_modal_fits(prompt: str, negative: str) -> None:
    async def submitted(*_: Any) -> None:
        return None

    payload = EditModal(prompt, negative, submitted).to_dict()
    assert len(payload["title"]) <= 45
    for row in payload["components"]:
        for item in row["components"]:
            assert len(item["label"]) <= 45
            assert len(item.get("value") or "") <= item["max_length"] <= 4000


def test_fitting_an_embed_keeps_what_fits_as_it_is() -> None:
    embed = discord.Embed(title="t", description="d" * 5000)
    embed.add_field(name="n", value="v" * 2000)
    fit_embed(embed)
    assert embed.description == "d" * 4095 + "…"
    assert embed.fields[0].value == "v" * 1023 + "…"
    small = discord.Embed(title="t", description="short")
    assert (fit_embed(small).title, small.description, small.fields) == ("t", "short", [])


@PROPERTY_SETTINGS
@given(
    sizes=st.lists(st.integers(0, 3 * limits.UPLOAD_BYTES), max_size=14),
    more=st.lists(st.integers(0, limits.UPLOAD_BYTES), max_size=4),
)
def test_the_files_chosen_fit_a_message_and_later_files_never_change_them(
    sizes: list[int], more: list[int]
) -> None:
    chosen = limits.fit_uploads(sizes)

    assert sum(sizes[index] for index in chosen) <= limits.UPLOAD_BYTES
    assert len(chosen) <= limits.MAX_FILES
    assert chosen == sorted(chosen)
    # Nothing left out would still have fitted where it came (greedy in order).
    for index in set(range(len(sizes))) - set(chosen):
        before = [i for i in chosen if i < index]
        assert (
            len(before) == limits.MAX_FILES
            or sum(sizes[i] for i in before) + sizes[index] > limits.UPLOAD_BYTES
        )
    # A message that gains files keeps the ones it carries.
    assert limits.fit_uploads([*sizes, *more])[: len(chosen)] == chosen
