"""Pictures made by the simulated workers (Pillow, webp) and what alchemy reads from them."""

from __future__ import annotations

import io
import math
import random
import textwrap
import threading
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageStat

_NAMED_COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("black", (0, 0, 0)),
    ("white", (255, 255, 255)),
    ("grey", (128, 128, 128)),
    ("red", (220, 40, 40)),
    ("orange", (240, 140, 30)),
    ("yellow", (240, 220, 40)),
    ("green", (50, 170, 60)),
    ("teal", (30, 150, 150)),
    ("blue", (40, 80, 220)),
    ("purple", (140, 60, 190)),
    ("pink", (240, 130, 190)),
    ("brown", (130, 80, 40)),
    ("navy", (0, 0, 128)),
    ("indigo", (75, 0, 130)),
    ("maroon", (128, 0, 0)),
    ("olive", (128, 128, 0)),
    ("dark green", (0, 100, 0)),
)
# Shared FreeType faces are not safe to draw with from several worker threads at once.
_FONT_LOCK = threading.Lock()
CENSORED_TEXT = "This image has been censored by the AI Horde safety filter"


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Keep the aspect ratio but never exceed ``max_side`` pixels on either side."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    ratio = max_side / longest
    return max(1, round(width * ratio)), max(1, round(height * ratio))


def seed_colours(seed: int) -> tuple[tuple[int, int, int], ...]:
    rng = random.Random(seed)
    return tuple((rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(4))


def render_generation(prompt: str, seed: int, width: int, height: int, max_side: int) -> bytes:
    """A gradient whose four corner colours come from the seed, with the prompt written on it."""
    size = scaled_size(width, height, max_side)
    corners = Image.new("RGB", (2, 2))
    for position, colour in zip(((0, 0), (1, 0), (0, 1), (1, 1)), seed_colours(seed), strict=True):
        corners.putpixel(position, colour)
    image = corners.resize(size, Image.Resampling.BILINEAR)
    _write_centred(image, prompt or " ", fill=(255, 255, 255), outline=(0, 0, 0))
    return encode_webp(image)


def render_censored(width: int, height: int, max_side: int) -> bytes:
    image = Image.new("RGB", scaled_size(width, height, max_side), (0, 0, 0))
    _write_centred(image, CENSORED_TEXT, fill=(200, 200, 200), outline=None)
    return encode_webp(image)


def upscale(data: bytes, factor: int, max_side: int) -> bytes:
    image = decode(data)
    target = scaled_size(image.width * factor, image.height * factor, max_side)
    return encode_webp(image.resize(target, Image.Resampling.BICUBIC))


def encode_webp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=80, method=0)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    """Open and fully load an image; raises ``ValueError`` if the bytes are not one."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError("not a readable image") from err
    return image.convert("RGB")


def probe_size(data: bytes) -> tuple[int, int]:
    """The picture's size from its header, without decoding the pixels."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ValueError("not a readable image") from err


def dominant_colour(image: Image.Image) -> tuple[str, tuple[int, int, int]]:
    """The named colour closest to the image's mean colour."""
    mean = ImageStat.Stat(image.convert("RGB").resize((32, 32))).mean
    rgb = (round(mean[0]), round(mean[1]), round(mean[2]))
    name = min(_NAMED_COLOURS, key=lambda item: sum((a - b) ** 2 for a, b in zip(item[1], rgb, strict=True)))[
        0
    ]
    return name, rgb


def palette(image: Image.Image, colours: int = 5) -> list[str]:
    quantised = image.convert("RGB").resize((64, 64)).quantize(colors=colours)
    flat = quantised.getpalette() or []
    counts = sorted(quantised.getcolors() or [], key=lambda item: item[0], reverse=True)
    indexes = [int(str(index)) for _, index in counts[:colours]]
    return ["#{:02x}{:02x}{:02x}".format(*flat[index * 3 : index * 3 + 3]) for index in indexes]


def _write_centred(
    image: Image.Image, text: str, *, fill: tuple[int, int, int], outline: tuple[int, int, int] | None
) -> None:
    font_size = max(8, min(image.width, image.height) // 14)
    chars_per_line = max(4, int(image.width / (font_size * 0.6)) - 2)
    lines = textwrap.wrap(text, width=chars_per_line)[: max(1, image.height // (font_size + 4) - 1)]
    draw = ImageDraw.Draw(image)
    block = "\n".join(lines)
    stroke = max(1, math.ceil(font_size / 12)) if outline is not None else 0
    with _FONT_LOCK:
        font = _font(font_size)
        left, top, right, bottom = draw.multiline_textbbox((0, 0), block, font=font, align="center")
        x = (image.width - (right - left)) / 2 - left
        y = (image.height - (bottom - top)) / 2 - top
        draw.multiline_text(
            (x, y), block, font=font, fill=fill, align="center", stroke_width=stroke, stroke_fill=outline
        )


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)
