"""The /alchemy job listener against a fake message: an upscale too large for a Discord message is
left out with a line saying so, and the rest of the result still goes out."""

from __future__ import annotations

import dataclasses

from bot.services.alchemy.listener import alchemy_listener
from bot.services.alchemy.request import AlchemyParams
from bot.services.delivery.limits import UPLOAD_BYTES
from cogs.alchemy import VIEWS
from tests.bot.services.image.test_listener import JOB, FakeMessage, FakeTarget, delivery, image, outcome

PARAMS = AlchemyParams(form="RealESRGAN_x4plus", filename="cat.png")


async def test_an_upscale_over_discords_bytes_per_message_is_said_instead_of_refused() -> None:
    message = FakeMessage()
    watcher = alchemy_listener(delivery(), FakeTarget(message), PARAMS, anonymous=False, views=VIEWS)
    too_large = dataclasses.replace(image(0), data=bytes(UPLOAD_BYTES + 1))

    await watcher.on_finished(JOB, outcome((too_large,)))

    [final] = message.edits
    assert final["attachments"] == []
    assert final["content"].endswith("so image #1 is not attached.")
    assert "✅ **Done**" in final["content"]
