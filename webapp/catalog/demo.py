"""A procedurally drawn demo catalogue of bags.

Every image is drawn here with Pillow from a seed, so the demo needs no download and its
licence is the project's own (CC0-1.0). Each SKU is a bag shape, colour, pattern and
hardware finish with its brand's initial on a plate; "appraisal photos" are the same bag
re-drawn with a cluttered background, another angle, lighting and JPEG artefacts, for trying
the matcher.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from webapp.catalog.importing import CatalogueRow, write_catalogue_csv

CANVAS = 384

COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 30),
    "tan": (196, 140, 86),
    "burgundy": (120, 24, 44),
    "navy": (30, 44, 92),
    "cream": (236, 226, 200),
    "olive": (98, 104, 52),
    "red": (200, 36, 36),
    "pink": (232, 150, 170),
}
HARDWARE = {"gold": (212, 175, 55), "silver": (192, 192, 200)}

# (category, brand, series, shape, pattern, material)
LINES = [
    ("Handbags", "Maison Aubert", "Lune", "handbag", "quilted", "lambskin"),
    ("Handbags", "Maison Aubert", "Riviera", "handbag", "monogram", "canvas"),
    ("Handbags", "Velluto", "Arco", "handbag", "solid", "calfskin"),
    ("Totes", "Velluto", "Mercato", "tote", "stripes", "canvas"),
    ("Totes", "Kirin & Co", "Harbour", "tote", "solid", "leather"),
    ("Backpacks", "Kirin & Co", "Summit", "backpack", "solid", "nylon"),
    ("Backpacks", "Maison Aubert", "Voyage", "backpack", "monogram", "canvas"),
]
COLOURS_PER_LINE = 4
BAG_CATEGORIES = ("Handbags", "Totes", "Backpacks")
# Detector classes that count as a bag (small COCO models confuse the three).
BAG_DETECTION_CLASSES = ["backpack", "handbag", "suitcase"]


def demo_detection_classes_set() -> int:
    """Give the demo's bag categories their detector target classes."""
    from webapp.catalog.models import Category

    return Category.objects.filter(name__in=BAG_CATEGORIES).update(
        detection_classes=BAG_DETECTION_CLASSES
    )


@dataclass(frozen=True)
class DemoSku:
    code: str
    category: str
    brand: str
    series: str
    shape: str
    pattern: str
    material: str
    colour: str
    hardware: str


def demo_skus() -> list[DemoSku]:
    skus = []
    colour_names = list(COLOURS)
    for line_index, (category, brand, series, shape, pattern, material) in enumerate(LINES):
        for i in range(COLOURS_PER_LINE):
            colour = colour_names[(line_index * 3 + i) % len(colour_names)]
            hardware = "gold" if (line_index + i) % 2 == 0 else "silver"
            code = f"DEMO-{brand.split()[0][:3].upper()}-{series[:3].upper()}-{i + 1:02d}"
            skus.append(
                DemoSku(code, category, brand, series, shape, pattern, material, colour, hardware)
            )
    return skus


def _draw_pattern(image: Image.Image, body_mask: Image.Image, sku: DemoSku) -> None:
    """Draw the SKU's pattern clipped to `body_mask` (mode L, white = bag body)."""
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    _draw_pattern_unclipped(ImageDraw.Draw(layer), body_mask.getbbox() or (0, 0, 1, 1), sku)
    clipped = Image.new("RGBA", image.size, (0, 0, 0, 0))
    clipped.paste(layer, (0, 0), Image.composite(layer.getchannel("A"), body_mask, body_mask))
    image.alpha_composite(clipped)


def _draw_pattern_unclipped(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], sku: DemoSku
) -> None:
    x0, y0, x1, y1 = box
    base = COLOURS[sku.colour]
    accent = tuple(max(0, min(255, c + (50 if sum(base) < 300 else -50))) for c in base)
    if sku.pattern == "stripes":
        for x in range(x0, x1, 18):
            draw.rectangle([x, y0, x + 7, y1], fill=accent)
    elif sku.pattern == "quilted":
        for offset in range(-(y1 - y0), x1 - x0, 26):
            draw.line([x0 + offset, y0, x0 + offset + (y1 - y0), y1], fill=accent, width=2)
            draw.line([x0 + offset, y1, x0 + offset + (y1 - y0), y0], fill=accent, width=2)
    elif sku.pattern == "monogram":
        for y in range(y0 + 10, y1, 28):
            for x in range(x0 + 10 + (y // 28 % 2) * 14, x1, 28):
                draw.ellipse([x - 5, y - 5, x + 5, y + 5], outline=accent, width=2)


def draw_bag(sku: DemoSku, *, size: int = CANVAS) -> Image.Image:
    """The bag on a transparent canvas, front view. Returns RGBA [size, size]."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    colour = COLOURS[sku.colour]
    metal = HARDWARE[sku.hardware]
    s = size / CANVAS
    if sku.shape == "handbag":
        body = (int(70 * s), int(150 * s), int(314 * s), int(320 * s))
        draw.arc([int(120 * s), int(70 * s), int(264 * s), int(230 * s)], 180, 360,
                 fill=metal, width=int(10 * s))
        draw.rounded_rectangle(body, radius=int(28 * s), fill=colour)
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).rounded_rectangle(body, radius=int(28 * s), fill=255)
        _draw_pattern(image, mask, sku)
        draw.rounded_rectangle([int(70 * s), int(150 * s), int(314 * s), int(205 * s)],
                               radius=int(20 * s), fill=tuple(int(c * 0.85) for c in colour))
        draw.ellipse([int(176 * s), int(185 * s), int(208 * s), int(217 * s)], fill=metal)
    elif sku.shape == "tote":
        outline = [(int(60 * s), int(130 * s)), (int(324 * s), int(130 * s)),
                   (int(294 * s), int(330 * s)), (int(90 * s), int(330 * s))]
        for x in (110, 234):
            draw.arc([int(x * s), int(50 * s), int((x + 40) * s), int(210 * s)], 180, 360,
                     fill=colour, width=int(9 * s))
        draw.polygon(outline, fill=colour)
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).polygon(outline, fill=255)
        _draw_pattern(image, mask, sku)
        draw.rectangle([int(60 * s), int(130 * s), int(324 * s), int(145 * s)], fill=metal)
    else:  # backpack
        body = (int(95 * s), int(90 * s), int(289 * s), int(340 * s))
        draw.arc([int(150 * s), int(40 * s), int(234 * s), int(130 * s)], 180, 360,
                 fill=colour, width=int(10 * s))
        draw.rounded_rectangle(body, radius=int(60 * s), fill=colour)
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).rounded_rectangle(body, radius=int(60 * s), fill=255)
        _draw_pattern(image, mask, sku)
        pocket = (int(125 * s), int(220 * s), int(259 * s), int(320 * s))
        draw.rounded_rectangle(pocket, radius=int(20 * s),
                               fill=tuple(int(c * 0.8) for c in colour))
        draw.line([int(135 * s), int(232 * s), int(249 * s), int(232 * s)], fill=metal,
                  width=int(5 * s))
    _draw_emblem(draw, sku, s)
    return image


# Where each shape carries its brand emblem (canvas pixels at CANVAS size).
EMBLEM_CENTRE = {"handbag": (192, 265), "tote": (192, 230), "backpack": (192, 180)}


def _draw_emblem(draw: ImageDraw.ImageDraw, sku: DemoSku, s: float) -> None:
    """The brand's initial, large, on a hardware-coloured plate: a logo for local features to
    find (the quilting, stripes and monogram repeat, so the ratio test rejects their matches).
    One bold glyph, not a word: fine text lowered the JPEG self-match cosine measurably."""
    text = sku.brand[0].upper()
    font = ImageFont.load_default(size=max(8, int(40 * s)))
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    cx, cy = EMBLEM_CENTRE[sku.shape]
    left, top = cx * s - (x1 - x0) / 2, cy * s - (y1 - y0) / 2
    draw.rounded_rectangle(
        [left - 10 * s, top + y0 - 8 * s, left + (x1 - x0) + 10 * s, top + y1 + 8 * s],
        radius=int(6 * s), fill=HARDWARE[sku.hardware],
    )
    draw.text((left - x0, top), text, font=font, fill=(30, 30, 30))


def _background(rng: random.Random, size: int, cluttered: bool) -> Image.Image:
    if not cluttered:
        return Image.new("RGB", (size, size), (250, 250, 248))
    tone = tuple(rng.randint(120, 220) for _ in range(3))
    image = Image.new("RGB", (size, size), tone)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randint(0, size), rng.randint(0, size)
        w, h = rng.randint(20, 120), rng.randint(20, 120)
        fill = tuple(rng.randint(60, 240) for _ in range(3))
        draw.rectangle([x, y, x + w, y + h], fill=fill)
    return image.filter(ImageFilter.GaussianBlur(3))


def render_reference(sku: DemoSku, view: int) -> Image.Image:
    """Catalogue shot: clean background; view 1 is slightly rotated."""
    bag = draw_bag(sku)
    if view:
        bag = bag.rotate(8, resample=Image.Resampling.BICUBIC)
    canvas = _background(random.Random(0), CANVAS, cluttered=False)
    canvas.paste(bag, (0, 0), bag)
    return canvas


def render_photo(sku: DemoSku, seed: int) -> Image.Image:
    """An 'appraisal photo': clutter, angle, scale, lighting and JPEG artefacts."""
    rng = random.Random(seed)
    size = 512
    canvas = _background(rng, size, cluttered=True)
    scale = rng.uniform(0.75, 1.0)
    bag = draw_bag(sku, size=int(CANVAS * scale))
    bag = bag.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BICUBIC, expand=True)
    offset = (rng.randint(0, size - bag.width), rng.randint(0, size - bag.height))
    canvas.paste(bag, offset, bag)
    canvas = ImageEnhance.Brightness(canvas).enhance(rng.uniform(0.75, 1.2))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=rng.randint(55, 85))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def write_demo_catalogue(folder: Path, *, photos_per_sku: int = 2) -> Path:
    """Write images/, photos/ and catalogue.csv into `folder`; return the CSV path."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, sku in enumerate(demo_skus()):
        names = []
        for view in range(2):
            name = f"images/{sku.code}-{view}.png"
            render_reference(sku, view).save(folder / name)
            names.append(name)
        for p in range(photos_per_sku):
            render_photo(sku, seed=1000 * index + p).save(
                folder / "photos" / f"{sku.code}-photo{p}.jpg", quality=90
            )
        rows.append(
            CatalogueRow(
                sku_code=sku.code,
                name=f"{sku.brand} {sku.series} {sku.colour.title()}",
                category=sku.category,
                brand=sku.brand,
                series=sku.series,
                colour=sku.colour,
                material=sku.material,
                size="M",
                images=tuple(names),
                attributes={"hardware": sku.hardware, "pattern": sku.pattern},
            )
        )
    csv_path = folder / "catalogue.csv"
    write_catalogue_csv(csv_path, rows)
    (folder / "LICENSE.txt").write_text(
        "Demo catalogue drawn procedurally by SKU Lens (webapp/catalog/demo.py).\n"
        "Brands and products are fictional. Licence: CC0-1.0.\n"
    )
    return csv_path




# ----- labelled history: past listings already matched to their SKUs ------------------------

HISTORY_LISTINGS_PER_SKU = 8
HISTORY_SEED = 500_000  # far from the sample photos' seeds (1000 * sku index + photo)
HISTORY_SIZE = 448
HISTORY_START = datetime(2023, 1, 2, 10, 0, tzinfo=UTC)


def _table_scene(rng: random.Random, size: int) -> tuple[Image.Image, int]:
    """A wall over a table top with a few soft objects; returns it and the table's edge row.

    Drawn at a quarter of the size and scaled up: as soft as a blur, at a fraction of its cost."""
    small = size // 4
    wall = tuple(rng.randint(150, 235) for _ in range(3))
    table = tuple(rng.randint(70, 170) for _ in range(3))
    edge = rng.randint(int(small * 0.45), int(small * 0.65))
    image = Image.new("RGB", (small, small), wall)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, edge, small, small], fill=table)
    for _ in range(rng.randint(2, 5)):
        x, y = rng.randint(0, small), rng.randint(0, edge)
        r = rng.randint(4, 15)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randint(40, 250)
                                                               for _ in range(3)))
    for y in range(edge, small, rng.randint(2, 4)):  # wood grain
        shade = tuple(max(0, c - rng.randint(5, 20)) for c in table)
        draw.line([0, y, small, y + rng.randint(-2, 2)], fill=shade, width=1)
    return image.resize((size, size), Image.Resampling.BICUBIC), edge * 4


def render_history_photo(sku: DemoSku, seed: int) -> bytes:
    """A past listing's photo (JPEG bytes), unlike the sample photos: a table-top scene, the
    bag turned (narrower), a soft shadow, its own seeds and lighting."""
    rng = random.Random(seed)
    size = HISTORY_SIZE
    canvas, edge = _table_scene(rng, size)
    bag = draw_bag(sku, size=int(CANVAS * rng.uniform(0.7, 0.95)))
    turned = max(1, int(bag.width * rng.uniform(0.72, 1.0)))
    bag = bag.resize((turned, bag.height), Image.Resampling.BILINEAR)
    bag = bag.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR, expand=True)
    x = rng.randint(0, max(0, size - bag.width))
    y = min(max(0, edge - bag.height // 2 + rng.randint(0, 60)), size - bag.height)
    box = bag.getbbox() or (0, 0, bag.width, bag.height)
    shadow = Image.new("L", (size // 4, size // 4), 0)
    ImageDraw.Draw(shadow).ellipse([(x + box[0]) / 4, (y + box[3] - 18) / 4,
                                    (x + box[2] + 25) / 4, (y + box[3] + 12) / 4], fill=110)
    canvas.paste((20, 20, 20), (0, 0), shadow.resize(canvas.size, Image.Resampling.BICUBIC))
    canvas.paste(bag, (x, y), bag)
    canvas = ImageEnhance.Brightness(canvas).enhance(rng.uniform(0.8, 1.15))
    canvas = ImageEnhance.Contrast(canvas).enhance(rng.uniform(0.85, 1.1))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=rng.randint(60, 90))
    return buffer.getvalue()


def write_demo_history(
    folder: Path, *, listings_per_sku: int = HISTORY_LISTINGS_PER_SKU
) -> Path:
    """Draw past listings into `folder/photos/` (every fourth has a second photo) and write
    `folder/history.csv` in the history import format; return the CSV path."""
    from webapp.history.format import HistoryRow, write_history_csv

    (folder / "photos").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, sku in enumerate(demo_skus()):
        for listing in range(listings_per_sku):
            key = f"L{index + 1:02d}{listing + 1:02d}"
            when = HISTORY_START + timedelta(days=7 * listing + index % 7, hours=index % 8)
            for view in range(2 if listing % 4 == 3 else 1):
                name = f"photos/{sku.code}-{key}-{view}.jpg"
                seed = HISTORY_SEED + 1000 * index + 10 * listing + view
                (folder / name).write_bytes(render_history_photo(sku, seed))
                rows.append(HistoryRow(0, sku.code, name, key, when))
    csv_path = folder / "history.csv"
    write_history_csv(csv_path, rows)
    return csv_path
