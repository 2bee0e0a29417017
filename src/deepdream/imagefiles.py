"""Image files in and out: EXIF, colour modes, size caps, metadata, atomic writes. The only module
that touches image files."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import ImageError, OutputError

METADATA_KEY = "deepdream"
# extension -> (Pillow format, keeps alpha)
FORMATS = {
    ".png": ("PNG", True),
    ".jpg": ("JPEG", False),
    ".jpeg": ("JPEG", False),
    ".webp": ("WEBP", True),
    ".tif": ("TIFF", True),
    ".tiff": ("TIFF", True),
    ".bmp": ("BMP", False),
}


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image file, EXIF orientation applied; errors are ImageError."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"no such file: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a directory, not an image")
    try:
        with warnings.catch_warnings():
            # an image over Pillow's pixel limit is treated as a decompression bomb, not just warned about
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return ImageOps.exif_transpose(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path} is too large to decode safely ({exc})") from exc
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot read {path}: the file is truncated or corrupt ({exc})") from exc


DEEP_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _deep_grey(img: Image.Image) -> np.ndarray | None:
    """A 16-bit or float greyscale image as H x W float32 in [0, 1], scaled by its mode's range (never clipped
    at 255, which would turn 25% grey white); None for any other mode."""
    if img.mode not in DEEP_GREY_MODES:
        return None
    a = np.asarray(img, dtype=np.float32)
    scale = 65535.0 if img.mode != "F" or a.max() > 1 else 1.0
    return np.clip(a / scale, 0, 1)


def pil_to_tensor(img: Image.Image) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RGB float tensor 1 x 3 x H x W in [0, 1] and alpha 1 x 1 x H x W (or None), for any mode."""
    mode = img.mode
    grey = _deep_grey(img)
    if grey is not None:
        rgb = torch.from_numpy(grey)[None, None].expand(1, 3, *grey.shape).clone()
        return rgb, None
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info)
    a = from_uint8(np.asarray(img.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8))
    return (a[:, :3], a[:, 3:]) if has_alpha else (a, None)


def tensor_to_pil(rgb: torch.Tensor, alpha: torch.Tensor | None = None) -> Image.Image:
    """Inverse of `pil_to_tensor` (alpha resized to the image if needed)."""
    x = rgb.detach().float().clamp(0, 1)
    if alpha is not None:
        if alpha.shape[-2:] != x.shape[-2:]:
            alpha = F.interpolate(alpha.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([x, alpha.to(x.device).clamp(0, 1)], dim=1)
    return Image.fromarray(to_uint8(x), "RGBA" if alpha is not None else "RGB")


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """H x W x C uint8 (or float in [0, 1]) -> 1 x C x H x W float in [0, 1]."""
    t = torch.from_numpy(np.require(array, requirements=["C", "W"]))  # copies only read-only or strided arrays
    t = t.float() / 255 if t.dtype == torch.uint8 else t.float()
    return t.permute(2, 0, 1)[None]


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """1 x C x H x W float in [0, 1] -> H x W x C uint8, rounded."""
    x = tensor[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return (x * 255 + 0.5).astype(np.uint8)


def fit_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(width, height) scaled down so the long side is at most max_size."""
    if max_size is None or max(width, height) <= max_size:
        return width, height
    s = max_size / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def load_image(path: str | Path, max_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read an image file as (rgb, alpha) tensors, the long side capped at max_size."""
    img = open_image(path)
    size = fit_size(*img.size, max_size)
    if size != img.size:
        img = img.resize(size, Image.Resampling.LANCZOS) if img.mode not in ("I;16", "I;16B", "I") else img.resize(size)
    return pil_to_tensor(img)


def check_output(path: str | Path, *, force: bool = False, inputs: tuple[str | Path, ...] = ()) -> Path:
    """Validate an output path before any work: known format, not an input, not existing unless forced."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise OutputError(f"unknown output format '{path.suffix}' for {path} (use {', '.join(FORMATS)})")
    return check_writable(path, force=force, inputs=inputs)


def check_apart(path: str | Path, inputs: tuple[str | Path | None, ...]) -> Path:
    """Refuse an output that is one of the inputs (any file the command reads: image, checkpoint,
    config, another output) or lies inside an input folder (a dataset, a run folder); --force or not."""
    path = Path(path)
    target = path.resolve()  # through symlinks: a link to the input is the input
    for src in inputs:
        if src is None:
            continue
        source = Path(src).resolve()
        if source == target or (path.exists() and source.exists() and os.path.samefile(source, path)):
            raise OutputError(f"refusing to overwrite the input {src}")
        if source.is_dir() and target.is_relative_to(source):
            raise OutputError(f"refusing to write {path} inside {src}, which this command reads")
    return path


def check_writable(path: Path, *, force: bool = False, inputs: tuple[str | Path | None, ...] = ()) -> Path:
    """Refuse to overwrite inputs or to write into input folders (even forced), or existing files
    (unless forced); the folder must be writable."""
    path = check_apart(path, inputs)
    if path.is_dir():
        raise OutputError(f"{path} is a directory")
    if path.exists() and not force:
        raise OutputError(f"{path} exists (use --force to overwrite)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write to {parent}")
    return path


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path) then rename over `path`: readers never see a half-written file."""
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_image(img: Image.Image, path: str | Path, *, metadata: str | None = None) -> Path:
    """Write a PIL image atomically in the format of the extension, with settings metadata."""
    path = Path(path)
    fmt, keeps_alpha = FORMATS.get(path.suffix.lower(), (None, False))
    if fmt is None:
        raise OutputError(f"unknown output format '{path.suffix}'")
    if img.mode == "RGBA" and not keeps_alpha:
        img = img.convert("RGB")
    options: dict = {}
    if metadata is not None:
        if fmt == "PNG":
            info = PngImagePlugin.PngInfo()
            info.add_text(METADATA_KEY, metadata)
            options["pnginfo"] = info
        elif fmt in ("JPEG", "WEBP"):
            options["comment" if fmt == "JPEG" else "xmp"] = metadata.encode()
    if fmt == "JPEG":
        options["quality"] = 95

    def write(tmp: Path) -> None:
        try:
            img.save(tmp, format=fmt, **options)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc}") from exc

    try:
        atomic_write(path, write)
    except PermissionError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc
    return path


def read_metadata(path: str | Path) -> dict | None:
    """The settings dict stored in an image by `save_image`, or None."""
    img = open_image(path)
    text = img.info.get(METADATA_KEY) or img.info.get("comment") or img.info.get("xmp")
    if not text:
        return None
    try:
        data = json.loads(text.decode() if isinstance(text, bytes) else text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data.get(METADATA_KEY) if isinstance(data, dict) else None


def load_mask(path: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """A mask file as 1 x 1 x H x W in [0, 1] at `size` (H, W): its grey level, white = 1 = dream."""
    img = open_image(path)
    grey = _deep_grey(img)
    # a deep mask is resized as floats ("F"), so its levels between two 8-bit steps survive
    img = Image.fromarray(grey) if grey is not None else img.convert("L")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    scale = 1.0 if grey is not None else 255.0
    return torch.from_numpy(np.clip(np.asarray(img, dtype=np.float32) / scale, 0, 1))[None, None]
