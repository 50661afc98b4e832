"""Running a journalled /imagine again: Rerun and Same seed (and their reactions), and Edit (the
journalled request with a new prompt)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from bot.errors import UserInputError
from bot.horde import ImageGenerateAsyncRequest
from bot.horde.consts import MAX_PROMPT_WORDS
from bot.services.formatting import has_visible_text
from bot.services.image.request import ImagineParams, ImagineRequest, styled_horde_prompt

EMPTY_PROMPT = "The prompt must not be empty."


def rerun_request(
    request_json: str,
    params_json: str,
    *,
    seed: str | None,
    allow_nsfw: bool,
    n: int | None = None,
) -> ImagineRequest:
    """The journalled request again, with ``seed`` (``None``: a new random one) and the NSFW flags of
    the channel it runs in now, and ``n`` images when given (then without seed variation).
    Everything else (including a source image) is resent as it was."""
    params = ImagineParams.from_json(params_json).model_copy(update={"seed": seed, "nsfw": allow_nsfw})
    original = ImageGenerateAsyncRequest.model_validate(json.loads(request_json))
    payload = original.params.model_dump(exclude_unset=True) if original.params is not None else {}
    payload.pop("seed", None)
    if seed is not None:
        payload["seed"] = seed
    if n is not None:
        payload["n"] = n
        payload.pop("seed_variation", None)
        params = params.model_copy(update={"n": n, "seed_variation": None})
    body = original.model_dump(exclude_unset=True)
    body.pop("proxied_account", None)  # whoever runs it again is added when it starts
    body.update(params=payload, nsfw=allow_nsfw, censor_nsfw=not allow_nsfw)
    return ImagineRequest(request=ImageGenerateAsyncRequest.model_validate(body), params=params)


def same_seed_reruns(
    request_json: str, params_json: str, result_json: str | None, *, allow_nsfw: bool
) -> list[ImagineRequest]:
    """Same seed: the requests that make the journalled set again, image for image.

    A seed that was asked for is sent again (the Horde then gives every image that seed, or the
    same progression with seed variation). Otherwise each image had its own random seed, and the
    Horde takes one seed per request (``seed`` with ``n`` gives every image the same one), so a set
    of different seeds takes one request per image, each with its seed. Without images to read
    the seeds from, the request runs again with new ones."""
    asked = ImagineParams.from_json(params_json).seed
    seeds = [asked] if asked is not None else _image_seeds(result_json)
    if len(set(seeds)) <= 1:
        seed = seeds[0] if seeds else None
        return [rerun_request(request_json, params_json, seed=seed, allow_nsfw=allow_nsfw)]
    return [rerun_request(request_json, params_json, seed=seed, allow_nsfw=allow_nsfw, n=1) for seed in seeds]


def _image_seeds(result_json: str | None) -> list[str]:
    """The journalled images' seeds, in the order they are shown."""
    result: Any = json.loads(result_json) if result_json is not None else None
    images = result.get("images") if isinstance(result, dict) else None
    if not isinstance(images, list):
        return []
    shown = sorted(
        (image for image in images if isinstance(image, dict) and image.get("seed") is not None),
        key=lambda image: int(image.get("index", 0)),
    )
    return [str(image["seed"]) for image in shown]


def edited_request(
    request_json: str, params_json: str, *, prompt: str, negative_prompt: str, allow_nsfw: bool
) -> ImagineRequest:
    """Everything as journalled (a seed only if one was asked for) but the prompt and negative prompt."""
    prompt, negative_prompt = prompt.strip(), negative_prompt.strip()
    if not has_visible_text(prompt):
        raise UserInputError(EMPTY_PROMPT)
    asked_seed = ImagineParams.from_json(params_json).seed
    rerun = rerun_request(request_json, params_json, seed=asked_seed, allow_nsfw=allow_nsfw)
    params = rerun.params.model_copy(update={"prompt": prompt, "negative_prompt": negative_prompt})
    try:
        # Through the style's template again, when the job ran with a style.
        request = rerun.request.with_fields(prompt=styled_horde_prompt(params))
    except ValidationError:
        raise UserInputError(
            f"The prompt must not be empty and may have at most {MAX_PROMPT_WORDS} words."
        ) from None
    return ImagineRequest(request=request, params=params)
