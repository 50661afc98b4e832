"""Options → request mapping, limits and their messages, NSFW policy and source-image checks."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import PIL.Image
import pytest

from bot.config import GenerationDefaults
from bot.errors import UserInputError
from bot.horde import ImageGenerateAsyncRequest
from bot.horde.consts import KNOWN_FACEFIXERS, KNOWN_IMAGE_SAMPLERS, KNOWN_UPSCALERS
from bot.services.image.aspect import AspectPreset, aspect_dimensions
from bot.services.image.request import (
    ImagineOptions,
    ImagineParams,
    NamedStrength,
    build_request,
    parse_named_strengths,
)
from bot.services.image.rerun import rerun_request, same_seed_reruns
from bot.services.image.source import (
    SOURCE_IMAGE_MAX_PIXELS,
    SourceImage,
    check_source_attachment,
    prepare_source_image,
)
from bot.services.policy import can_manage_job
from bot.storage import JobRecord

DEFAULTS = GenerationDefaults()


def wire(request: ImageGenerateAsyncRequest) -> dict[str, object]:
    body = request.to_wire().json
    assert isinstance(body, dict)
    return body


def params_of(request: ImageGenerateAsyncRequest) -> dict[str, object]:
    params = wire(request)["params"]
    assert isinstance(params, dict)
    return params


def error_lines(options: ImagineOptions, defaults: GenerationDefaults = DEFAULTS) -> list[str]:
    with pytest.raises(UserInputError) as caught:
        build_request(options, defaults, allow_nsfw=False)
    return caught.value.user_message.splitlines()


def png_bytes(size: tuple[int, int] = (64, 48), mode: str = "RGB", color: object = (200, 10, 10)) -> bytes:
    out = io.BytesIO()
    PIL.Image.new(mode, size, color).save(out, format="PNG")  # type: ignore[arg-type]
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width``×``height``: what a decompression bomb looks like."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# -- defaults and options ------------------------------------------------------------------------


def test_the_server_defaults_fill_every_option_left_out() -> None:
    built = build_request(ImagineOptions(prompt="a red fox"), DEFAULTS, allow_nsfw=False)

    body = wire(built.request)
    assert body["prompt"] == "a red fox"
    assert body["models"] == ["stable_diffusion"]
    assert params_of(built.request) == {
        "n": 1,
        "steps": 30,
        "width": 512,
        "height": 512,
        "sampler_name": "k_euler_a",
        "cfg_scale": 7.0,
        "karras": True,
        "hires_fix": False,
        "tiling": False,
    }
    assert built.params.seed is None
    assert built.request.is_anonymous  # the job manager applies the user's key


def test_a_different_defaults_object_is_a_drop_in() -> None:
    guild_defaults = GenerationDefaults(
        model="Deliberate",
        steps=12,
        width=768,
        height=512,
        sampler=KNOWN_IMAGE_SAMPLERS.k_dpmpp_2m,
        cfg_scale=4.5,
        n=2,
        negative_prompt="blurry",
    )

    built = build_request(ImagineOptions(prompt="a fox"), guild_defaults, allow_nsfw=False)

    assert wire(built.request)["models"] == ["Deliberate"]
    assert wire(built.request)["prompt"] == "a fox ### blurry"
    params = params_of(built.request)
    assert (params["steps"], params["width"], params["height"], params["n"]) == (12, 768, 512, 2)
    assert (params["sampler_name"], params["cfg_scale"]) == ("k_dpmpp_2m", 4.5)


def test_every_option_reaches_the_request() -> None:
    options = ImagineOptions(
        prompt="  a fox  ",
        negative_prompt="ugly",
        model="AlbedoBase XL (SDXL)",
        sampler=KNOWN_IMAGE_SAMPLERS.k_heun,
        steps=40,
        cfg_scale=6.5,
        width=640,
        height=384,
        seed="1234",
        n=3,
        karras=False,
        hires_fix=True,
        upscaler=KNOWN_UPSCALERS.RealESRGAN_x2plus,
        facefixer=KNOWN_FACEFIXERS.CodeFormers,
        loras="detail:0.5",
        tis="7808",
        tiling=True,
    )

    built = build_request(options, DEFAULTS, allow_nsfw=False)

    body = wire(built.request)
    assert body["prompt"] == "a fox ### ugly"
    assert body["models"] == ["AlbedoBase XL (SDXL)"]
    assert params_of(built.request) == {
        "n": 3,
        "steps": 40,
        "width": 640,
        "height": 384,
        "sampler_name": "k_heun",
        "cfg_scale": 6.5,
        "karras": False,
        "hires_fix": True,
        "tiling": True,
        "seed": "1234",
        "post_processing": ["RealESRGAN_x2plus", "CodeFormers"],
        "loras": [{"name": "detail", "model": 0.5}],
        "tis": [{"name": "7808", "strength": 1.0, "inject_ti": "prompt"}],
    }
    assert built.params.prompt == "a fox"
    assert built.params.upscaler is KNOWN_UPSCALERS.RealESRGAN_x2plus
    assert ImagineParams.from_json(built.params_json) == built.params


def test_an_empty_seed_means_a_random_one() -> None:
    built = build_request(ImagineOptions(prompt="a fox", seed="   "), DEFAULTS, allow_nsfw=False)

    assert "seed" not in params_of(built.request)
    assert built.params.seed is None


# -- aspect presets --------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", list(AspectPreset))
def test_aspect_presets_keep_the_ratio_and_the_default_pixel_budget(preset: AspectPreset) -> None:
    budget = DEFAULTS.width * DEFAULTS.height

    width, height = aspect_dimensions(preset, budget, DEFAULTS.max_pixels)

    assert width % 64 == 0
    assert height % 64 == 0
    ratio_w, ratio_h = preset.ratio
    assert width / height == pytest.approx(ratio_w / ratio_h, rel=0.12)
    assert width * height == pytest.approx(budget, rel=0.12)


def test_aspect_presets_have_known_sizes_at_512_squared() -> None:
    sizes = {preset: aspect_dimensions(preset, 512 * 512, 1024 * 1024) for preset in AspectPreset}

    assert sizes == {
        AspectPreset.square: (512, 512),
        AspectPreset.portrait: (448, 640),
        AspectPreset.landscape: (640, 448),
        AspectPreset.wide: (704, 384),
        AspectPreset.tall: (384, 704),
    }


def test_an_aspect_preset_shrinks_to_fit_max_pixels() -> None:
    width, height = aspect_dimensions(AspectPreset.wide, 1024 * 1024, 512 * 512)

    assert width * height <= 512 * 512
    assert width % 64 == 0
    assert height % 64 == 0
    assert width > height


def test_the_aspect_option_sets_width_and_height() -> None:
    built = build_request(
        ImagineOptions(prompt="a fox", aspect=AspectPreset.tall), DEFAULTS, allow_nsfw=False
    )

    assert (params_of(built.request)["width"], params_of(built.request)["height"]) == (384, 704)


def test_an_aspect_preset_with_a_width_is_refused() -> None:
    assert error_lines(ImagineOptions(prompt="a fox", aspect=AspectPreset.wide, width=512)) == [
        "Choose either an aspect preset or a width and height, not both."
    ]


# -- LoRAs and textual inversions ---------------------------------------------------------------


def test_loras_parse_names_and_optional_strengths() -> None:
    parsed = parse_named_strengths(
        " detail , glow:0.5, 12345:-1.25, civitai:thing, :ignored:0.3x ,,", what="LoRA", limit=5
    )

    assert parsed == (
        NamedStrength(name="detail"),
        NamedStrength(name="glow", strength=0.5),
        NamedStrength(name="12345", strength=-1.25),
        NamedStrength(name="civitai:thing"),
        NamedStrength(name=":ignored:0.3x"),
    )


@pytest.mark.parametrize("text", [None, "", " , "])
def test_no_loras(text: str | None) -> None:
    assert parse_named_strengths(text, what="LoRA", limit=5) == ()


def test_a_lora_strength_out_of_range_is_refused() -> None:
    with pytest.raises(UserInputError, match=r"strength of LoRA “glow” must be between -5 and 5"):
        parse_named_strengths("glow:7", what="LoRA", limit=5)


def test_a_lora_without_a_name_is_refused() -> None:
    with pytest.raises(UserInputError, match="needs a name"):
        parse_named_strengths(":0.5", what="LoRA", limit=5)


def test_too_many_loras_and_tis_are_refused_together() -> None:
    options = ImagineOptions(
        prompt="a fox",
        loras=",".join(f"lora{i}" for i in range(6)),
        tis=",".join(f"ti{i}" for i in range(21)),
    )

    assert error_lines(options) == [
        "At most 5 LoRAs per request; you gave 6.",
        "At most 20 textual inversions per request; you gave 21.",
    ]


def test_twenty_tis_and_five_loras_are_fine() -> None:
    options = ImagineOptions(
        prompt="a fox",
        loras=",".join(f"lora{i}" for i in range(5)),
        tis=",".join(f"ti{i}" for i in range(20)),
    )

    built = build_request(options, DEFAULTS, allow_nsfw=False)

    assert len(built.params.loras) == 5
    assert len(built.params.tis) == 20


# -- bounds and their messages ---------------------------------------------------------------------


def test_a_width_off_the_grid_names_the_allowed_values() -> None:
    assert error_lines(ImagineOptions(prompt="a fox", width=100)) == [
        "Width must be a multiple of 64 between 64 and 3072."
    ]


def test_the_server_limits_name_their_values() -> None:
    defaults = GenerationDefaults(max_steps=40, max_n=2)

    lines = error_lines(ImagineOptions(prompt="a fox", steps=41, n=3), defaults)

    assert lines == ["Steps must be between 1 and 40.", "Count must be between 1 and 2."]


def test_too_many_pixels_names_the_limit() -> None:
    [line] = error_lines(ImagineOptions(prompt="a fox", width=2048, height=1024))

    assert line.startswith("Width × height may be at most 1,048,576 pixels here (e.g. 1024×1024)")


def test_the_request_models_check_what_the_server_limits_do_not() -> None:
    # Discord bounds cfg_scale to 0..100; the Horde also wants at most two decimals.
    assert error_lines(ImagineOptions(prompt="a fox", cfg_scale=7.125)) == [
        "CFG scale must be between 0 and 100, with at most 2 decimals."
    ]


def test_every_bad_field_gets_one_line() -> None:
    lines = error_lines(ImagineOptions(prompt=" ", width=100, height=65, steps=0, cfg_scale=101.0))

    assert lines == [
        "The prompt must not be empty and may have at most 7500 words.",
        "Steps must be between 1 and 50.",
        "Width must be a multiple of 64 between 64 and 3072.",
        "Height must be a multiple of 64 between 64 and 3072.",
        "CFG scale must be between 0 and 100, with at most 2 decimals.",
    ]


def test_a_too_long_seed_is_refused() -> None:
    assert error_lines(ImagineOptions(prompt="a fox", seed="x" * 257)) == [
        "The seed may have at most 256 characters."
    ]


def test_strength_without_a_source_image_is_refused() -> None:
    assert error_lines(ImagineOptions(prompt="a fox", denoising_strength=0.5)) == [
        "Strength only applies to a source image: attach one, or leave strength out."
    ]


# -- NSFW ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("allow", "nsfw", "censor"), [(True, True, False), (False, False, True)])
def test_the_nsfw_flags_on_the_wire(allow: bool, nsfw: bool, censor: bool) -> None:
    built = build_request(ImagineOptions(prompt="a fox"), DEFAULTS, allow_nsfw=allow)

    body = wire(built.request)
    assert (body["nsfw"], body["censor_nsfw"]) == (nsfw, censor)
    assert built.params.nsfw is allow


# -- source images -------------------------------------------------------------------------------


def test_a_source_image_becomes_webp_base64() -> None:
    source = prepare_source_image("cat.png", png_bytes((64, 48)))

    decoded = PIL.Image.open(io.BytesIO(base64.b64decode(source.webp_base64)))
    assert decoded.format == "WEBP"
    assert decoded.size == (64, 48) == (source.width, source.height)
    assert source.webp_base64 not in repr(source)


def test_transparency_survives_the_conversion() -> None:
    source = prepare_source_image("icon.png", png_bytes((32, 32), mode="RGBA", color=(0, 0, 0, 0)))

    decoded = PIL.Image.open(io.BytesIO(base64.b64decode(source.webp_base64)))
    assert decoded.mode == "RGBA"


def test_img2img_sends_the_source_and_its_strength() -> None:
    options = ImagineOptions(prompt="a fox", denoising_strength=0.4)
    checked = build_request(options, DEFAULTS, allow_nsfw=False, source_image="cat.png")
    assert "source_image" not in wire(checked.request)
    source = prepare_source_image("cat.png", png_bytes())

    built = checked.with_source_image(source)

    assert wire(built.request)["source_image"] == source.webp_base64
    assert params_of(built.request)["denoising_strength"] == 0.4
    assert built.params == checked.params
    assert built.params.source_image == "cat.png"
    assert source.webp_base64 not in built.params_json


def test_a_file_that_is_not_an_image_is_refused() -> None:
    with pytest.raises(UserInputError, match=r"“notes\.png” can't be read as an image"):
        prepare_source_image("notes.png", b"this is not an image at all")


def test_a_truncated_image_is_refused() -> None:
    data = png_bytes((256, 256), color=(1, 2, 3))

    with pytest.raises(UserInputError, match="can't be read as an image"):
        prepare_source_image("cut.png", data[: len(data) // 2])


def test_an_image_over_the_pixel_limit_is_refused_before_decoding() -> None:
    bomb = png_header_only(4000, 4000)
    assert len(bomb) < 200

    with pytest.raises(UserInputError, match=r"too large; source images may have at most 9,437,184 pixels"):
        prepare_source_image("bomb.png", bomb)


def test_a_decompression_bomb_is_refused_even_under_a_generous_limit() -> None:
    # Above Pillow's own bomb threshold: Image.open itself refuses it.
    bomb = png_header_only(20_000, 20_000)

    with pytest.raises(UserInputError, match="too large"):
        prepare_source_image("bomb.png", bomb, max_pixels=10**12)


def test_an_image_file_over_the_byte_limit_is_refused() -> None:
    with pytest.raises(UserInputError, match=r"is 0\.0 MB; source images may be at most 0\.0 MB"):
        prepare_source_image("big.png", png_bytes(), max_bytes=10)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/pdf"])
def test_an_attachment_of_another_type_is_refused(content_type: str | None) -> None:
    with pytest.raises(UserInputError, match="isn't an image"):
        check_source_attachment("doc", content_type, 10)


def test_an_attachment_over_the_size_limit_is_refused_without_download() -> None:
    check_source_attachment("ok.png", "image/png", 10 * 1024 * 1024)
    with pytest.raises(UserInputError, match=r"at most 10\.0 MB"):
        check_source_attachment("big.png", "image/png", 10 * 1024 * 1024 + 1)


@pytest.mark.parametrize(
    ("user_id", "manages_messages", "allowed"), [(2, False, True), (3, False, False), (3, True, True)]
)
def test_the_requester_or_a_moderator_manages_a_job(
    user_id: int, manages_messages: bool, allowed: bool
) -> None:
    job = JobRecord(
        kind="image", channel_id=1, user_id=2, key_owner="user", request_json="{}", params_json="{}"
    )

    assert can_manage_job(job, user_id, manages_messages=manages_messages) is allowed


def test_the_pixel_limit_is_the_hordes() -> None:
    assert SOURCE_IMAGE_MAX_PIXELS == 3072 * 3072


# -- reruns ----------------------------------------------------------------------------------------


def journalled(built_request: ImageGenerateAsyncRequest) -> str:
    return json.dumps(wire(built_request))


def test_a_rerun_resends_the_request_with_a_new_seed() -> None:
    source = SourceImage("cat.png", 8, 8, "UklGRg==")
    built = build_request(
        ImagineOptions(prompt="a fox", seed="42", n=2, loras="glow:0.5"),
        DEFAULTS,
        allow_nsfw=True,
        source_image="cat.png",
    ).with_source_image(source)
    assert wire(built.request)["source_image"] == "UklGRg=="

    rerun = rerun_request(journalled(built.request), built.params_json, seed=None, allow_nsfw=True)

    expected = wire(built.request)
    assert isinstance(expected["params"], dict)
    del expected["params"]["seed"]
    assert wire(rerun.request) == expected
    assert rerun.params == built.params.model_copy(update={"seed": None})


def test_a_same_seed_rerun_pins_the_seed_and_follows_the_channel_policy() -> None:
    built = build_request(ImagineOptions(prompt="a fox"), DEFAULTS, allow_nsfw=True)

    rerun = rerun_request(journalled(built.request), built.params_json, seed="987", allow_nsfw=False)

    assert params_of(rerun.request)["seed"] == "987"
    assert (wire(rerun.request)["nsfw"], wire(rerun.request)["censor_nsfw"]) == (False, True)
    assert rerun.params.seed == "987"
    assert rerun.params.nsfw is False


def test_same_seed_reproduces_the_set_image_for_image() -> None:
    def reruns(options: ImagineOptions, result: str | None) -> list[tuple[int, str | None]]:
        built = build_request(options, DEFAULTS, allow_nsfw=False)
        request_json = built.request.model_dump_json(exclude_unset=True)
        made = same_seed_reruns(request_json, built.params_json, result, allow_nsfw=False)
        for each in made:
            assert each.request.params is not None
            assert (each.request.params.n, each.request.params.seed) == (each.params.n, each.params.seed)
        return [(each.params.n, each.params.seed) for each in made]

    # Shown #1 seed 10, #2 seed 9: one request per image, each with its own seed, in that order.
    two = json.dumps({"images": [{"seed": "9", "index": 1}, {"seed": "10", "index": 0}]})
    assert reruns(ImagineOptions(prompt="a fox", n=2), two) == [(1, "10"), (1, "9")]
    # A seed that was asked for: the Horde gives every image that seed again, one request.
    assert reruns(ImagineOptions(prompt="a fox", seed="42", n=2), two) == [(2, "42")]
    same = json.dumps({"images": [{"seed": "5", "index": 0}, {"seed": "5", "index": 1}]})
    assert reruns(ImagineOptions(prompt="a fox", n=2), same) == [(2, "5")]
    assert reruns(ImagineOptions(prompt="a fox"), json.dumps({"images": []})) == [(1, None)]
    assert reruns(ImagineOptions(prompt="a fox"), None) == [(1, None)]


def test_a_per_image_rerun_drops_the_seed_variation() -> None:
    built = build_request(ImagineOptions(prompt="a fox", n=2, seed_variation=3), DEFAULTS, allow_nsfw=False)
    two = json.dumps({"images": [{"seed": "1", "index": 0}, {"seed": "4", "index": 1}]})

    made = same_seed_reruns(
        built.request.model_dump_json(exclude_unset=True), built.params_json, two, allow_nsfw=False
    )

    assert [wire(each.request)["params"].get("seed_variation") for each in made] == [None, None]
    assert [each.params.seed_variation for each in made] == [None, None]
