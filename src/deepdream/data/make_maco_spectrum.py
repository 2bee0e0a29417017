"""Regenerate maco_spectrum.npy: the mean amplitude spectrum of photos that MACO keeps fixed.

    python src/deepdream/data/make_maco_spectrum.py /work/shared/data/cats-vs-dogs/train [--size 128]

Every JPEG/PNG under the folder is decoded (EXIF orientation applied), centre-cropped square, resized
to SIZE px, turned into decorrelated colour and Fourier-transformed; the mean |rfft2| (3 x SIZE x
SIZE//2+1, float32) is written next to this script, atomically. The shipped file was made from the
2000 photos of cats-vs-dogs train/ at 128 px.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from deepdream import imagefiles
from deepdream.featurevis import SPECTRUM_FILE, fit_spectrum


def photos(folder: Path):
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        yield imagefiles.load_image(path)[0][0]  # 3 x H x W in [0, 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    spectrum = fit_spectrum(photos(args.folder), args.size).numpy().astype(np.float32)
    target = Path(__file__).with_name(SPECTRUM_FILE)
    imagefiles.atomic_write(target, lambda tmp: np.save(tmp, spectrum))
    print(f"wrote {target}: {spectrum.shape}, from {args.folder}")


if __name__ == "__main__":
    main()
