"""/alchemy's operations → requests, source image checks and result rendering."""

from __future__ import annotations

import io
import json

import PIL.Image
import pytest

from bot.errors import UserInputError
from bot.services.alchemy.render import render_alchemy_result
from bot.services.alchemy.request import AlchemyParams, alchemy_choices, build_alchemy_request
from bot.services.image.source import check_source_attachment, prepare_source_image
from bot.services.jobs import JobOutcome
from bot.storage import JobState


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    PIL.Image.new(mode, (width, height)).save(out, format="PNG")
    return out.getvalue()


def test_every_operation_fits_in_one_discord_choice_list() -> None:
    forms = [form for _, form in alchemy_choices()]
    assert forms[:3] == ["caption", "interrogation", "nsfw"]
    assert "RealESRGAN_x2plus" in forms
    assert "GFPGAN" in forms
    assert "strip_background" in forms
    assert len(forms) <= 25


def test_a_request_carries_the_webp_source() -> None:
    source = prepare_source_image("cat.png", png(64, 64))
    request = build_alchemy_request("caption", source)
    assert request.to_wire().json == {"forms": [{"name": "caption"}], "source_image": source.webp_base64}
    with pytest.raises(UserInputError):
        build_alchemy_request("paint", source)


def test_non_images_bombs_and_huge_files_are_refused() -> None:
    with pytest.raises(UserInputError, match="isn't an image"):
        check_source_attachment("a.txt", "text/plain", 10)
    with pytest.raises(UserInputError, match=r"at most 10\.0 MB"):
        check_source_attachment("a.png", "image/png", 50 * 1024 * 1024)
    with pytest.raises(UserInputError, match="too large"):
        prepare_source_image("bomb.png", png(20_000, 20_000, "1"))


def test_captions_tags_and_verdicts_are_rendered() -> None:
    outcome = JobOutcome(state=JobState.DONE, images=(), kudos=0.0, workers=(), error=None)
    params = AlchemyParams(form="interrogation", filename="cat.png")
    journal = json.dumps(
        {
            "forms": [
                {
                    "form": "interrogation",
                    "state": "done",
                    "result": {"tags": [{"text": "a", "confidence": 0.2}, {"text": "b", "confidence": 0.9}]},
                }
            ]
        }
    )
    content, embed = render_alchemy_result(params, outcome, journal, image_filenames=[], anonymous=False)
    assert "✅ **Done**" in content
    assert embed is not None
    assert embed.fields[0].value == "b (90%), a (20%)"
    nsfw = json.dumps({"forms": [{"form": "nsfw", "state": "done", "result": True}]})
    _, verdict = render_alchemy_result(
        AlchemyParams(form="nsfw", filename="x.png"), outcome, nsfw, image_filenames=[], anonymous=False
    )
    assert verdict is not None
    assert verdict.description == "🔞 Looks NSFW."
