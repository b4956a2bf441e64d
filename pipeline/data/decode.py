"""Decoding one image file into the uint8 geometry every image data set uses.

``decode_image(path, size)`` is the single place a file becomes pixels (the in-memory folder and
Tiny ImageNet loaders and the streamed ``FileImageSet`` all call it, so both paths give identical
images); it returns None for a file that cannot be decoded, which the callers skip and report
with one ``warn_undecodable`` line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from pipeline.errors import DataError

_log = logging.getLogger(__name__)


def decode_image(path: str | Path, size: int) -> np.ndarray | None:
    """One image as RGB uint8 ``size x size x 3`` (shorter side resized, centre crop); None if unreadable.

    The format is detected from the content (a PNG named ``.JPEG`` decodes), CMYK and grey images
    are converted to RGB. JPEGs are decoded through ``Image.draft``: the decoder scales by 1/2, 1/4
    or 1/8 in the DCT domain while both sides stay at least ``size``, so only the resampling before
    the same bilinear resize differs from a full decode (and decoding a large JPEG is several
    times faster). A truncated file counts as unreadable: ``image.load()`` raises ``OSError``
    while Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is off, which is refused otherwise.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise DataError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is enabled in this process; truncated images "
                        "would decode as partly grey pictures instead of being skipped - disable it")
    try:
        with Image.open(path) as image:
            image.draft(image.mode, (size, size))  # JPEG only; a no-op for other formats
            image.load()
            image = image.convert("RGB")
            width, height = image.size
            if (width, height) != (size, size):
                scale = size / min(width, height)
                new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
                image = image.resize(new_size, Image.Resampling.BILINEAR)
                left = (new_size[0] - size) // 2
                top = (new_size[1] - size) // 2
                image = image.crop((left, top, left + size, top + size))
            return np.array(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def warn_undecodable(count: int, first: str | Path, where: str) -> None:
    """The one warning line for files skipped because they could not be decoded."""
    _log.warning(f"warning: skipped {count} undecodable image file(s) in {where} (first: {first})")
