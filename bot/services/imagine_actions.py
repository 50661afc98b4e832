"""The Edit button of an /imagine result: the journalled request again, with a new prompt."""

from __future__ import annotations

from pydantic import ValidationError

from bot.errors import UserInputError
from bot.horde import ImageGenerateAsyncRequest
from bot.horde.consts import MAX_PROMPT_WORDS
from bot.services.imagine import (
    ImagineParams,
    ImagineRequest,
    has_visible_text,
    horde_prompt,
    rerun_request,
)

EMPTY_PROMPT = "The prompt must not be empty."


def edited_request(
    request_json: str, params_json: str, *, prompt: str, negative_prompt: str, allow_nsfw: bool
) -> ImagineRequest:
    """Everything as journalled (a seed only if one was asked for) but the prompt and negative prompt."""
    prompt, negative_prompt = prompt.strip(), negative_prompt.strip()
    if not has_visible_text(prompt):
        raise UserInputError(EMPTY_PROMPT)
    asked_seed = ImagineParams.from_json(params_json).seed
    rerun = rerun_request(request_json, params_json, seed=asked_seed, allow_nsfw=allow_nsfw)
    fields = {name: getattr(rerun.request, name) for name in rerun.request.model_fields_set}
    fields["prompt"] = horde_prompt(prompt, negative_prompt)
    try:
        request = ImageGenerateAsyncRequest.model_validate(fields)
    except ValidationError:
        raise UserInputError(
            f"The prompt must not be empty and may have at most {MAX_PROMPT_WORDS} words."
        ) from None
    params = rerun.params.model_copy(update={"prompt": prompt, "negative_prompt": negative_prompt})
    return ImagineRequest(request=request, params=params)
