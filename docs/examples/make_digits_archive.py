"""Write scikit-learn's digits (1,797 8x8 images, 10 classes) as a zip of PNGs in class folders.

    python docs/examples/make_digits_archive.py digits.zip

The images are the original 8x8 grey levels scaled from 0..16 to 0..255; the scoring service
resizes them to the job's image size.
"""

from __future__ import annotations

import argparse
import io
import zipfile

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main(out: str) -> None:
    digits = load_digits()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, (img, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            buf = io.BytesIO()
            Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L").save(buf, format="PNG")
            zf.writestr(f"digits/{label}/{i:04d}.png", buf.getvalue())
    print(f"wrote {len(digits.images)} images in {len(set(digits.target))} classes to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="digits.zip", help="the zip to write")
    main(parser.parse_args().out)
