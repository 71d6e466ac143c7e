"""Safe image decoding, part of the safety layer: four decoders only, the pixel count checked from
the header before any pixel is decoded, and every payload converted to RGB the same way.

Image conversion: every image payload is fully decoded and converted to mode ``"RGB"``. Images
with transparency are composited on a WHITE background. 16-bit grayscale is reduced to 8 bits by
dropping the low byte; 32-bit integer images are treated the same when they hold values above 255;
float images are clipped to [0, 255].

Only JPEG, PNG, WebP and BMP decoders are ever used, whatever the file extension claims, so a
renamed file cannot reach a riskier Pillow plugin.
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import IO

import numpy as np
from PIL import Image

from dlcprune.core.errors import CorruptImageError, LimitExceededError, ScoringError
from dlcprune.core.formats.limits import ReadLimits, reason

__all__ = ["IMAGE_EXTENSIONS", "decode_image", "is_image_name", "to_rgb"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@cache
def _pil_formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in ("JPEG", "PNG", "WEBP", "BMP") if f in Image.OPEN)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert a loaded image of any mode to RGB (alpha or colour-key transparency on white)."""
    mode = im.mode
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        # Pillow's own conversion clips wide values to 255, which turns most 16-bit images white.
        arr = np.asarray(im)
        if mode.startswith("I;16") or (mode == "I" and arr.size and arr.max() > 255):
            arr = arr.astype(np.int64) >> 8
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))
    return im.convert("RGB")


def decode_image(
    fp: IO[bytes],
    *,
    limits: ReadLimits,
    path: str,
    member: str,
    line: int | None = None,
    convert: bool = True,
) -> Image.Image | None:
    """Decode one image fully; returns it as RGB, or ``None`` when ``convert`` is False.

    The pixel count is checked from the header before any pixel data is decoded.
    """
    try:
        # Make Pillow's own bomb warning an exception so it is reported like our own limit.
        # catch_warnings is process-global; if threads race here the worst outcome is that the
        # warning stays an error, which is the behaviour wanted anyway.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(fp, formats=list(_pil_formats()))
            width, height = im.size
            if width * height > limits.max_image_pixels:
                raise LimitExceededError(
                    f"image is {width}x{height}, more than {limits.max_image_pixels} pixels "
                    "(max_image_pixels)",
                    path=path,
                    member=member,
                    line=line,
                )
            im.load()
            if not convert:
                im.close()
                return None
            try:
                return to_rgb(im)
            except (ValueError, OSError) as exc:
                raise CorruptImageError(
                    f"cannot convert image mode {im.mode} to RGB: {reason(exc)}",
                    path=path,
                    member=member,
                    line=line,
                ) from exc
    except ScoringError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceededError(
            f"image is too large: {reason(exc)}", path=path, member=member, line=line
        ) from exc
    except MemoryError as exc:
        raise LimitExceededError(
            "image is too large to decode", path=path, member=member, line=line
        ) from exc
    except Exception as exc:
        # Pillow plugins raise a wide, undocumented set of exceptions on malformed input
        # (OSError, SyntaxError, ValueError, struct.error, IndexError, ...).
        raise CorruptImageError(
            f"cannot decode image: {reason(exc)}", path=path, member=member, line=line
        ) from exc
