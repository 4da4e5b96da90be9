"""Build ``demo/``, the photos the README's ``realfake predict demo`` example scores: the first real and the
first fake of the sample's test split, that fake blurred (Gaussian sigma 2) and resized to 0.75 and back,
scikit-image's astronaut (a real photograph), the same photograph stored sideways with an EXIF orientation
tag as a phone stores it, and a photo without a face. Run it in a workspace where ``dvc repro`` has run:

    python tools/make_demo.py && realfake predict demo
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageFilter


def main(out: Path = Path("demo"), raw: Path = Path("data/raw/real_vs_fake/real-vs-fake/test")) -> None:
    """Write the demo photos into ``out``."""
    from skimage import data

    out.mkdir(exist_ok=True)
    real, fake = (sorted((raw / kind).iterdir())[0] for kind in ("real", "fake"))
    for src in (real, fake):
        Image.open(src).save(out / src.name)
    with Image.open(fake) as im:
        im.convert("RGB").filter(ImageFilter.GaussianBlur(2)).save(out / f"{fake.stem}-blurred.png")
        small = im.convert("RGB").resize((192, 192), Image.BICUBIC).resize(im.size, Image.BICUBIC)
        small.save(out / f"{fake.stem}-resized.png")
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(out / "astronaut.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored pixels are turned 90 degrees; a viewer turns them back
    astronaut.transpose(Image.Transpose.ROTATE_90).save(out / "astronaut-sideways.jpg", exif=exif, quality=95)
    Image.fromarray(data.coffee()).save(out / "coffee.jpg")
    print(f"{out}: {len(list(out.iterdir()))} photos")


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:]))
