"""Decode one image file into the stored uint8 RGB square: any mode to RGB, shorter side to N, centre crop.

Why a module of its own: mode handling is where real datasets differ (grayscale, palette, 16-bit, RGBA, CMYK), and
`prepare` runs this in worker processes, so it must be a plain top-level function.
"""

from __future__ import annotations

import hashlib
import io
from typing import Optional

import numpy as np
from PIL import Image, ImageFile

# Truncated files must fail, not be padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DecodeResult = tuple[Optional[np.ndarray], str, Optional[str]]  # (image or None, sha1 of the file, error)


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB with 8 bits per channel; 16/32-bit grey is rescaled (not clipped), transparency composited on white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16"):
            scale = 65535.0
        elif im.mode == "F" and float(a.max(initial=0.0)) <= 1.0:
            scale = 1.0
        else:
            scale = 65535.0 if float(a.max(initial=0.0)) > 255 else 255.0
        a = np.clip(np.round(a / scale * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(a, mode="L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def resize_center_crop(im: Image.Image, size: int) -> Image.Image:
    w, h = im.size
    if min(w, h) != size:
        f = size / min(w, h)
        im = im.resize((max(size, round(w * f)), max(size, round(h * f))), Image.BILINEAR)
        w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


def decode_file(path: str, size: int) -> DecodeResult:
    """Read, hash and decode one file. Errors are returned (not raised) so a worker pool can report them."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return None, "", f"cannot read the file ({exc.strerror or exc})"
    sha1 = hashlib.sha1(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return None, sha1, "image has no pixels"
            out = np.asarray(resize_center_crop(to_rgb(im), size), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return None, sha1, f"unreadable or truncated image ({exc})"
    return out, sha1, None


def decode_many(args: tuple[list[str], int]) -> list[DecodeResult]:
    """Worker entry point: decode a chunk of files."""
    paths, size = args
    return [decode_file(p, size) for p in paths]
