"""PNG plots drawn with PIL only (no plotting dependency): sample grid with mask contours, metric bars,
mask-statistics histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SYNTH_COLOR = (230, 120, 30)
REAL_COLOR = (40, 110, 200)


def _contour(mask: np.ndarray) -> np.ndarray:
    fg = mask >= 128
    inner = fg.copy()
    inner[1:, :] &= fg[:-1, :]
    inner[:-1, :] &= fg[1:, :]
    inner[:, 1:] &= fg[:, :-1]
    inner[:, :-1] &= fg[:, 1:]
    return fg & ~inner


CLASS_COLORS = ((0, 255, 0), (255, 60, 60), (60, 160, 255), (255, 220, 0), (255, 0, 255), (0, 255, 255))


def sample_grid(images: np.ndarray, masks: np.ndarray, path: str | Path, n: int = 16, cols: int = 8,
                tile: int = 128, label_map: bool = False) -> Path:
    """Images [N, H, W, 3] (or [N, H, W] grey) with their mask contours, n tiles upscaled to ``tile`` px.
    Binary masks ({0, 255}): one green contour. ``label_map`` (values 0..K-1): one contour per class, in
    :data:`CLASS_COLORS` order (class 1 green, 2 red, 3 blue, ...)."""
    from PIL import Image

    n = min(n, len(images))
    rows = (n + cols - 1) // cols
    cols = min(cols, n)
    canvas = Image.new("RGB", (cols * tile + (cols + 1) * 2, rows * tile + (rows + 1) * 2), (255, 255, 255))
    for k in range(n):
        im = Image.fromarray(images[k]).convert("RGB").resize((tile, tile), Image.NEAREST)
        m = np.asarray(Image.fromarray(masks[k]).resize((tile, tile), Image.NEAREST))
        a = np.array(im)
        if label_map:
            for c in range(1, int(m.max()) + 1):
                a[_contour((m == c).astype(np.uint8) * 255)] = CLASS_COLORS[(c - 1) % len(CLASS_COLORS)]
        else:
            a[_contour(m)] = CLASS_COLORS[0]
        r, q = divmod(k, cols)
        canvas.paste(Image.fromarray(a), (2 + q * (tile + 2), 2 + r * (tile + 2)))
    path = Path(path)
    canvas.save(path)
    return path


def bar_chart(values: dict, path: str | Path, title: str, width: int = 640, vmax: float | None = None) -> Path:
    """Horizontal bars: {label: value}."""
    from PIL import Image, ImageDraw

    items = [(k, float(v)) for k, v in values.items() if v is not None and np.isfinite(v)]
    h = 30 + 22 * max(len(items), 1)
    img = Image.new("RGB", (width, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((8, 6), title, fill=(0, 0, 0))
    top = max([v for _, v in items] + [1e-12]) if vmax is None else vmax
    x0, x1 = 200, width - 80
    for i, (k, v) in enumerate(items):
        y = 28 + 22 * i
        d.text((8, y + 3), k[:30], fill=(0, 0, 0))
        d.rectangle([x0, y, x0 + int((x1 - x0) * max(v, 0) / top), y + 16], fill=SYNTH_COLOR)
        d.text((x1 + 6, y + 3), f"{v:.4g}", fill=(0, 0, 0))
    path = Path(path)
    img.save(path)
    return path


def _hist_panel(d, box, synth: list, real: list | None, labels: list, title: str) -> None:
    x0, y0, x1, y1 = box
    d.rectangle(box, outline=(180, 180, 180))
    d.text((x0 + 4, y0 + 2), title, fill=(0, 0, 0))
    nb = len(synth)
    top = max(list(synth) + list(real or []) + [1e-12])
    bw = (x1 - x0 - 8) / nb
    base = y1 - 16
    for i in range(nb):
        bx = x0 + 4 + i * bw
        for j, (vals, col) in enumerate(((synth, SYNTH_COLOR), (real, REAL_COLOR))):
            if vals is None:
                continue
            hh = (base - y0 - 18) * vals[i] / top
            d.rectangle([bx + j * bw / 2, base - hh, bx + (j + 1) * bw / 2 - 1, base], fill=col)
        if labels and (nb <= 6 or i % max(nb // 5, 1) == 0):
            d.text((bx, base + 2), labels[i], fill=(0, 0, 0))


def mask_histograms(synth: dict, real: dict | None, path: str | Path) -> Path:
    """Area fraction, component count and centroid histograms; synthetic orange, real blue."""
    from PIL import Image, ImageDraw

    from .masks import AREA_BINS, CENTROID_BINS, COMPONENT_BINS

    img = Image.new("RGB", (900, 520), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((8, 4), "mask statistics: synthetic (orange) vs real (blue)", fill=(0, 0, 0))
    r = real or {}
    _hist_panel(d, (8, 24, 446, 266), synth["hist_area_fraction"], r.get("hist_area_fraction"),
                [f"{b:.2f}" for b in AREA_BINS[:-1]], "polyp area fraction")
    _hist_panel(d, (454, 24, 892, 266), synth["hist_components"], r.get("hist_components"),
                [str(c) if c < COMPONENT_BINS[-1] else f"{c}+" for c in COMPONENT_BINS], "connected components")
    _hist_panel(d, (8, 274, 446, 516), synth["hist_centroid_y"], r.get("hist_centroid_y"),
                [f"{b:.1f}" for b in CENTROID_BINS[:-1]], "centroid y (fraction of height)")
    _hist_panel(d, (454, 274, 892, 516), synth["hist_centroid_x"], r.get("hist_centroid_x"),
                [f"{b:.1f}" for b in CENTROID_BINS[:-1]], "centroid x (fraction of width)")
    path = Path(path)
    img.save(path)
    return path
