"""Printed digits in MNIST's format, from the TrueType faces matplotlib ships: data a digit
model never saw the like of, to check it off its training distribution.

    python tools/render_digits.py --out=/tmp/printed_digits
    python -m tfclf.predict --model=runs/quickstart/compress/trained_int8.tflite /tmp/printed_digits

Each digit 0-9 is drawn in each face (DejaVu Sans, Sans Mono and Serif, STIX and Computer
Modern: 20 faces), white on black, scaled so its longer side is ``--box`` pixels and placed
with its centre of mass at the centre of a ``--size`` square, as MNIST's digits were (20 in
28). One folder per class, the layout ``tfclf.predict`` and ``--source=folder:`` read.
"""

from pathlib import Path

import numpy as np
from absl import app, flags
from matplotlib import get_data_path
from PIL import Image, ImageDraw, ImageFont

flags.DEFINE_string("out", None, "Output directory (one sub-folder per digit).", required=True)
flags.DEFINE_integer("size", 28, "Image side in pixels.")
flags.DEFINE_integer("box", 20, "The digit's longer side in pixels.")
FLAGS = flags.FLAGS

# Text faces with ordinary digits (the symbol and display faces are left out).
FACES = (
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSans-Oblique",
    "DejaVuSans-BoldOblique",
    "DejaVuSansMono",
    "DejaVuSansMono-Bold",
    "DejaVuSansMono-Oblique",
    "DejaVuSansMono-BoldOblique",
    "DejaVuSerif",
    "DejaVuSerif-Bold",
    "DejaVuSerif-Italic",
    "DejaVuSerif-BoldItalic",
    "STIXGeneral",
    "STIXGeneralBol",
    "STIXGeneralItalic",
    "STIXGeneralBolIta",
    "cmr10",
    "cmss10",
    "cmtt10",
    "cmb10",
)


def render(font: ImageFont.FreeTypeFont, digit: str, size: int = 28, box: int = 20) -> np.ndarray:
    """One digit as a uint8 ``size`` x ``size`` image, MNIST-style (white on black); ``font``
    at 200 px."""
    canvas = Image.new("L", (400, 400))
    ImageDraw.Draw(canvas).text((100, 50), digit, fill=255, font=font)
    glyph = canvas.crop(canvas.getbbox())
    scale = box / max(glyph.size)
    glyph = glyph.resize(
        (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
        Image.LANCZOS,
    )
    pixels = np.asarray(glyph, np.float64)
    rows, cols = np.indices(pixels.shape)
    centre_row = (rows * pixels).sum() / pixels.sum()
    centre_col = (cols * pixels).sum() / pixels.sum()
    top = int(np.clip(round(size / 2 - centre_row), 0, size - glyph.height))
    left = int(np.clip(round(size / 2 - centre_col), 0, size - glyph.width))
    image = Image.new("L", (size, size))
    image.paste(glyph, (left, top))
    return np.asarray(image)


def main(argv):
    del argv
    if FLAGS.box > FLAGS.size:
        raise app.UsageError(f"--box={FLAGS.box} must not exceed --size={FLAGS.size}")
    fonts = Path(get_data_path()) / "fonts" / "ttf"
    out = Path(FLAGS.out)
    for face in FACES:
        font = ImageFont.truetype(str(fonts / f"{face}.ttf"), 200)
        for digit in "0123456789":
            (out / digit).mkdir(parents=True, exist_ok=True)
            image = render(font, digit, FLAGS.size, FLAGS.box)
            Image.fromarray(image).save(out / digit / f"{face}.png")
    print(f"{10 * len(FACES)} images ({len(FACES)} faces x 10 digits) in {out}")


if __name__ == "__main__":
    app.run(main)
