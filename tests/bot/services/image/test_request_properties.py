"""Property tests of /imagine's options → Horde request mapping (``bot.services.image.request``).

For any values the Discord options allow (their ``Range`` bounds and choices, as declared in
``cogs/imagine/_commands.py``), ``build_request`` either returns a request whose wire body meets the
Horde's contract (``/work/shared/horde-api.md`` §1.1, re-stated here independently of the request
models) and this server's limits, or raises a :class:`UserInputError` saying what is allowed. Never
anything else. Reruns and the Edit button go through the same checks.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import PIL.Image
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import GenerationDefaults
from bot.errors import UserInputError
from bot.generation_limits import MAX_PROMPT_CHARS
from bot.horde import AlchemyAsyncRequest, ImageGenerateAsyncRequest
from bot.horde.consts import KNOWN_FACEFIXERS, KNOWN_IMAGE_SAMPLERS, KNOWN_UPSCALERS
from bot.services.alchemy.request import alchemy_choices, build_alchemy_request
from bot.services.image.aspect import AspectPreset
from bot.services.image.request import (
    MAX_SEED_LENGTH,
    MIN_DENOISING,
    ImagineOptions,
    ImagineRequest,
    build_request,
    horde_prompt,
)
from bot.services.image.rerun import edited_request, rerun_request, same_seed_reruns
from bot.services.image.source import SOURCE_IMAGE_MAX_PIXELS, prepare_source_image
from bot.services.styles import AppliedStyle, image_style_prompt

T = TypeVar("T")
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GENEROUS = GenerationDefaults()
STRICT = GenerationDefaults(
    max_steps=20, max_pixels=512 * 512, max_n=2, steps=20, width=512, height=512, n=1, negative_prompt="ugly"
)

# The wire contract, from horde-api.md §1.1 (not from the request models under test).
SAMPLERS = {
    "k_lms", "k_heun", "k_euler", "k_euler_a", "k_dpm_2", "k_dpm_2_a", "k_dpm_fast", "k_dpm_adaptive",
    "k_dpmpp_2s_a", "k_dpmpp_2m", "dpmsolver", "k_dpmpp_sde", "DDIM", "lcm",
}  # fmt: skip
UPSCALERS = {
    "RealESRGAN_x4plus",
    "RealESRGAN_x2plus",
    "RealESRGAN_x4plus_anime_6B",
    "NMKD_Siax",
    "4x_AnimeSharp",
}

# Every line of a refusal says what is allowed: a bound, a choice, or what to do instead.
ALLOWED_WORDING = re.compile(
    r"must|may|at most|between|Choose|choose|needs|only applies|can't|isn't|either", re.IGNORECASE
)

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=200)
_prompts = st.one_of(
    _text,
    st.just(" "),
    st.text(alphabet=" \u200b\u200d\ufeff\t", min_size=1, max_size=20),  # blank or zero-width only
    st.builds(
        lambda word, times: (word + " ") * times, st.sampled_from(["a", "fox"]), st.integers(1, 3000)
    ).map(lambda text: text[:MAX_PROMPT_CHARS]),
)
_networks = st.one_of(
    st.none(),
    _text.map(lambda text: text[:1000]),
    st.lists(
        st.tuples(
            st.text(alphabet="abcxyz:0123456789", min_size=0, max_size=12),
            st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.just("x")),
        ),
        max_size=25,
    ).map(lambda items: ", ".join(name if s is None else f"{name}:{s}" for name, s in items) or "a"),
)


# A style is anyone's input on the Horde: any template, models and params, of any type.
_style_values = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 5000), st.floats(allow_nan=True), st.text(max_size=20),
    st.sampled_from(list(KNOWN_IMAGE_SAMPLERS)), st.lists(st.integers(0, 3), max_size=3),
)  # fmt: skip
_any_params = st.dictionaries(
    st.sampled_from(
        ["steps", "cfg_scale", "sampler_name", "width", "height", "karras", "hires_fix", "tiling",
         "clip_skip", "n", "seed", "seed_variation", "loras", "post_processing", "denoising_strength",
         "facefixer_strength", "hires_fix_denoising_strength", "unknown_key"]
    ),
    _style_values,
    max_size=10,
)  # fmt: skip
# Styles as the popular ones are: every usual param set, to values the Horde takes.
_usual_params = st.fixed_dictionaries(
    {},
    optional={
        "steps": st.integers(1, 60), "cfg_scale": st.floats(1, 15).map(lambda v: round(v, 1)),
        "sampler_name": st.sampled_from(list(KNOWN_IMAGE_SAMPLERS)).map(str),
        "width": st.sampled_from([512, 768, 1024]), "height": st.sampled_from([512, 768, 1024]),
        "karras": st.booleans(), "hires_fix": st.booleans(), "tiling": st.booleans(),
        "clip_skip": st.integers(1, 12),
    },
)  # fmt: skip
_styles = st.builds(
    AppliedStyle,
    name=st.text(min_size=1, max_size=100),
    prompt=st.one_of(
        st.just("{p}{np}"),
        st.text(alphabet="{}pn ###ab", max_size=40),
        st.text(max_size=200).map(lambda text: text + " {p} {np}"),
    ),
    models=st.lists(st.text(max_size=100), max_size=3).map(tuple),
    params=st.one_of(_any_params, _usual_params),
)


@st.composite
def imagine_options(draw: st.DrawFn) -> tuple[ImagineOptions, bool]:
    """Options as Discord would deliver them, and whether a source image is attached."""
    optional: Any = lambda strategy: draw(st.one_of(st.none(), strategy))  # noqa: E731
    use_aspect = draw(st.booleans())
    options = ImagineOptions(
        prompt=draw(_prompts),
        negative_prompt=optional(_prompts),
        model=optional(st.text(min_size=1, max_size=100)),
        sampler=optional(st.sampled_from(list(KNOWN_IMAGE_SAMPLERS))),
        steps=optional(st.integers(1, 500)),
        cfg_scale=optional(st.floats(0.0, 100.0)),
        width=optional(st.integers(64, 3072)),
        height=optional(st.integers(64, 3072)),
        aspect=draw(st.sampled_from(list(AspectPreset))) if use_aspect else None,
        seed=optional(st.text(min_size=1, max_size=MAX_SEED_LENGTH)),
        n=optional(st.integers(1, 20)),
        karras=optional(st.booleans()),
        hires_fix=optional(st.booleans()),
        upscaler=optional(st.sampled_from(list(KNOWN_UPSCALERS))),
        facefixer=optional(st.sampled_from(list(KNOWN_FACEFIXERS))),
        loras=draw(_networks),
        tis=draw(_networks),
        tiling=optional(st.booleans()),
        denoising_strength=optional(st.floats(MIN_DENOISING, 1.0)),
        # The Advanced form reads whole numbers of any size; the builder checks the bounds.
        clip_skip=optional(st.integers(-3, 20)),
        seed_variation=optional(st.integers(-3, 1200)),
        shared=optional(st.booleans()),
        style=optional(_styles),
    )
    return options, draw(st.booleans())


def assert_meets_the_wire_contract(built: ImagineRequest, defaults: GenerationDefaults) -> None:
    body = built.request.to_wire().json
    assert isinstance(body, dict)
    assert isinstance(body["prompt"], str)
    assert body["prompt"].strip()
    assert len(body["prompt"].split()) <= 7500
    [model] = body["models"]
    assert model.strip()
    params = body["params"]
    assert 1 <= params["n"] <= min(20, defaults.max_n)
    assert 1 <= params["steps"] <= min(500, defaults.max_steps)
    for side in ("width", "height"):
        assert 64 <= params[side] <= 3072, params
        assert params[side] % 64 == 0, params
    assert params["width"] * params["height"] <= defaults.max_pixels
    assert params["sampler_name"] in SAMPLERS
    cfg = params["cfg_scale"]
    assert 0 <= cfg <= 100
    assert round(cfg, 2) == cfg
    assert isinstance(params.get("seed", ""), str)
    if "denoising_strength" in params:
        assert 0.01 <= params["denoising_strength"] <= 1
    processors = params.get("post_processing", [])
    assert len(processors) == len(set(processors))
    assert sum(p in UPSCALERS for p in processors) <= 1
    assert len(params.get("loras", [])) <= 5
    assert all(1 <= len(lora["name"]) <= 255 for lora in params.get("loras", []))
    assert all(-5 <= lora["model"] <= 5 for lora in params.get("loras", []))
    assert len(params.get("tis", [])) <= 20
    assert all(ti["name"] for ti in params.get("tis", []))
    assert all(-5 <= ti["strength"] <= 5 for ti in params.get("tis", []))
    assert body["censor_nsfw"] is not body["nsfw"]
    assert 1 <= params.get("clip_skip", 1) <= 12
    assert 1 <= params.get("seed_variation", 1) <= 1000
    assert body.get("shared", False) is built.params.shared
    # A style is applied by the bot (the Horde's `style` would replace what the member set).
    assert "style" not in body
    styled = built.params.style
    expected = horde_prompt(built.params.prompt, built.params.negative_prompt)
    assert body["prompt"] == (expected if styled is None else image_style_prompt(styled.prompt, expected))
    # What is sent reads back as the same request.
    assert ImageGenerateAsyncRequest.model_validate(body).to_wire().json == body


def attempt(build: Callable[[], T]) -> T | UserInputError:
    """What ``build`` returns, or the :class:`UserInputError` it raised; any other error propagates."""
    try:
        return build()
    except UserInputError as error:
        return error


def assert_says_what_is_allowed(error: UserInputError) -> None:
    message = error.user_message
    assert message.strip()
    assert len(message) < 2000  # never the user's 6000 characters echoed back
    for line in message.splitlines():
        assert ALLOWED_WORDING.search(line), line


@PROPERTY_SETTINGS
@given(drawn=imagine_options(), defaults=st.sampled_from([GENEROUS, STRICT]), nsfw=st.booleans())
def test_any_options_give_a_valid_request_or_say_what_is_allowed(
    drawn: tuple[ImagineOptions, bool], defaults: GenerationDefaults, nsfw: bool
) -> None:
    options, attached = drawn
    built = attempt(
        lambda: build_request(options, defaults, allow_nsfw=nsfw, source_image="a.png" if attached else None)
    )
    if isinstance(built, UserInputError):
        assert_says_what_is_allowed(built)
        return
    assert_meets_the_wire_contract(built, defaults)
    assert built.params.nsfw is nsfw
    assert built.params.source_image == ("a.png" if attached else None)
    # What the member set explicitly is what is sent, whatever the style says.
    sent = built.request.to_wire().json
    assert isinstance(sent, dict)
    params = sent["params"]
    typed = {
        "steps": options.steps, "cfg_scale": options.cfg_scale, "sampler_name": options.sampler,
        "karras": options.karras, "hires_fix": options.hires_fix, "tiling": options.tiling,
        "clip_skip": options.clip_skip, "seed_variation": options.seed_variation, "n": options.n,
    }  # fmt: skip
    for name, value in typed.items():
        if value is not None:
            assert params[name] == value, name
    if options.aspect is None:
        for side in ("width", "height"):
            if getattr(options, side) is not None:
                assert params[side] == getattr(options, side)
    if options.model is not None:
        assert sent["models"] == [options.model.strip()]


@PROPERTY_SETTINGS
@given(drawn=imagine_options(), seed=st.one_of(st.none(), st.text(min_size=1, max_size=MAX_SEED_LENGTH)))
def test_a_rerun_of_any_accepted_request_is_still_valid(
    drawn: tuple[ImagineOptions, bool], seed: str | None
) -> None:
    options, _ = drawn
    built = attempt(lambda: build_request(options, GENEROUS, allow_nsfw=False))
    if isinstance(built, UserInputError):
        return
    request_json = json.dumps(built.request.to_wire().json)
    rerun = rerun_request(request_json, built.params_json, seed=seed, allow_nsfw=True)
    assert_meets_the_wire_contract(rerun, GENEROUS)
    assert rerun.request.params is not None
    assert rerun.request.params.seed == seed


@PROPERTY_SETTINGS
@given(
    drawn=imagine_options(),
    seeds=st.lists(st.integers(0, 2**32 - 1).map(str), min_size=0, max_size=20),
)
def test_same_seed_of_any_accepted_request_makes_each_image_with_its_seed(
    drawn: tuple[ImagineOptions, bool], seeds: list[str]
) -> None:
    options, _ = drawn
    built = attempt(lambda: build_request(options, GENEROUS, allow_nsfw=False))
    if isinstance(built, UserInputError):
        return
    shown = seeds[: built.params.n]
    result = json.dumps({"images": [{"seed": seed, "index": index} for index, seed in enumerate(shown)]})
    reruns = same_seed_reruns(
        json.dumps(built.request.to_wire().json), built.params_json, result, allow_nsfw=False
    )
    for rerun in reruns:
        assert_meets_the_wire_contract(rerun, GENEROUS)
    made = [(rerun.request.params.seed, rerun.request.params.n) for rerun in reruns if rerun.request.params]
    if built.params.seed is not None:
        assert made == [(built.params.seed, built.params.n)]
    elif len(set(shown)) > 1:
        assert made == [(seed, 1) for seed in shown]  # the Horde gives one request one seed
    else:
        assert made == [(shown[0] if shown else None, built.params.n)]


@PROPERTY_SETTINGS
@given(prompt=_prompts, negative=st.one_of(st.just(""), _prompts))
def test_the_edit_button_accepts_any_prompt_or_says_what_is_allowed(prompt: str, negative: str) -> None:
    built = build_request(ImagineOptions(prompt="a fox"), GENEROUS, allow_nsfw=False)
    request_json = json.dumps(built.request.to_wire().json)
    edited = attempt(
        lambda: edited_request(
            request_json, built.params_json, prompt=prompt, negative_prompt=negative, allow_nsfw=False
        )
    )
    if isinstance(edited, UserInputError):
        assert_says_what_is_allowed(edited)
        return
    assert_meets_the_wire_contract(edited, GENEROUS)


@pytest.mark.parametrize("prompt", [" ", "\u200b", "\u200b\u200d \ufeff"])
def test_a_prompt_of_only_blanks_or_zero_width_characters_is_refused(prompt: str) -> None:
    with pytest.raises(UserInputError) as refused:
        build_request(ImagineOptions(prompt=prompt), GENEROUS, allow_nsfw=False)
    assert refused.value.user_message.startswith("The prompt must not be empty")


# -- source images and /alchemy --------------------------------------------------------------------


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (width, height), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


_VALID_PNG = _png(64, 48)
_files = st.one_of(
    st.binary(max_size=2048),
    st.integers(0, len(_VALID_PNG)).map(lambda cut: _VALID_PNG[:cut]),  # truncated anywhere
    st.tuples(st.integers(0, len(_VALID_PNG) - 1), st.integers(0, 255)).map(  # one byte corrupted
        lambda spot: _VALID_PNG[: spot[0]] + bytes([spot[1]]) + _VALID_PNG[spot[0] + 1 :]
    ),
)


@settings(max_examples=200, deadline=None)
@given(data=_files)
def test_any_uploaded_bytes_become_a_source_image_or_a_clear_refusal(data: bytes) -> None:
    source = attempt(lambda: prepare_source_image("upload.png", data))
    if isinstance(source, UserInputError):
        assert source.user_message in {
            "“upload.png” can't be read as an image.",
            f"“upload.png” is too large; source images may have at most {SOURCE_IMAGE_MAX_PIXELS:,} "
            "pixels (3072×3072).",
        }
        return
    with PIL.Image.open(io.BytesIO(base64.b64decode(source.webp_base64))) as decoded:
        assert decoded.format == "WEBP"
        assert decoded.size == (source.width, source.height)


@settings(max_examples=50, deadline=None)
@given(form=st.one_of(st.sampled_from([form for _, form in alchemy_choices()]), st.text(max_size=30)))
def test_any_alchemy_operation_gives_a_valid_request_or_says_it_is_unknown(form: str) -> None:
    source = prepare_source_image("cat.png", _VALID_PNG)
    request = attempt(lambda: build_alchemy_request(form, source))
    if isinstance(request, UserInputError):
        assert request.user_message == f"“{form}” isn't an operation I know."
        return
    body = request.to_wire().json
    assert isinstance(body, dict)
    assert body["forms"] == [{"name": form}]
    assert body["source_image"] == source.webp_base64
    assert AlchemyAsyncRequest.model_validate(body).to_wire().json == body
