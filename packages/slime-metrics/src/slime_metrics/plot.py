"""Line charts as PNG with Pillow (already installed with TensorBoard), so a report needs no plotting library."""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1000, 480
LEFT, RIGHT, TOP, BOTTOM = 80, 740, 50, 420  # the plot area; the legend sits to its right
COLORS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]
MARKER_MAX_POINTS = 60  # draw point markers only while they stay readable


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(ticks[-1] + step)
    return ticks


def line_plot(path: Path, title: str, series: Mapping[str, Sequence[tuple[float, float]]], xlabel: str) -> None:
    """Draw each series (name -> (x, y) points) as a line and write a PNG; non-finite values are skipped."""
    points = {
        name: sorted((x, y) for x, y in values if math.isfinite(x) and math.isfinite(y))
        for name, values in series.items()
    }
    points = {name: values for name, values in points.items() if values}
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(16), _font(12)
    draw.text((LEFT, 14), title, fill="black", font=font)
    if not points:
        draw.text((LEFT, TOP + 20), "no data", fill="gray", font=font)
        image.save(path)
        return

    xs = [x for values in points.values() for x, _ in values]
    ys = [y for values in points.values() for _, y in values]
    x_ticks = nice_ticks(min(xs), max(xs))
    low, high = min(ys), max(ys)
    if low == high:  # a flat line still gets a readable axis around its value
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    y_ticks = nice_ticks(low, high)
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return (
            LEFT + (x - x0) / (x1 - x0) * (RIGHT - LEFT),
            BOTTOM - (y - y0) / (y1 - y0) * (BOTTOM - TOP),
        )

    for tick in y_ticks:
        _, py = to_pixel(x0, tick)
        draw.line([(LEFT, py), (RIGHT, py)], fill=(230, 230, 230))
        label = f"{tick:.4g}"
        draw.text((LEFT - 8 - draw.textlength(label, font=small), py - 7), label, fill="black", font=small)
    for tick in x_ticks:
        px, _ = to_pixel(tick, y0)
        draw.line([(px, BOTTOM), (px, BOTTOM + 5)], fill="black")
        label = f"{tick:.6g}"
        draw.text((px - draw.textlength(label, font=small) / 2, BOTTOM + 8), label, fill="black", font=small)
    draw.rectangle([LEFT, TOP, RIGHT, BOTTOM], outline="black")
    xlabel_x = (LEFT + RIGHT) / 2 - draw.textlength(xlabel, font=small) / 2
    draw.text((xlabel_x, BOTTOM + 30), xlabel, fill="black", font=small)

    for index, (name, values) in enumerate(points.items()):
        color = COLORS[index % len(COLORS)]
        pixels = [to_pixel(x, y) for x, y in values]
        if len(pixels) > 1:
            draw.line(pixels, fill=color, width=2)
        if len(pixels) <= MARKER_MAX_POINTS:
            for px, py in pixels:
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=color)
        legend_y = TOP + index * 20
        draw.line([(RIGHT + 20, legend_y + 8), (RIGHT + 40, legend_y + 8)], fill=color, width=3)
        draw.text((RIGHT + 46, legend_y), name, fill="black", font=small)
    image.save(path)
