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
from bot.services.image.request import ImagineParams, ImagineRequest, horde_prompt

EMPTY_PROMPT = "The prompt must not be empty."


def rerun_request(
    request_json: str,
    params_json: str,
    *,
    seed: str | None,
    allow_nsfw: bool,
) -> ImagineRequest:
    """The journalled request again, with ``seed`` (``None``: a new random one) and the NSFW flags of
    the channel it runs in now. Everything else (including a source image) is resent as it was."""
    params = ImagineParams.from_json(params_json).model_copy(update={"seed": seed, "nsfw": allow_nsfw})
    original = ImageGenerateAsyncRequest.model_validate(json.loads(request_json))
    payload = original.params.model_dump(exclude_unset=True) if original.params is not None else {}
    payload.pop("seed", None)
    if seed is not None:
        payload["seed"] = seed
    body = original.model_dump(exclude_unset=True)
    body.update(params=payload, nsfw=allow_nsfw, censor_nsfw=not allow_nsfw)
    return ImagineRequest(request=ImageGenerateAsyncRequest.model_validate(body), params=params)


def exact_seed(params_json: str, result_json: str | None) -> str | None:
    """The seed that reruns a journalled job exactly: the one asked for, else its first image's."""
    asked = ImagineParams.from_json(params_json).seed
    if asked is not None or result_json is None:
        return asked
    result: Any = json.loads(result_json)
    images = result.get("images") if isinstance(result, dict) else None
    if isinstance(images, list) and images and isinstance(images[0], dict):
        seed = images[0].get("seed")
        return str(seed) if seed is not None else None
    return None


def edited_request(
    request_json: str, params_json: str, *, prompt: str, negative_prompt: str, allow_nsfw: bool
) -> ImagineRequest:
    """Everything as journalled (a seed only if one was asked for) but the prompt and negative prompt."""
    prompt, negative_prompt = prompt.strip(), negative_prompt.strip()
    if not has_visible_text(prompt):
        raise UserInputError(EMPTY_PROMPT)
    asked_seed = ImagineParams.from_json(params_json).seed
    rerun = rerun_request(request_json, params_json, seed=asked_seed, allow_nsfw=allow_nsfw)
    try:
        request = rerun.request.with_fields(prompt=horde_prompt(prompt, negative_prompt))
    except ValidationError:
        raise UserInputError(
            f"The prompt must not be empty and may have at most {MAX_PROMPT_WORDS} words."
        ) from None
    params = rerun.params.model_copy(update={"prompt": prompt, "negative_prompt": negative_prompt})
    return ImagineRequest(request=request, params=params)
