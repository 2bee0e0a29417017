"""What a batch will do: inputs (files, folders, globs) expanded into items with mirrored output paths,
per-item seeds, and the settings hash that decides whether a finished item can be skipped."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import SettingsError
from ..imagefiles import FORMATS
from ..runtime import SEED_LIMIT
from ..settings import Settings
from ..video.writing import OUTPUT_EXTENSIONS as VIDEO_OUTPUTS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({*FORMATS, ".gif"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv"})
GLOB_CHARS = frozenset("*?[")
MAX_THREADS = 1024


@dataclass(frozen=True)
class VideoOptions:
    """How the videos of a batch are dreamed (the options of `deepdream video`)."""

    flow: str = "dis"
    flow_blend: float | None = None  # share of the previous warped dream each frame carries (None: video's default)
    evolve: bool = False  # patterns keep changing slowly instead of holding still
    start: float = 0.0
    duration: float | None = None
    max_side: int | None = None  # cap on the frames' long side; None: keep the input's size
    segments: int = 1  # >1: one video split into overlapping segments dreamed in parallel
    overlap: int = 8  # frames shared by neighbouring segments, cross-faded
    format: str | None = None  # '.mp4', '.gif', ...; None: keep the input's container where writable


@dataclass(frozen=True)
class BatchJob:
    """Everything every item shares: base settings (seed resolved), video options, output format."""

    settings: Settings
    video: VideoOptions = field(default_factory=VideoOptions)
    image_format: str | None = None  # '.png', '.jpg', ...; None: keep the input's format where writable
    threads: int = 1  # intra-op threads every item is dreamed with, on every worker and engine (same pixels)


@dataclass(frozen=True)
class BatchItem:
    """One input file and where its dream goes."""

    source: Path
    relpath: str  # posix path under the input's root; the key of the manifest
    kind: str  # 'image' or 'video'
    output: Path
    seed: int
    settings_hash: str
    stamp: str  # input size and modification time: a changed input is dreamed again

    def settings(self, job: BatchJob) -> Settings:
        return job.settings.replace(seed=self.seed)


def item_seed(base: int, relpath: str) -> int:
    """A seed from the base seed and the relative path: independent of order and worker count.

    The path is hashed as the bytes of its file name (`surrogateescape`: a name that is not UTF-8 keeps the
    bytes it has on disk; a UTF-8 name hashes as before)."""
    digest = hashlib.sha256(f"{base}:{relpath}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % SEED_LIMIT


def settings_hash(job: BatchJob, kind: str, seed: int, suffix: str) -> str:
    """Hash of what determines an item's output besides its pixels: settings, video options, format."""
    what = {"settings": job.settings.replace(seed=seed).to_dict(), "format": suffix, "threads": job.threads}
    if kind == "video":
        what["video"] = asdict(job.video)
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "video" if suffix in VIDEO_SUFFIXES else "image" if suffix in IMAGE_SUFFIXES else None


def resolved(path: Path) -> Path:
    """The real path of a folder or file that may not exist yet; one line for a link loop (Python 3.11 raises
    RuntimeError)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as exc:
        raise SettingsError(f"cannot resolve {path}: {exc}") from None


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _split_glob(pattern: str) -> tuple[Path, str]:
    """(the folder part before the first wildcard, the rest): matches mirror the tree below that folder."""
    parts = Path(pattern).parts
    first = next(i for i, part in enumerate(parts) if GLOB_CHARS & set(part))
    rest = list(parts[first:])
    if rest[-1] == "**":  # as glob.glob(recursive=True): everything below, files included
        rest.append("*")
    return (Path(*parts[:first]) if first else Path(".")), "/".join(rest)


def _glob(pattern: str) -> list[Path]:
    """The paths a glob matches, sorted. `**` does not descend into linked folders (a link loop would never
    end); a wildcard in one path part may still match a link, which is followed once."""
    root, rest = _split_glob(pattern)
    try:
        return sorted(root.glob(rest))
    except (ValueError, OSError) as exc:  # '**' inside a name, an unreadable folder
        raise SettingsError(f"cannot expand the pattern {pattern}: {exc}") from None


def _walk(folder: Path) -> list[Path]:
    """Every file below a folder, sorted; linked folders are not entered (no loops), linked files are kept."""
    found = []
    for parent, _, files in os.walk(folder, followlinks=False):
        found += [Path(parent, name) for name in files]
    return sorted(found)


def expand_inputs(inputs: list[str | Path], exclude: Path | None = None) -> list[tuple[Path, str]]:
    """(source, relative path) for every input: files as named, folders recursively, globs.

    Folders and globs keep images and videos only (by extension), skip hidden files and anything
    under `exclude` (the output folder). A named file is always taken: if it is not a picture, its
    item fails and says so. Links to files are taken; links to folders are entered only when named.
    """
    found: list[tuple[Path, str]] = []
    excluded = resolved(exclude) if exclude is not None else None

    def keep(path: Path, root: Path) -> bool:
        if not (kind_of(path) is not None and _visible(path, root) and path.is_file()):
            return False  # is_file() is False for a dangling link or a link loop
        if excluded is None or root.resolve().is_relative_to(excluded):
            return True  # an input folder named inside the output folder is read whole
        return not path.resolve().is_relative_to(excluded)

    for given in map(str, inputs):
        path = Path(given)
        if GLOB_CHARS & set(given) and not path.exists():
            root = _split_glob(given)[0]
            matches = _glob(given)
            found += [(p, p.relative_to(root).as_posix()) for p in matches if keep(p, root)]
            if not matches:
                raise SettingsError(f"no files match {given}")
        elif path.is_dir():
            found += [(p, p.relative_to(path).as_posix()) for p in _walk(path) if keep(p, path)]
        elif path.exists():
            found.append((path, path.name))
        else:
            raise SettingsError(f"no such file or folder: {given}")
    return found


def output_path(outdir: Path, relpath: str, kind: str, job: BatchJob) -> Path:
    """The output mirrors the input's relative path; the suffix is kept where it can be written."""
    rel = Path(relpath)
    suffix = rel.suffix.lower()
    if kind == "video":
        suffix = job.video.format or (suffix if suffix in VIDEO_OUTPUTS else ".mp4")
    else:
        suffix = job.image_format or (suffix if suffix in FORMATS else ".png")
    return outdir / rel.with_suffix(suffix)


def _stamp(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "unreadable"
    return f"{st.st_size}:{st.st_mtime_ns}"


def plan_batch(inputs: list[str | Path], outdir: str | Path, job: BatchJob) -> list[BatchItem]:
    """The items of a batch in a stable order; two inputs that would write one output are an error."""
    if job.settings.seed is None:
        raise SettingsError("a batch needs a base seed (run_batch draws one and keeps it in the manifest)")
    if job.settings.init != "image":
        raise SettingsError("a batch dreams its input files; --init noise/fourier does not apply")
    if job.image_format is not None and job.image_format not in FORMATS:
        raise SettingsError(f"unknown image format '{job.image_format}' (use {', '.join(FORMATS)})")
    if job.video.format is not None and job.video.format not in VIDEO_OUTPUTS:
        raise SettingsError(f"unknown video format '{job.video.format}' (use {', '.join(VIDEO_OUTPUTS)})")
    if not (isinstance(job.threads, int) and 1 <= job.threads <= MAX_THREADS):
        raise SettingsError(f"threads must be a whole number from 1 to {MAX_THREADS}, got {job.threads}")
    if job.video.segments < 1 or job.video.overlap < 0:
        raise SettingsError("segments must be >= 1 and overlap >= 0")
    outdir = Path(outdir)
    _check_outdir(inputs, outdir)
    items: dict[str, BatchItem] = {}
    outputs: dict[Path, str] = {}
    sources = {}
    for source, relpath in expand_inputs(inputs, exclude=outdir):
        if relpath in items:
            if items[relpath].source.resolve() == source.resolve():
                continue  # named twice (a file and its folder): one item
            raise SettingsError(f"{items[relpath].source} and {source} both map to {relpath} in {outdir}")
        kind = kind_of(source) or "image"
        output = output_path(outdir, relpath, kind, job)
        if output in outputs:
            raise SettingsError(f"{outputs[output]} and {relpath} would both write {output} (use --format?)")
        seed = item_seed(job.settings.seed, relpath)
        digest = settings_hash(job, kind, seed, output.suffix)
        items[relpath] = BatchItem(source, relpath, kind, output, seed, digest, _stamp(source))
        outputs[output] = relpath
        sources[source.resolve()] = relpath
    if not items:
        raise SettingsError("no images or videos found in the inputs")
    log.debug("%d items planned into %s", len(items), outdir)
    for output, relpath in outputs.items():
        if output.resolve() in sources:
            raise SettingsError(
                f"the output of {relpath} would overwrite the input {sources[output.resolve()]} "
                "(choose an output folder that is not an input)"
            )
    return list(items.values())


def _check_outdir(inputs: list[str | Path], outdir: Path) -> None:
    """Refuse an output folder that is an input folder, however spelled: its manifest would go among the inputs.
    (An output folder inside an input folder is fine: it is left out of the inputs.)"""
    target = resolved(outdir)
    for given in map(str, inputs):
        folder = _split_glob(given)[0] if GLOB_CHARS & set(given) and not Path(given).exists() else Path(given)
        if folder.is_dir() and folder.resolve() == target:
            raise SettingsError(f"the output folder {outdir} is the input folder {folder}: choose another")
