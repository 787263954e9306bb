"""The embedded default: a ten-domain mini decathlon generated from data that pip wheels ship, on any machine.

Why: CI and first runs need a multi-domain benchmark with no download. Sources are the sample photos and textures
inside scikit-image / scikit-learn / matplotlib, sklearn's 8x8 handwritten digits, matplotlib's fonts and the
Hershey stroke fonts, plus procedural drawing. Each domain mimics one Visual Decathlon task (see DOMAINS).

The output is written in the decathlon-1.0 layout (annotations/<domain>_{train,val,test,test_stripped}.json and
data/<domain>/<split>/<class>/<id>.png), so it is read by the same reader as the real decathlon. Generation is
deterministic: one seed gives byte-identical files. Photos and real textures are split *spatially* (train: left 60%
of each source image, val: next 15%, test: last 25%), so test patches never share pixels with training patches.
"""

from __future__ import annotations

import colorsys
import functools
import json
import math
import multiprocessing
import re
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mpnas.utils.io import atomic_dir

Array = np.ndarray
Rng = np.random.Generator
GEN_SPLITS = ("train", "val", "test")
SUPERSAMPLE = 2  # shapes are drawn at 2x and box-filtered down, for anti-aliasing
ID_BASE = 10_000_000  # decathlon id scheme: ids of domain i start at (i + 1) * ID_BASE


# ------------------------------------------------------------------------------------------ sources from wheels
@functools.cache
def photos() -> dict[str, Array]:
    """Real photos shipped inside wheels (no download), as uint8 RGB."""
    import matplotlib.cbook as cbook
    import skimage.data as sd

    out: dict[str, Array] = {}
    for name in ("astronaut", "camera", "chelsea", "coffee", "coins", "rocket", "hubble_deep_field", "retina",
                 "cell", "page", "text", "moon", "immunohistochemistry", "clock"):
        out[name] = _rgb(getattr(sd, name)())
    out["motorcycle"] = _rgb(sd.stereo_motorcycle()[0])
    for name in ("china", "flower"):  # what sklearn's load_sample_images returns, read without importing sklearn
        with Image.open(package_file("sklearn", "datasets", "images", f"{name}.jpg")) as im:
            out[name] = _rgb(np.asarray(im))
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        out["grace_hopper"] = np.asarray(Image.open(f).convert("RGB"))
    return {k: _shrink(v, PHOTO_SIDE) for k, v in sorted(out.items())}


PHOTO_SIDE = 384  # sources are shrunk once so that cropping patches from them stays cheap


def _shrink(im: Array, side: int) -> Array:
    h, w = im.shape[:2]
    if min(h, w) <= side:
        return im
    f = side / min(h, w)
    return np.asarray(Image.fromarray(im).resize((round(w * f), round(h * f)), Image.BOX))


# photos without people: backgrounds for the pedestrian task
NO_PEOPLE = ("coffee", "coins", "rocket", "hubble_deep_field", "page", "text", "moon", "china", "flower",
             "motorcycle", "clock")


@functools.cache
def real_textures() -> dict[str, Array]:
    import skimage.data as sd

    return {name: _rgb(getattr(sd, name)()) for name in ("brick", "grass", "gravel")}


@functools.cache
def font_files() -> tuple[str, ...]:
    import matplotlib

    d = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
    names = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf",
             "DejaVuSans-Oblique.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf")
    found = tuple(str(d / n) for n in names if (d / n).is_file())
    if len(found) < 2:
        raise RuntimeError(f"matplotlib fonts not found under {d}")
    return found


@functools.cache
def glyph_table() -> tuple[tuple[str, Array], ...]:
    """Hershey stroke glyphs as (name, segments (k, 2, 2)), from alphabets that look unlike each other."""
    from HersheyFonts import HersheyFonts

    fonts = HersheyFonts()
    table: list[tuple[str, Array]] = []
    for font, chars in (("japanese", None), ("greek", "ABGDEZHQIKLMNXOPRSTUFCYWabgdezhqiklmnxoprstufcyw"),
                        ("cyrillic", "ABVGDEZIJKLMNOPRSTUFHCQWXYabvgdezijklmnoprstufh"),
                        ("astrology", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"), ("meteorology", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
                        ("gothgbt", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")):
        fonts.load_default_font(font)
        for ch in (sorted(fonts.all_glyphs) if chars is None else chars):
            segments = list(fonts.lines_for_text(ch))
            if len(segments) >= 2:
                table.append((f"{font}:{ch}", np.array(segments, np.float32)))
    return tuple(table)


@functools.cache
def digits() -> tuple[Array, Array]:
    """sklearn's 8x8 digits as load_digits returns them (images float64 (1797, 8, 8), int targets), read from the
    file that function reads: importing sklearn costs seconds, once per `mpnas data prepare` process."""
    import gzip

    with gzip.open(package_file("sklearn", "datasets", "data", "digits.csv.gz"), "rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int, copy=False)


def package_file(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the installed {package}")
    return path


@functools.cache
def truetype(path: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, px)


def _rgb(im: Array) -> Array:
    im = np.asarray(im)
    if im.ndim == 2:
        im = np.stack([im] * 3, -1)
    return np.ascontiguousarray(im[..., :3]).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ drawing helpers
def split_region(im: Array, split: str) -> Array:
    """The spatially disjoint part of a source image that one split may use."""
    lo, hi = {"train": (0.0, 0.6), "val": (0.6, 0.75), "test": (0.75, 1.0)}[split]
    w = im.shape[1]
    return im[:, int(lo * w):int(hi * w)]


def random_patch(rng: Rng, im: Array, out: int, smin: float, smax: float) -> Array:
    """A random square crop covering smin..smax of the shorter side, resized to out x out."""
    h, w = im.shape[:2]
    s = max(8, min(int(min(h, w) * rng.uniform(smin, smax)), h, w))
    y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
    return np.asarray(Image.fromarray(im[y:y + s, x:x + s]).resize((out, out), Image.BILINEAR))


def jitter_colour(rng: Rng, a: Array, strength: float) -> Array:
    out = a.astype(np.float32) * rng.uniform(1 - strength, 1 + strength, 3) + rng.uniform(-30, 30)
    return np.clip(out, 0, 255).astype(np.uint8)


def downsample(im: Image.Image, size: int) -> Array:
    return np.asarray(im.resize((size, size), Image.BOX))


def background(rng: Rng, split: str, out: int, smin: float, smax: float,
               names: Optional[Sequence[str]] = None) -> Array:
    pool = photos()
    keys = list(names) if names else list(pool)
    return random_patch(rng, split_region(pool[keys[int(rng.integers(len(keys)))]], split), out, smin, smax)


# ----------------------------------------------------------------------------------------------------- domains
# Each drawer: (rng, split, n, size) -> (images uint8 (n, size, size[, 3]), labels (n,)). Classes cycle i % K, so
# every class appears in every split.
Drawer = Callable[[Rng, str, int, int], tuple[list[Array], list[int]]]


def cycle_classes(n: int, num_classes: int, paint: Callable[[int], Array]) -> tuple[list[Array], list[int]]:
    """The drawers' loop: image i is `paint(i % num_classes)`, painted in order (one rng stream, reproducible)."""
    labels = [i % num_classes for i in range(n)]
    return [paint(c) for c in labels], labels


def draw_photo(rng: Rng, split: str, n: int, size: int) -> tuple[list[Array], list[int]]:
    names = list(photos())

    def paint(c: int) -> Array:
        im = random_patch(rng, split_region(photos()[names[c]], split), size, 0.15, 0.5)
        if rng.random() < 0.5:
            im = im[:, ::-1]
        return jitter_colour(rng, im, 0.15)

    return cycle_classes(n, len(names), paint)


TEXTURES = ("banded", "chequered", "grid", "zigzagged", "wavy", "crosshatched", "dotted", "bubbly", "cracked",
            "honeycombed", "spiralled", "marbled")


def _texture_mask(rng: Rng, kind: str, n: int) -> Array:
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    th, f = rng.uniform(0, np.pi), rng.uniform(3, 9)
    u = xx * np.cos(th) + yy * np.sin(th)
    v = -xx * np.sin(th) + yy * np.cos(th)
    if kind == "banded":
        return np.sin(2 * np.pi * f * u) > rng.uniform(-0.5, 0.5)
    if kind == "chequered":
        return (np.floor(f * u) + np.floor(f * v)) % 2 > 0
    if kind == "grid":
        return (np.abs(np.sin(np.pi * f * u)) < 0.2) | (np.abs(np.sin(np.pi * f * v)) < 0.2)
    if kind == "zigzagged":
        return np.sin(2 * np.pi * f * (v + 0.12 * np.abs(((u * f * 2) % 2) - 1))) > 0
    if kind == "wavy":
        return np.sin(2 * np.pi * f * (v + 0.05 * np.sin(2 * np.pi * 3 * u))) > 0
    if kind == "crosshatched":
        return (np.sin(2 * np.pi * f * u) > 0.7) | (np.sin(2 * np.pi * f * v) > 0.7)
    if kind == "honeycombed":
        a = f / 1.5
        q, r = 2 / 3 * xx * a, (-1 / 3 * xx + np.sqrt(3) / 3 * yy) * a
        return (np.abs((q % 1) - 0.5) < 0.08) | (np.abs((r % 1) - 0.5) < 0.08)
    if kind == "spiralled":
        r, a = np.hypot(xx - 0.5, yy - 0.5), np.arctan2(yy - 0.5, xx - 0.5)
        return np.sin(f * 8 * np.pi * r + a * rng.choice([-1, 1]) * 2) > 0
    if kind == "marbled":
        noise = Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).resize((n, n), Image.BICUBIC)
        return np.sin(2 * np.pi * (f * u + 3 * np.asarray(noise) / 255.0)) > 0
    # point-based textures: dotted, bubbly, cracked (distances to random seeds)
    pts = rng.random((int(rng.integers(8, 30)), 2)).astype(np.float32)
    d = np.sort(np.sqrt((xx[..., None] - pts[:, 0]) ** 2 + (yy[..., None] - pts[:, 1]) ** 2), -1)
    if kind == "dotted":
        return d[..., 0] < rng.uniform(0.03, 0.06)
    if kind == "bubbly":
        return np.abs(d[..., 0] - rng.uniform(0.06, 0.1)) < 0.015
    return (d[..., 1] - d[..., 0]) < 0.012  # cracked


def draw_texture(rng: Rng, split: str, n: int, size: int) -> tuple[list[Array], list[int]]:
    real = real_textures()
    names = list(TEXTURES) + sorted(real)

    def paint(c: int) -> Array:
        if names[c] in real:
            im = jitter_colour(rng, random_patch(rng, split_region(real[names[c]], split), size, 0.1, 0.4), 0.2)
        else:
            mask = _texture_mask(rng, names[c], size * SUPERSAMPLE)
            c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            big = Image.fromarray(np.where(mask[..., None], c1, c2).astype(np.uint8))
            im = np.asarray(big.resize((size, size), Image.BOX).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.6))))
        noisy = im + rng.normal(0, rng.uniform(0, 8), im.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)

    return cycle_classes(n, len(names), paint)


GLYPH_CLASSES = 100


@functools.cache
def glyph_classes() -> tuple[tuple[str, Array], ...]:
    table = glyph_table()
    pick = np.random.default_rng(1234).choice(len(table), GLYPH_CLASSES, replace=False)  # fixed class set
    return tuple(table[i] for i in pick)


def draw_glyph(rng: Rng, split: str, n: int, size: int) -> tuple[list[Array], list[int]]:
    """Omniglot analogue: per-sample affine 'drawer', tremor and pen width. Drawn at 4x so strokes can be thin."""
    classes, zoom = glyph_classes(), 4
    big = size * zoom

    def paint(c: int) -> Array:
        p = classes[c][1].reshape(-1, 2).copy()
        lo, hi = p.min(0), p.max(0)
        p = (p - (lo + hi) / 2) / max(1e-3, float((hi - lo).max()))
        p = p @ (np.eye(2) + rng.normal(0, 0.08, (2, 2))).T + rng.normal(0, 0.012, p.shape)
        p = p * big * rng.uniform(0.6, 0.8) + big / 2 + rng.normal(0, 1.5 * zoom, 2)
        im = Image.new("L", (big, big), 255)
        draw = ImageDraw.Draw(im)
        width = int(rng.integers(3, 8))  # 0.75..1.75 px at the stored size
        for a, b in p.reshape(-1, 2, 2):
            draw.line([tuple(a), tuple(b)], fill=0, width=width)
        return downsample(im, size)

    return cycle_classes(n, len(classes), paint)


def draw_svhn(rng: Rng, split: str, n: int, size: int) -> tuple[list[Array], list[int]]:
    """SVHN analogue: three-digit plates over real photo crops; the centre digit is the label."""
    fonts, z = font_files(), size * SUPERSAMPLE

    def paint(c: int) -> Array:
        bg = Image.fromarray(background(rng, split, z, 0.1, 0.4)).filter(ImageFilter.GaussianBlur(2))
        plate = tuple(int(v) for v in rng.integers(0, 256, 3))
        ink = tuple(int((v + 128 + rng.integers(-40, 40)) % 256) for v in plate)
        im = Image.blend(bg, Image.new("RGB", bg.size, plate), rng.uniform(0.4, 0.9))
        draw = ImageDraw.Draw(im)
        font = truetype(fonts[int(rng.integers(len(fonts)))], int(z * rng.uniform(0.6, 0.85)))
        text = f"{rng.integers(0, 10)}{c}{rng.integers(0, 10)}"
        box = draw.textbbox((0, 0), text, font=font)
        first = draw.textbbox((0, 0), text[0], font=font)[2]
        mid = first + (draw.textbbox((0, 0), text[:2], font=font)[2] - first) / 2
        origin = (z / 2 - mid + rng.normal(0, 2), z / 2 - (box[1] + box[3]) / 2 + rng.normal(0, 2))
        draw.text(origin, text, font=font, fill=ink)
        im = im.rotate(rng.normal(0, 6), Image.BILINEAR).filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
        return jitter_colour(rng, downsample(im, size), 0.2)

    return cycle_classes(n, 10, paint)


SIGNS = (("circle", "red", "20"), ("circle", "red", "30"), ("circle", "red", "50"), ("circle", "red", "60"),
         ("circle", "red", "70"), ("circle", "red", "80"), ("circle", "red", "100"), ("circle", "red", "120"),
         ("circle", "red", ""), ("circle", "red", "→"), ("tri", "red", "!"), ("tri", "red", "↯"),
         ("tri", "red", "≈"), ("tri", "red", "⚠"), ("tri_down", "red", ""), ("oct", "redfill", "STOP"),
         ("circle", "bluefill", "↑"), ("circle", "bluefill", "→"), ("circle", "bluefill", "←"),
         ("circle", "bluefill", "↻"), ("diamond", "yellow", ""), ("circle", "nobar", ""))
RED, BLUE, WHITE, YELLOW = (200, 20, 30), (20, 60, 190), (240, 240, 240), (240, 200, 0)


def _sign(draw: ImageDraw.ImageDraw, shape: str, style: str, cx: float, cy: float, r: float) -> None:
    if shape == "circle":
        if style == "bluefill":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=BLUE)
            return
        k = r * 0.78
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=RED)
        draw.ellipse([cx - k, cy - k, cx + k, cy + k], fill=WHITE)
        if style == "nobar":
            draw.line([cx - k * 0.7, cy + k * 0.7, cx + k * 0.7, cy - k * 0.7], fill=(60, 60, 60), width=int(r * 0.15))
    elif shape in ("tri", "tri_down"):
        s = 1 if shape == "tri" else -1
        pts = [(cx, cy - s * r), (cx - r * 0.95, cy + s * r * 0.7), (cx + r * 0.95, cy + s * r * 0.7)]
        draw.polygon(pts, fill=RED)
        draw.polygon([(cx + (x - cx) * 0.65, cy + (y - cy) * 0.65 + s * r * 0.08) for x, y in pts], fill=WHITE)
    elif shape == "oct":
        draw.regular_polygon((cx, cy, r), 8, rotation=22.5, fill=RED)
    else:  # diamond
        draw.regular_polygon((cx, cy, r), 4, rotation=0, fill=WHITE)
        draw.regular_polygon((cx, cy, r * 0.8), 4, rotation=0, fill=YELLOW)


def draw_signs(rng: Rng, split: str, n: int, size: int) -> tuple[list[Array], list[int]]:
    """GTSRB analogue: 22 sign types with viewpoint, lighting and blur changes on real photo crops."""
    font_path, z = font_files()[1], size * SUPERSAMPLE

    def paint(c: int) -> Array:
        shape, style, symbol = SIGNS[c]
        im = Image.fromarray(background(rng, split, z, 0.2, 0.6))
        draw = ImageDraw.Draw(im)
        r = z * rng.uniform(0.33, 0.45)
        cx, cy = z / 2 + rng.normal(0, 2, 2)
        _sign(draw, shape, style, cx, cy, r)
        if symbol:
            colour = WHITE if style in ("bluefill", "redfill") else (20, 20, 20)
            font = truetype(font_path, max(1, int(r * (1.0 if len(symbol) == 1 else 1.6 / len(symbol) + 0.2))))
            bb = draw.textbbox((0, 0), symbol, font=font)
            lift = r * 0.1 if shape == "tri" else 0
            draw.text((cx - (bb[0] + bb[2]) / 2, cy - (bb[1] + bb[3]) / 2 + lift), symbol, font=font, fill=colour)
        affine = (1 + rng.normal(0, 0.05), rng.normal(0, 0.08), 0, rng.normal(0, 0.08), 1 + rng.normal(0, 0.05), 0)
        im = im.transform(im.size, Image.AFFINE, affine, Image.BILINEAR)
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.8)))
        lit = downsample(im, size).astype(np.float32) * rng.uniform(0.35, 1.3)
        return np.clip(lit, 0, 255).astype(np.uint8)

    return cycle_classes(n, len(SIGNS), paint)


def draw_pedestrian(rng: Rng, split: str, n: int, size: int) -> tuple[list[Array], list[int]]:
    """Daimler analogue (grayscale): an articulated walking figure vs. clutter on people-free photo crops."""
    z = size * SUPERSAMPLE

    def paint(c: int) -> Array:
        im = Image.fromarray(background(rng, split, z, 0.2, 0.7, NO_PEOPLE)).convert("L")
        draw = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(0, 3))):  # clutter in both classes: poles and boxes
            x, g = rng.uniform(0, z), int(rng.integers(0, 256))
            if rng.random() < 0.5:
                draw.rectangle([x, 0, x + rng.uniform(2, 6), z], fill=g)
            else:
                draw.rectangle([x, rng.uniform(z * 0.4, z), x + rng.uniform(8, 30), z], fill=g)
        if c == 1:
            _walker(rng, draw, z)
        im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
        a = downsample(im, size).astype(np.float32)
        a = (a - a.mean()) * rng.uniform(0.6, 1.3) + a.mean() + rng.normal(0, 4, a.shape)
        return np.clip(a, 0, 255).astype(np.uint8)

    return cycle_classes(n, 2, paint)


def _walker(rng: Rng, draw: ImageDraw.ImageDraw, z: int) -> None:
    cx, top, h = z / 2 + rng.normal(0, 2), z * rng.uniform(0.05, 0.12), z * rng.uniform(0.78, 0.9)
    g_body, g_leg = int(rng.integers(0, 256)), int(rng.integers(0, 256))
    hr = h * 0.075
    draw.ellipse([cx - hr, top, cx + hr, top + 2 * hr], fill=int(rng.integers(40, 220)))
    shoulder, hip, tw = top + 2.2 * hr, top + h * 0.52, h * rng.uniform(0.11, 0.15)
    draw.polygon([(cx - tw, shoulder), (cx + tw, shoulder), (cx + tw * 0.8, hip), (cx - tw * 0.8, hip)], fill=g_body)
    phase = rng.uniform(-1, 1)
    for s in (-1, 1):
        foot = cx + s * tw * 0.3 + math.sin(s * phase * 0.35) * h * 0.48
        draw.line([(cx + s * tw * 0.4, hip), (foot, top + h)], fill=g_leg, width=int(tw * 0.7))
        hand = cx + s * tw * 1.1 + math.sin(-s * phase * 0.3) * h * 0.3
        draw.line([(cx + s * tw, shoulder + 2), (hand, hip + h * 0.02)], fill=g_body, width=int(tw * 0.4))


DIGIT_SPLITS = {"train": (0, 1000), "val": (1000, 1297), "test": (1297, 1797)}


def draw_digits8(rng: Rng, split: str, n: int, size: int) -> tuple[list[Array], list[int]]:
    """Real handwritten 8x8 digits (sklearn), fixed split; random pose, ink/paper levels and noise make it harder
    than the plain upsampled scans."""
    images, targets = digits()
    lo, hi = DIGIT_SPLITS[split]
    part = np.random.default_rng(7).permutation(len(targets))[lo:hi]
    part = part[round_robin(targets[part])][:n]  # a prefix of any length covers the classes evenly
    xs, ys = [], []
    for j in part:
        glyph = Image.fromarray((images[j] * 255 / 16).astype(np.uint8))
        side = int(size * rng.uniform(0.6, 0.85))
        glyph = glyph.resize((side, side), Image.BICUBIC).rotate(rng.normal(0, 10), Image.BILINEAR)
        canvas = Image.new("L", (size, size), 0)
        off = rng.integers(0, size - side + 1, 2)
        canvas.paste(glyph, (int(off[0]), int(off[1])))
        ink, paper = rng.uniform(150, 255), rng.uniform(0, 110)
        a = paper + np.asarray(canvas, np.float32) / 255.0 * (ink - paper) + rng.normal(0, 6, (size, size))
        if rng.random() < 0.5:
            a = 255 - a
        xs.append(np.clip(a, 0, 255).astype(np.uint8))
        ys.append(int(targets[j]))
    return xs, ys


def round_robin(labels: Array) -> Array:
    """An order that takes the 1st item of every class, then the 2nd of every class, ... (stable inside a class)."""
    rank = np.zeros(len(labels), np.int64)
    seen: dict[int, int] = {}
    for i, y in enumerate(labels.tolist()):
        rank[i] = seen.get(y, 0)
        seen[y] = rank[i] + 1
    return np.lexsort((labels, rank))


@dataclass(frozen=True)
class FlowerClass:
    petals: int
    shape: float
    hue: float
    centre: float
    layers: int


@functools.cache
def flower_classes() -> tuple[FlowerClass, ...]:
    proto = np.random.default_rng(99)  # class prototypes, fixed across splits and seeds
    return tuple(FlowerClass(int(proto.integers(3, 10)), float(proto.uniform(0.2, 0.6)), float(proto.uniform(0, 1)),
                             float(proto.uniform(0.1, 0.3)), int(proto.integers(1, 3))) for _ in range(10))


def draw_flowers(rng: Rng, split: str, n: int, size: int) -> tuple[list[Array], list[int]]:
    """VGG-Flowers analogue: rose-curve flowers (petal count, shape, hue, layers) on blurred foliage."""
    classes, z = flower_classes(), size * SUPERSAMPLE
    t = np.linspace(0, 2 * np.pi, 200)

    def paint(c: int) -> Array:
        p = classes[c]
        bg = (background(rng, split, z, 0.2, 0.6).astype(np.float32) * np.array([0.3, 0.6, 0.3])).astype(np.uint8)
        im = Image.fromarray(bg).filter(ImageFilter.GaussianBlur(3))
        draw = ImageDraw.Draw(im)
        cx, cy = z / 2 + rng.normal(0, 3, 2)
        r0, rot = z * rng.uniform(0.3, 0.45), rng.uniform(0, 2 * np.pi)
        for layer in range(p.layers):
            hue = (p.hue + rng.normal(0, 0.03)) % 1
            rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.5, 1), rng.uniform(0.6, 1) * (1 - 0.25 * layer))
            r = r0 * (1 - 0.35 * layer) * np.abs(np.cos(p.petals * (t + rot + layer * 0.3) / 2)) ** p.shape
            draw.polygon(list(zip(cx + r * np.cos(t), cy + r * np.sin(t))), fill=tuple(int(255 * v) for v in rgb))
        cr = r0 * p.centre
        draw.ellipse([cx - cr, cy - cr, cx + cr, cy + cr], fill=(230, 190, 30))
        im = im.rotate(rng.uniform(0, 360), Image.BILINEAR).filter(ImageFilter.GaussianBlur(rng.uniform(0, 1)))
        return jitter_colour(rng, downsample(im, size), 0.1)

    return cycle_classes(n, len(classes), paint)


MOTIONS = ("right", "left", "up", "down", "rot_cw", "rot_ccw", "zoom_in", "zoom_out", "orbit", "oscillate_h")


def _motion(m: str, t: int, frames: int, v: float) -> tuple[float, float, float, float]:
    """(dx, dy, angle, scale) of the sprite at frame t."""
    u = t - frames / 2
    w = t * 2 * math.pi / frames
    return {"right": (v * u, 0, 0, 1), "left": (-v * u, 0, 0, 1), "up": (0, -v * u, 0, 1), "down": (0, v * u, 0, 1),
            "rot_cw": (0, 0, -12 * t, 1), "rot_ccw": (0, 0, 12 * t, 1), "zoom_in": (0, 0, 0, 0.6 + 0.1 * t),
            "zoom_out": (0, 0, 0, 1.4 - 0.1 * t), "orbit": (8 * math.cos(w), 8 * math.sin(w), 0, 1),
            "oscillate_h": (8 * math.sin(2 * w), 0, 0, 1)}[m]


def draw_dynamic(rng: Rng, split: str, n: int, size: int) -> tuple[list[Array], list[int]]:
    """UCF101 'dynamic image' analogue: approximate rank pooling (weights 2t - T - 1) of an 8-frame clip of a
    photo sprite moving over a photo background; the class is the motion."""
    frames, sprite_px = 8, max(6, round(size * 14 / 36))
    weights = np.array([2 * (t + 1) - frames - 1 for t in range(frames)], np.float32)
    mask = Image.new("L", (sprite_px, sprite_px), 0)
    ImageDraw.Draw(mask).ellipse([0, 0, sprite_px - 1, sprite_px - 1], fill=255)
    all_photos = list(photos().values())

    def paint(c: int) -> Array:
        bg = Image.fromarray(background(rng, split, size, 0.3, 0.8))
        sprite = Image.fromarray(random_patch(rng, all_photos[int(rng.integers(len(all_photos)))], sprite_px, 0.1, 0.3))
        speed = rng.uniform(1.5, 2.5) * size / 36
        x0, y0 = size / 2 + rng.normal(0, 2, 2)
        acc = np.zeros((size, size, 3), np.float32)
        for t in range(frames):
            dx, dy, angle, scale = _motion(MOTIONS[c], t, frames, speed)
            dx, dy = dx * size / 36, dy * size / 36
            px = max(4, int(sprite_px * scale))
            frame = bg.copy()
            frame.paste(sprite.rotate(angle).resize((px, px)), (int(x0 + dx - px / 2), int(y0 + dy - px / 2)),
                        mask.rotate(angle).resize((px, px)))
            acc += weights[t] * np.asarray(frame, np.float32)
        acc -= acc.min()
        return (acc / max(1e-3, float(acc.max())) * 255).astype(np.uint8)

    return cycle_classes(n, len(MOTIONS), paint)


@dataclass(frozen=True)
class AircraftClass:
    sweep: float
    span: float
    engines: int
    length: float
    t_tail: bool
    chord: float


@functools.cache
def aircraft_classes() -> tuple[AircraftClass, ...]:
    proto = np.random.default_rng(5)
    return tuple(AircraftClass(float(proto.uniform(0, 0.5)), float(proto.uniform(0.75, 1.0)),
                               int(proto.integers(0, 3)) * 2, float(proto.uniform(0.8, 1.0)),
                               bool(proto.integers(0, 2)), float(proto.uniform(0.12, 0.22))) for _ in range(12))


def _airframe(p: AircraftClass, z: int, grey: int) -> tuple[Image.Image, Image.Image]:
    """(mask, shading) of one top-view airliner variant."""
    mask, shade = Image.new("L", (z, z), 0), Image.new("RGB", (z, z), (grey,) * 3)
    draw = ImageDraw.Draw(mask)
    half = z / 2
    length, span, chord = z * 0.45 * p.length, z * 0.45 * p.span, z * p.chord
    sweep = p.sweep * span
    draw.ellipse([half - z * 0.04, half - length, half + z * 0.04, half + length], fill=255)
    for s in (-1, 1):
        draw.polygon([(half, half - chord / 2), (half + s * span, half + sweep),
                      (half + s * span, half + sweep + chord * 0.4), (half, half + chord)], fill=255)
        ty, ts = half + length * (0.9 if p.t_tail else 0.8), span * 0.35
        draw.polygon([(half, ty - chord * 0.3), (half + s * ts, ty + sweep * 0.3),
                      (half + s * ts, ty + sweep * 0.3 + chord * 0.25), (half, ty + chord * 0.2)], fill=255)
        for e in range(p.engines // 2):
            ex, ey = half + s * span * (0.35 + 0.3 * e), half + sweep * (0.35 + 0.3 * e) - chord * 0.2
            box = [ex - z * 0.02, ey - z * 0.05, ex + z * 0.02, ey + z * 0.05]
            ImageDraw.Draw(shade).ellipse(box, fill=(grey // 2,) * 3)
            draw.ellipse(box, fill=255)
    return mask, shade


def draw_aircraft(rng: Rng, split: str, n: int, size: int) -> tuple[list[Array], list[int]]:
    """FGVC-Aircraft analogue: fine-grained top-view silhouettes differing by sweep, engines, tail and length."""
    classes, z = aircraft_classes(), size * SUPERSAMPLE

    def paint(c: int) -> Array:
        sky = np.array([rng.uniform(120, 200), rng.uniform(150, 220), rng.uniform(200, 255)])
        grad = np.linspace(0.85, 1.1, z)[:, None, None] * sky
        canvas = Image.fromarray(np.clip(grad + rng.normal(0, 5, (z, z, 3)), 0, 255).astype(np.uint8))
        mask, shade = _airframe(classes[c], z, int(rng.integers(30, 240)))
        angle, side = rng.uniform(0, 360), int(z * rng.uniform(0.8, 1.05))
        off = rng.normal(0, 2, 2).astype(int)
        mask = mask.rotate(angle, Image.BILINEAR).resize((side, side))
        shade = shade.rotate(angle, Image.BILINEAR).resize((side, side))
        canvas.paste(shade, (int((z - side) // 2 + off[0]), int((z - side) // 2 + off[1])), mask)
        return downsample(canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1))), size)

    return cycle_classes(n, len(classes), paint)


# ----------------------------------------------------------------------------------------------- domain table
@dataclass(frozen=True)
class EmbeddedDomain:
    name: str
    analogue: str
    counts: tuple[int, int, int]  # train, val, test at scale 1
    draw: Drawer
    classes: Callable[[], list[str]]


DOMAINS: tuple[EmbeddedDomain, ...] = (
    EmbeddedDomain("photo", "imagenet12", (1600, 320, 640), draw_photo, lambda: list(photos())),
    EmbeddedDomain("aircraft", "aircraft", (480, 240, 240), draw_aircraft,
                   lambda: [f"variant{i:02d}" for i in range(len(aircraft_classes()))]),
    EmbeddedDomain("digits8", "cifar100", (1000, 297, 500), draw_digits8, lambda: [str(d) for d in range(10)]),
    EmbeddedDomain("pedestrian", "daimlerpedcls", (2000, 500, 1000), draw_pedestrian,
                   lambda: ["non-pedestrian", "pedestrian"]),
    EmbeddedDomain("texture", "dtd", (750, 300, 300), draw_texture,
                   lambda: list(TEXTURES) + sorted(real_textures())),
    EmbeddedDomain("signs", "gtsrb", (1760, 440, 880), draw_signs, lambda: ["/".join(s) for s in SIGNS]),
    EmbeddedDomain("flowers", "vgg-flowers", (200, 200, 600), draw_flowers,
                   lambda: [f"flower{c}_k{p.petals}" for c, p in enumerate(flower_classes())]),
    EmbeddedDomain("glyph", "omniglot", (1000, 400, 500), draw_glyph, lambda: [g[0] for g in glyph_classes()]),
    EmbeddedDomain("svhn", "svhn", (2000, 500, 1000), draw_svhn, lambda: [str(d) for d in range(10)]),
    EmbeddedDomain("dynamic", "ucf101", (600, 200, 300), draw_dynamic, lambda: list(MOTIONS)),
)
DOMAIN_NAMES = tuple(d.name for d in DOMAINS)


def domain_spec(name: str) -> EmbeddedDomain:
    for d in DOMAINS:
        if d.name == name:
            return d
    raise ValueError(f"unknown embedded domain {name!r}; available: {', '.join(DOMAIN_NAMES)}")


def split_counts(spec: EmbeddedDomain, scale: float, num_classes: int) -> dict[str, int]:
    """Images per split at `scale`: at least 2 per class in train and 1 per class in val/test (digits8 is capped by
    its fixed real split)."""
    out = {}
    for split, n, floor in zip(GEN_SPLITS, spec.counts, (2, 1, 1)):
        out[split] = min(n, max(floor * num_classes, round(n * scale))) if spec.name == "digits8" \
            else max(floor * num_classes, round(n * scale))
    return out


def class_dir(index: int, name: str) -> str:
    """A portable folder name for a class (names may hold '/', ':' or non-ASCII symbols)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:40]
    return f"{index:03d}_{slug}" if slug else f"{index:03d}"


# ----------------------------------------------------------------------------------------------- writing
def _build_split(task: tuple[int, str, str, int, int, int, float, str]) -> tuple[str, str, list[dict], float]:
    """Draw one domain/split and write its PNGs; returns COCO image records (with labels)."""
    index, name, split, first_id, seed, size, scale, out = task
    t0 = time.perf_counter()
    spec = domain_spec(name)
    classes = spec.classes()
    dirs = [class_dir(k, c) for k, c in enumerate(classes)]
    n = split_counts(spec, scale, len(classes))[split]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), GEN_SPLITS.index(split)])
    images, labels = spec.draw(rng, split, n, size)
    records = []
    for image_id, (img, label) in enumerate(zip(images, labels), first_id):
        rel = f"data/{name}/{split}/{dirs[label]}/{image_id}.png"
        path = Path(out) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(img)).save(path, format="PNG")
        records.append({"id": image_id, "file_name": rel, "width": size, "height": size, "label": int(label)})
    return name, split, records, time.perf_counter() - t0


def _write_annotations(out: Path, index: int, name: str, classes: list[str], records: dict[str, list[dict]]) -> None:
    categories = [{"id": (index + 1) * ID_BASE + k + 1, "name": c} for k, c in enumerate(classes)]
    for split, recs in records.items():
        images = [{k: r[k] for k in ("id", "file_name", "width", "height")} for r in recs]
        anns = [{"id": r["id"], "image_id": r["id"], "category_id": categories[r["label"]]["id"]} for r in recs]
        doc = {"images": images, "annotations": anns, "categories": categories}
        (out / "annotations" / f"{name}_{split}.json").write_text(json.dumps(doc, separators=(",", ":")))
        if split == "test":
            stripped = {"images": images, "categories": categories}
            (out / "annotations" / f"{name}_test_stripped.json").write_text(json.dumps(stripped, separators=(",", ":")))


def _warm_sources(names: Sequence[str]) -> None:
    """Load the wheel data once in the parent so forked workers share it."""
    for name in names:
        domain_spec(name).classes()
    if any(n not in ("digits8", "glyph", "texture") for n in names):
        photos()
    if any(n in ("svhn", "signs") for n in names):
        font_files()


def generate_embedded(out: str | Path, seed: int = 0, size: int = 36, scale: float = 1.0,
                      domains: Optional[Sequence[str]] = None, workers: int = 2, overwrite: bool = False,
                      log: Callable[[str], None] = print) -> Path:
    """Write the embedded ten-domain set in the decathlon-1.0 layout under `out` (atomically).

    `scale` multiplies every split's size (tests use ~0.02); `domains` selects a subset (default: all ten).
    Byte-identical output for the same (seed, size, scale, domains), whatever `workers` is.
    """
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    names = list(DOMAIN_NAMES) if domains is None else [domain_spec(d).name for d in domains]
    index = {d: i for i, d in enumerate(DOMAIN_NAMES)}
    out = Path(out)
    t0 = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "annotations").mkdir()
        _warm_sources(names)
        tasks = []
        for d in names:
            first_id = (index[d] + 1) * ID_BASE + 1
            for split, n in split_counts(domain_spec(d), scale, len(domain_spec(d).classes())).items():
                tasks.append((index[d], d, split, first_id, seed, size, scale, str(tmp)))
                first_id += n
        tasks.sort(key=lambda t: -domain_spec(t[1]).counts[GEN_SPLITS.index(t[2])])  # longest first
        if workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                results = list(pool.map(_build_split, tasks))
        else:
            results = [_build_split(t) for t in tasks]
        for d in names:
            parts = {split: (recs, dt) for name, split, recs, dt in results if name == d}
            records = {split: parts[split][0] for split in GEN_SPLITS}
            _write_annotations(tmp, index[d], d, domain_spec(d).classes(), records)
            sizes = " ".join(f"{s}={len(r)}" for s, r in records.items())
            log(f"generated {d:<11s} {sizes} ({sum(dt for _, dt in parts.values()):.1f}s)")
    log(f"embedded set: {len(names)} domains in {time.perf_counter() - t0:.1f}s -> {out}")
    return out
