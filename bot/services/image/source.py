"""Uploaded source images (/imagine's img2img, /alchemy and the image menus): checked before the
download, then decoded safely and re-encoded as the Horde wants them (base64 webp).

The size in the header is checked before any pixel is decoded, so a decompression bomb (a tiny
file that claims a huge image) is refused without being expanded. 3072² pixels is well inside the
Horde's alchemy limit (255 tiles of 512²).
"""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass
from typing import Final

import PIL.Image

from bot.errors import UserInputError
from bot.services.formatting import clip

SOURCE_IMAGE_MAX_BYTES: Final = 10 * 1024 * 1024
SOURCE_IMAGE_MAX_SIDE: Final = 3072
SOURCE_IMAGE_MAX_PIXELS: Final = SOURCE_IMAGE_MAX_SIDE * SOURCE_IMAGE_MAX_SIDE
"""The Horde refuses a base64 source image above 3072² pixels."""
SOURCE_IMAGE_WEBP_QUALITY: Final = 95


@dataclass(frozen=True, slots=True)
class SourceImage:
    """An uploaded image, checked and re-encoded as the Horde wants it (base64 webp)."""

    filename: str
    width: int
    height: int
    webp_base64: str = ""

    def __repr__(self) -> str:  # the payload is megabytes of base64
        return f"SourceImage({self.filename!r}, {self.width}×{self.height})"


def check_source_attachment(
    filename: str, content_type: str | None, size: int, *, max_bytes: int = SOURCE_IMAGE_MAX_BYTES
) -> None:
    """The checks that need no download: an image type and a size Discord already told us."""
    if content_type is None or not content_type.lower().startswith("image/"):
        raise UserInputError(f"“{clip(filename, 60)}” isn't an image. Attach a PNG, JPEG or WebP file.")
    if size > max_bytes:
        raise _too_many_bytes(filename, size, max_bytes)


def prepare_source_image(
    filename: str,
    data: bytes,
    *,
    max_bytes: int = SOURCE_IMAGE_MAX_BYTES,
    max_pixels: int = SOURCE_IMAGE_MAX_PIXELS,
) -> SourceImage:
    """Decode ``data`` safely and re-encode it as webp. Blocking: run it in a thread.

    The size in the header is checked before any pixel is decoded, so a decompression bomb (a tiny
    file that claims a huge image) is refused without being expanded.
    """
    if len(data) > max_bytes:
        raise _too_many_bytes(filename, len(data), max_bytes)
    too_large = UserInputError(
        f"“{clip(filename, 60)}” is too large; source images may have at most "
        f"{max_pixels:,} pixels ({SOURCE_IMAGE_MAX_SIDE}×{SOURCE_IMAGE_MAX_SIDE})."
    )
    unreadable = UserInputError(f"“{clip(filename, 60)}” can't be read as an image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise too_large
                image.load()
                converted = image.convert("RGBA" if _has_alpha(image) else "RGB")
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning):
        raise too_large from None
    except UserInputError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError):
        # Pillow's decoders raise all of these for truncated or malformed files.
        raise unreadable from None
    out = io.BytesIO()
    converted.save(out, format="WEBP", quality=SOURCE_IMAGE_WEBP_QUALITY)
    return SourceImage(
        filename=filename,
        width=width,
        height=height,
        webp_base64=base64.b64encode(out.getvalue()).decode("ascii"),
    )


def _has_alpha(image: PIL.Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _too_many_bytes(filename: str, size: int, max_bytes: int) -> UserInputError:
    return UserInputError(
        f"“{clip(filename, 60)}” is {_megabytes(size)}; source images may be at most {_megabytes(max_bytes)}."
    )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
