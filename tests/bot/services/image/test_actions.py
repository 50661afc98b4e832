"""Vary and Zoom out / Pan requests (bot.services.image.actions) and the inpainting model pick."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bot.errors import UserInputError
from bot.generation_limits import MAX_SIDE, SIDE_STEP
from bot.horde import ActiveModel
from bot.services.image.actions import Move, outpaint_layout
from bot.services.image.inpainting import NO_INPAINTING_WORKER, is_inpainting_model, pick_inpainting_model
from horde_simulator._painting import REFERENCE_INPAINTING_MODELS

SIDES = st.integers(1, 48).map(lambda n: n * SIDE_STEP)


def test_zoom_out_2x_centres_the_image_on_a_canvas_twice_as_large() -> None:
    layout = outpaint_layout(512, 512, Move.zoom_2, max_pixels=1024 * 1024)

    assert layout.canvas == (1024, 1024)
    assert layout.box == (256, 256, 768, 768)


def test_a_canvas_over_the_limit_shrinks_with_its_image() -> None:
    layout = outpaint_layout(1024, 1024, Move.zoom_2, max_pixels=1024 * 1024)

    assert layout.canvas == (1024, 1024)
    assert layout.box == (256, 256, 768, 768)  # the image now 512 wide: half the canvas still


@pytest.mark.parametrize(
    ("move", "box"),
    [
        (Move.left, (256, 0, 768, 512)),
        (Move.right, (0, 0, 512, 512)),
        (Move.up, (0, 256, 512, 768)),
        (Move.down, (0, 0, 512, 512)),
    ],
)
def test_pan_extends_the_canvas_by_half_on_one_side(move: Move, box: tuple[int, int, int, int]) -> None:
    layout = outpaint_layout(512, 512, move, max_pixels=2048 * 2048)

    assert layout.box == box
    assert layout.canvas == ((768, 512) if move in (Move.left, Move.right) else (512, 768))


@given(width=SIDES, height=SIDES, move=st.sampled_from(Move), max_side=st.integers(1, 48))
def test_every_canvas_is_within_the_hordes_bounds(width: int, height: int, move: Move, max_side: int) -> None:
    max_pixels = (max_side * SIDE_STEP) ** 2
    assume(width * height <= max_pixels)  # the job it comes from kept to the limit
    layout = outpaint_layout(width, height, move, max_pixels=max_pixels)
    canvas_w, canvas_h = layout.canvas
    left, top, right, bottom = layout.box

    assert canvas_w % SIDE_STEP == canvas_h % SIDE_STEP == 0
    assert SIDE_STEP <= canvas_w <= MAX_SIDE
    assert SIDE_STEP <= canvas_h <= MAX_SIDE
    assert canvas_w * canvas_h <= max_pixels
    assert 0 <= left < right <= canvas_w
    assert 0 <= top < bottom <= canvas_h


def _model(name: str, count: int) -> ActiveModel:
    return ActiveModel.model_validate({"name": name, "count": count, "type": "image"})


def test_the_inpainting_model_of_the_same_family_is_preferred() -> None:
    models = [
        _model("Deliberate", 5),
        _model("Realistic Vision Inpainting", 9),
        _model("Deliberate Inpainting", 1),
    ]

    assert pick_inpainting_model(models, "Deliberate") == "Deliberate Inpainting"
    assert pick_inpainting_model(models, "stable_diffusion") == "Realistic Vision Inpainting"


def test_no_served_inpainting_model_is_said_plainly() -> None:
    models = [_model("Deliberate", 5), _model("Deliberate Inpainting", 0)]

    with pytest.raises(UserInputError) as raised:
        pick_inpainting_model(models, "Deliberate")
    assert raised.value.user_message == NO_INPAINTING_WORKER


def test_the_name_rule_finds_exactly_the_references_inpainting_models() -> None:
    reference = {*REFERENCE_INPAINTING_MODELS, "Deliberate", "stable_diffusion", "AlbedoBase XL (SDXL)"}

    assert {name for name in reference if is_inpainting_model(name)} == REFERENCE_INPAINTING_MODELS
