"""Fetching and decoding generated images (R2 URLs or base64), shared by every client."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
from urllib.parse import urlsplit

import aiohttp
import PIL.Image

from bot.horde.apimodels.image import ImageGeneration
from bot.horde.errors import AIHordeImageDownloadError

DEFAULT_MAX_IMAGE_BYTES = 32 * 1024 * 1024
"""A 3072² webp is a few MB; anything far larger is not an image the Horde made."""
DEFAULT_DOWNLOAD_TIMEOUT = 60.0
_CHUNK = 64 * 1024


async def fetch_url_bytes(
    session: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
) -> bytes:
    """GET ``url`` and return its body, refusing more than ``max_bytes``.

    Messages name only the host: a presigned URL's query string is a credential.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AIHordeImageDownloadError("Not an http(s) image URL")
    where = parts.netloc
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=download_timeout)) as response:
            if response.status != 200:
                raise AIHordeImageDownloadError(
                    f"Downloading the image from {where} failed: HTTP {response.status}"
                )
            if response.content_length is not None and response.content_length > max_bytes:
                raise _too_large(where, max_bytes)
            body = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise _too_large(where, max_bytes)
            return bytes(body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AIHordeImageDownloadError(
            f"Downloading the image from {where} failed: {type(exc).__name__}"
        ) from exc


def decode_base64_image(generation: ImageGeneration, *, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> bytes:
    if len(generation.img) > max_bytes * 4 // 3 + 4:
        raise _too_large(f"generation {generation.id_}", max_bytes)
    try:
        return base64.b64decode(generation.img, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AIHordeImageDownloadError(
            f"Generation {generation.id_} has no image: img is neither a URL nor base64 "
            f"({generation.img[:20]!r})"
        ) from exc


def decode_image(data: bytes) -> PIL.Image.Image:
    try:
        image = PIL.Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as exc:
        raise AIHordeImageDownloadError(f"The downloaded data is not a readable image: {exc}") from exc
    return image


async def decode_image_async(data: bytes) -> PIL.Image.Image:
    # Decoding a large webp takes long enough to stall every other coroutine.
    return await asyncio.to_thread(decode_image, data)


def _too_large(where: str, max_bytes: int) -> AIHordeImageDownloadError:
    return AIHordeImageDownloadError(f"The image from {where} is larger than {max_bytes} bytes")
