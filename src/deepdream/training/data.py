"""Image-folder datasets: find the split, decode every image once into memory, augment batches as tensors.

A data folder is either `train/<class>/*` plus `test/<class>/*` (or `val/`), or a single `<class>/*`
tree split with `val_split`. Each image is decoded once, resized so its short side is `resize` and
centre-cropped square; the epoch loop then only crops, flips and colours uint8 tensors, which keeps a
2-core CPU busy with the network instead of JPEG decoding.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np
import torch
from PIL import Image

from .. import imagefiles
from ..errors import DatasetError, ImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"})
TEST_FOLDERS = ("test", "val", "valid", "validation")


class SkippedImageWarning(UserWarning):
    """An image in a dataset could not be decoded and was left out."""


@dataclass(frozen=True)
class Split:
    """Image paths and integer labels, with the class names the labels index."""

    classes: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> list[int]:
        """Images per class, in class order."""
        return np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(self.classes)).tolist()


@dataclass(frozen=True)
class DataSplits:
    """What training needs: a training split, the split that picks the best epoch, and an optional final test."""

    train: Split
    val: Split
    test: Split | None  # a held-out folder evaluated at the end when `val` was carved out of train
    layout: str
    val_name: str = "validation"  # how reports name the split that picks the best epoch


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def scan_folder(folder: str | Path, classes: tuple[str, ...] | None = None) -> Split:
    """Return the images of a `<class>/*` tree; with `classes`, labels follow that order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"data folder not found: {folder}")
    dirs = _class_dirs(folder)
    if not dirs:
        loose = any(_is_image(p) for p in folder.iterdir())
        what = "holds images but no class folders" if loose else "has no class folders"
        raise DatasetError(f"{folder} {what}; expected {folder}/<class>/<image> (e.g. {folder}/cats/1.jpg)")
    names = tuple(d.name for d in dirs)
    if classes is None:
        classes = names
        if len(classes) < 2:
            raise DatasetError(
                f"{folder} has only the class folder '{classes[0]}'; a classifier needs at least 2 classes"
            )
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise DatasetError(f"{folder} has class folders not in the training classes: {', '.join(unknown)}")
    paths: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        files = sorted(p for p in d.rglob("*") if _is_image(p))
        if not files:
            raise DatasetError(f"class folder {d} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        paths += files
        labels += [classes.index(d.name)] * len(files)
    return Split(tuple(classes), tuple(paths), tuple(labels))


def stratified_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split off `fraction` of every class (at least one image each) as validation, reproducibly."""
    if not 0 < fraction < 1:
        raise DatasetError(f"--val-split must be between 0 and 1, got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor(split.labels)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for c, name in enumerate(split.classes):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)].tolist()
        n_val = max(1, round(len(idx) * fraction))
        if n_val >= len(idx):
            raise DatasetError(f"class '{name}' has {len(idx)} image(s), too few to split off a validation set")
        val_idx += idx[:n_val]
        train_idx += idx[n_val:]

    def subset(indices: list[int]) -> Split:
        indices = sorted(indices)
        return Split(split.classes, tuple(split.paths[i] for i in indices), tuple(split.labels[i] for i in indices))

    return subset(train_idx), subset(val_idx)


def discover(root: str | Path, val_split: float | None = None, seed: int = 0) -> DataSplits:
    """Find the training, validation and test images under `root` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder not found: {root}")
    test_dir = next((root / n for n in TEST_FOLDERS if (root / n).is_dir()), None)
    if (root / "train").is_dir():
        train = scan_folder(root / "train")
        test = scan_folder(test_dir, train.classes) if test_dir is not None else None
        if val_split is not None:
            train, val = stratified_split(train, val_split, seed)
            return DataSplits(train, val, test, f"{root}/train (val split {val_split}), test: {test_dir}")
        if test is None:
            raise DatasetError(
                f"{root}/train has no sibling test/ or val/ folder; add {root}/test/<class>/ or pass --val-split"
            )
        return DataSplits(train, test, None, f"{root}/train, best epoch by {test_dir}", test_dir.name)
    if test_dir is not None:
        raise DatasetError(f"{root} has {test_dir.name}/ but no train/ folder; expected {root}/train/<class>/")
    if val_split is None:
        # a plain <class>/ tree: say what to do instead of guessing a split
        scan_folder(root)
        raise DatasetError(
            f"{root} has no train/ and test/ folders; arrange {root}/train/<class>/ and {root}/test/<class>/, "
            "or pass --val-split to split this single <class>/ tree"
        )
    train, val = stratified_split(scan_folder(root), val_split, seed)
    return DataSplits(train, val, None, f"{root} (val split {val_split})")


def evaluation_split(root: str | Path, classes: tuple[str, ...], split: str = "auto") -> Split:
    """The images `deepdream evaluate` scores: `test/` (or `val/`), `train/`, or a plain `<class>/` tree."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data folder not found: {root}")
    if split == "auto":
        test_dir = next((root / n for n in TEST_FOLDERS if (root / n).is_dir()), None)
        if test_dir is not None:
            return scan_folder(test_dir, classes)
        if (root / "train").is_dir():
            raise DatasetError(
                f"{root} has train/ but no test/ folder; pass --split train to score the training images"
            )
        return scan_folder(root, classes)
    if not (root / split).is_dir():
        raise DatasetError(f"{root} has no {split}/ folder")
    return scan_folder(root / split, classes)


# ---------------------------------------------------------------- decoding


@dataclass(frozen=True)
class Decoded:
    """Images decoded once: uint8 N x 3 x S x S, labels N, and the files that were skipped."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    skipped: tuple[tuple[Path, str], ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()


def square_uint8(img: Image.Image, size: int) -> torch.Tensor:
    """RGB uint8 3 x size x size: the short side resized to `size`, the centre cropped."""
    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    img = img.resize(new, Image.Resampling.BILINEAR, reducing_gap=2.0)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def _decode_one(path: Path, size: int) -> torch.Tensor | str:
    try:
        return square_uint8(imagefiles.open_image(path), size)
    except ImageError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug on a hostile file must not end a training run
        return f"cannot read {path}: {exc}"


def decode(
    split: Split,
    size: int,
    *,
    threads: int = 2,
    progress: Callable[[int], object] | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
) -> Decoded:
    """Decode every image of a split to uint8 squares of `size`; unreadable files are skipped and counted.

    `on_skip(path, reason)` is told about each skipped file (default: a SkippedImageWarning).
    """
    if on_skip is None:

        def on_skip(path: Path, reason: str) -> None:
            warnings.warn(f"skipped {path}: {reason}", SkippedImageWarning, stacklevel=3)

    images: list[torch.Tensor] = []
    labels: list[int] = []
    skipped: list[tuple[Path, str]] = []
    # Pillow releases the GIL while decoding, so threads overlap JPEG work without copying tensors between processes
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for path, label, result in zip(
            split.paths, split.labels, pool.map(lambda p: _decode_one(p, size), split.paths)
        ):
            if isinstance(result, str):
                skipped.append((path, result))
                on_skip(path, result)
            else:
                images.append(result)
                labels.append(label)
            if progress is not None:
                progress(1)
    label_tensor = torch.tensor(labels, dtype=torch.long)
    present = set(labels)
    empty = [split.classes[c] for c in sorted(set(split.labels) - present)]
    if empty:
        raise DatasetError(f"no readable images left for class {', '.join(empty)} ({len(skipped)} files skipped)")
    stacked = torch.stack(images) if images else torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return Decoded(stacked, label_tensor, split.classes, tuple(skipped))


# ---------------------------------------------------------------- augmentation and batches


@dataclass(frozen=True)
class PhotoAugment:
    """Random resized crop, horizontal flip and colour jitter on a batch of uint8 squares.

    The crops of a whole batch are one `roi_align` call (bilinear, averaged over each output cell,
    so shrinking is antialiased); all randomness comes from the generator passed in.
    """

    size: int
    scale: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    jitter: float = 0.2  # brightness, contrast and saturation factors in [1 - jitter, 1 + jitter]

    def __call__(self, images: torch.Tensor, generator: torch.Generator, keep: slice = slice(None)) -> torch.Tensor:
        """uint8 B x 3 x S x S -> float b x 3 x size x size in [0, 1], for the rows `keep` of the batch.

        The random draws are made for the whole batch, so a process that augments its share of a
        global batch gets exactly the views that one process training alone would.
        """
        from torchvision.ops import roi_align

        b, s = images.shape[0], images.shape[-1]
        rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
        area = s * s * (self.scale[0] + (self.scale[1] - self.scale[0]) * rand(b))
        log_ratio = math.log(self.ratio[0]) + (math.log(self.ratio[1]) - math.log(self.ratio[0])) * rand(b)
        aspect = torch.exp(log_ratio)
        w = torch.sqrt(area * aspect).clamp(8, s)
        h = torch.sqrt(area / aspect).clamp(8, s)
        x0 = (s - w) * rand(b)
        y0 = (s - h) * rand(b)
        flip = rand(b) < 0.5 if self.flip else None
        factors = 1 - self.jitter + 2 * self.jitter * rand(3, b, 1, 1, 1) if self.jitter > 0 else None
        images, x0, y0, w, h = images[keep], x0[keep], y0[keep], w[keep], h[keep]
        b = images.shape[0]
        boxes = torch.stack([torch.arange(b, dtype=torch.float32), x0, y0, x0 + w, y0 + h], dim=1)
        x = roi_align(images.float(), boxes, output_size=self.size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        x = x / 255  # b x 3 x size x size
        if flip is not None:
            x = torch.where(flip[keep].view(b, 1, 1, 1), x.flip(-1), x)
        if factors is not None:
            brightness, contrast, saturation = factors[:, keep]
            x = x * brightness
            mean = _gray(x).mean((2, 3), keepdim=True)  # b x 1 x 1 x 1
            x = (x - mean) * contrast + mean
            gray = _gray(x)
            x = gray + (x - gray) * saturation
        return x.clamp_(0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma of B x 3 x H x W as B x 1 x H x W (ITU-R 601 weights)."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def batches(
    data: Decoded,
    batch_size: int,
    view: Callable[[torch.Tensor, slice], torch.Tensor],
    *,
    shuffle: torch.Generator | None = None,
    rank: int = 0,
    world: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images in [0, 1], labels) batches, in an order drawn from `shuffle` when given.

    `view(uint8 batch, rows)` makes float images of those rows (a PhotoAugment for training). With
    `world` processes the order is padded to a multiple of `world` (as torch's DistributedSampler
    does) and process `rank` gets rows rank::world of every global batch of `batch_size`: together
    the processes see exactly the batches one process would.
    """
    n = len(data)
    order = torch.randperm(n, generator=shuffle) if shuffle is not None else torch.arange(n)
    if world > 1:
        order = torch.cat([order, order[torch.arange(-n % world) % n]])
    keep = slice(rank, None, world)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield view(data.images[idx], keep), data.labels[idx][keep]


T = TypeVar("T")


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Produce the next items in a background thread while the caller works on the current one.

    Augmenting the next batch (roi_align and colour ops release the GIL) overlaps with the training
    step on the other core. Order and randomness are unchanged: one thread consumes `items` in order.
    """
    import queue
    import threading

    done = object()
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
        except BaseException as exc:  # re-raised in the consumer
            buffer.put(_Failed(exc))
            return
        buffer.put(done)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(0.01)


@dataclass(frozen=True)
class _Failed:
    exc: BaseException
