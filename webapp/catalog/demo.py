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
        body = [(int(60 * s), int(130 * s)), (int(324 * s), int(130 * s)),
                (int(294 * s), int(330 * s)), (int(90 * s), int(330 * s))]
        for x in (110, 234):
            draw.arc([int(x * s), int(50 * s), int((x + 40) * s), int(210 * s)], 180, 360,
                     fill=colour, width=int(9 * s))
        draw.polygon(body, fill=colour)
        mask = Image.new("L", image.size, 0)
        ImageDraw.Draw(mask).polygon(body, fill=255)
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


