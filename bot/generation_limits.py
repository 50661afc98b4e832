"""The bounds of what a generation may ask for, stated once for every layer that checks them.

``config.toml`` (``bot.config``), the server settings (``bot.services.settings``), the request
builders (``bot.services.image.request``, ``bot.services.text.request``) and the slash commands' option ranges
read them here, so a server can never be allowed more than a command accepts or the Horde takes.
The Horde's own bounds are its wire contract (swagger and server validation), which the request
models in ``bot.horde.apimodels`` also state for the client layer. Discord's size limits for what
the bot posts are in ``bot.services.delivery.limits``.
"""

from __future__ import annotations

from typing import Final

# -- images (the Horde's ``ModelGenerationInputStable``) ---------------------------------------------
MIN_SIDE: Final = 64
MAX_SIDE: Final = 3072
SIDE_STEP: Final = 64
"""Width and height are multiples of this from MIN_SIDE to MAX_SIDE."""
MIN_PIXELS: Final = MIN_SIDE * MIN_SIDE
MAX_PIXELS: Final = MAX_SIDE * MAX_SIDE
MAX_STEPS: Final = 500
MAX_N: Final = 20
"""Images in one request."""
MAX_CFG_SCALE: Final = 100.0

# -- text (the Horde's ``ModelPayloadRootKobold``) -----------------------------------------------------
MIN_TEXT_TOKENS: Final = 16
MAX_TEXT_TOKENS: Final = 4096
"""The Horde's bounds for a text's ``max_length``: the tokens it may write."""

# -- prompts -----------------------------------------------------------------------------------------
MAX_PROMPT_CHARS: Final = 6000
"""Discord's longest string option: no longer prompt can be typed, so no higher limit is useful.
(/write's Continue may send the Horde a longer one: the text it wrote is not typed.)"""
MIN_PROMPT_LENGTH: Final = 16
"""The least a prompt-length limit (``max_prompt_length``) may be set to."""
