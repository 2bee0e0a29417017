"""`fit`: one training run from a data folder to a run folder, as named steps.

    check the output -> data -> model -> optimisation -> (resume) -> epochs: train, evaluate, checkpoint -> report

Under torchrun every process runs the same steps on its share of the data (see `distributed`); only
rank 0 writes the run folder and logs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import imagefiles, locks
from ..errors import NonFiniteError, OutputError, SettingsError
from ..models.architectures import Net, build_model, count_parameters, get_architecture, set_trainable
from ..models.checkpoint import CheckpointInfo, read_checkpoint, save_checkpoint
from ..models.preprocessing import Preprocessing
from ..runtime import check_memory, resolve_device, saved_bytes
from . import report
from .config import TrainConfig, check_resumable
from .data import DataSplits, Decoded, PhotoAugment, batches, decode, discover, prefetch
from .distributed import Processes, process_group
from .loop import EpochStats, Evaluation, evaluate, predict, train_one_epoch
from .optim import ClassifierLoss, class_weights, cosine_lr, make_optimizer
from .precision import PrecisionPlan, plan_precision, training_precision

RUN_FILES = ("best.pt", "last.pt", "metrics.json", "config.json")
Log = Callable[[str], None]
logger = logging.getLogger(__name__)


def _silent(message: str) -> None:
    pass


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar on a terminal; off one (logs, CI) the per-epoch summary line is the whole report."""
    from ..runtime import progress_bar as bar

    return bar(total, desc, "img", enabled=enabled and sys.stderr.isatty())


def _write_json(path: Path, data: Any) -> None:
    imagefiles.atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


# ---------------------------------------------------------------- the steps' results


@dataclass
class Data:
    """The decoded splits: train, the split that picks the best epoch, and an optional final test."""

    splits: DataSplits
    decoded: dict[str, Decoded]
    seconds: float

    @property
    def train(self) -> Decoded:
        return self.decoded["train"]

    @property
    def val(self) -> Decoded:
        return self.decoded[self.splits.val_name]

    @property
    def skipped(self) -> dict[str, int]:
        return {name: len(d.skipped) for name, d in self.decoded.items()}


@dataclass
class Network:
    net: Net  # the classifier itself: checkpoints and evaluation use `net.model`
    trains: nn.Module  # what the optimizer steps: `net.model`, or its DistributedDataParallel wrapper
    pre: Preprocessing


@dataclass
class Optimisation:
    optimizer: torch.optim.Optimizer
    criterion: ClassifierLoss
    lr_at: Callable[[int], float]
    precision: PrecisionPlan
    eval_precision: str
    augment: PhotoAugment


@dataclass
class RunProgress:
    """What a run has done so far; all of it goes into last.pt, so --resume continues exactly."""

    generator: torch.Generator
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    epoch: int = 0
    step: int = 0
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0


@dataclass
class Run:
    config: TrainConfig
    out: Path
    data_dir: Path
    procs: Processes
    device: torch.device
    data: Data
    network: Network
    optimisation: Optimisation
    progress: RunProgress
    log: Log
    bars: bool


# ---------------------------------------------------------------- steps


def check_output(out: Path, config: TrainConfig, resume: bool, force: bool, data_dir: Path) -> dict[str, Any] | None:
    """Refuse to overwrite a run or to resume a different one; return the checkpoint to resume from."""
    if not out.parent.is_dir():
        raise OutputError(f"output folder {out.parent} does not exist")
    imagefiles.check_apart(out, (data_dir, config.weights))  # a run folder never goes into (or onto) its data
    if data_dir.resolve().is_relative_to(out.resolve()):
        raise OutputError(f"refusing to write the run into {out}: it holds the data folder {data_dir}")
    if not resume:
        if out.exists() and not out.is_dir():
            raise OutputError(f"{out} exists and is not a folder")
        existing = [name for name in RUN_FILES if (out / name).exists()]
        if existing and not force:
            raise OutputError(
                f"{out} already holds a run ({existing[0]}); use --resume to continue it or --force to start over"
            )
        return None
    if not (out / "last.pt").is_file():
        raise OutputError(f"nothing to resume: {out / 'last.pt'} does not exist")
    payload = read_checkpoint(out / "last.pt")
    if "training_state" not in payload:
        raise OutputError(f"{out / 'last.pt'} holds weights only, no training state to resume from")
    check_resumable(TrainConfig.from_dict(payload["training_state"]["config"]), config)
    return payload


def build_network(
    config: TrainConfig, classes: tuple[str, ...], fresh: bool, device: torch.device, procs: Processes
) -> Network:
    """The classifier with a head for `classes`, its preprocessing, and which parameters train."""
    arch = get_architecture(config.arch)
    # a resumed run gets every weight from its checkpoint
    net = build_model(
        config.arch, len(classes), config.pretrained and fresh, config.options, config.weights if fresh else None
    )
    size = config.size or arch.input_size
    largest = max(size, config.eval_size or size)
    if min(size, config.eval_size or size) < net.min_size:
        raise SettingsError(f"--size {size} is below the {net.min_size} px that {config.arch} needs")
    if config.resize is not None and config.resize < largest:
        raise SettingsError(f"--resize {config.resize} is smaller than the {largest} px crops")
    pre = Preprocessing(size, config.resize or round(largest / 0.875), net.mean, net.std, config.eval_size)
    set_trainable(net, freeze_backbone=config.freeze_backbone, trainable_from=config.trainable_from)
    net.model.to(device, memory_format=torch.channels_last)
    return Network(net, procs.wrap(net.model, device), pre)


def check_fits(
    config: TrainConfig, network: Network, splits: DataSplits, device: torch.device, procs: Processes
) -> None:
    """Refuse, before decoding anything, a run whose decoded images or one batch's activations cannot fit."""
    pre, model = network.pre, network.net.model
    images = sum(len(s) for s in (splits.train, splits.val, splits.test) if s is not None)
    what = f"training at {pre.size} px (decoded at {pre.resize}) with batch {config.batch_size}"
    check_memory(images * 3 * pre.resize**2, f"{what}: {images} decoded images", "--size or --resize")
    probe = max(64, network.net.min_size)
    x = torch.zeros(1, 3, probe, probe, device=device, requires_grad=True)
    was_training = model.training
    model.eval()  # a batch of one through batch norm in training mode fails on some heads
    try:
        per_px = saved_bytes(model, model, x.contiguous(memory_format=torch.channels_last)) / probe**2
    finally:
        model.train(was_training)
    # activations kept for the backward pass, and their gradients during it
    check_memory(2 * per_px * pre.size**2 * config.batch_size // procs.world, what, "--size or --batch-size", device)


def load_data(
    splits: DataSplits, resize: int, bars: bool, on_skip: Callable[[Path, str], None] | None, log: Log
) -> Data:
    """Decode every image once; the epochs then only augment tensors."""
    start = time.perf_counter()
    threads = max(1, torch.get_num_threads())
    decoded: dict[str, Decoded] = {}
    for name, split in (("train", splits.train), (splits.val_name, splits.val), ("test", splits.test)):
        if split is None:
            continue
        with progress_bar(len(split), f"decoding {name}", bars) as bar:
            decoded[name] = decode(split, resize, threads=threads, progress=bar.update, on_skip=on_skip)
    data = Data(splits, decoded, time.perf_counter() - start)
    skipped = sum(data.skipped.values())
    log(
        f"data: {splits.layout}; classes {', '.join(splits.train.classes)}; "
        + ", ".join(f"{name} {len(d)}" for name, d in decoded.items())
        + (f"; skipped {skipped} unreadable" if skipped else "")
        + f" (decoded in {data.seconds:.0f}s)"
    )
    return data


def build_optimisation(config: TrainConfig, network: Network, data: Data, device: torch.device) -> Optimisation:
    """Loss, optimizer, warm-up + cosine schedule over the whole run, precision and augmentation."""
    net = network.net
    params = [p for p in net.model.parameters() if p.requires_grad]
    weights = class_weights(config.class_weights, data.train.counts())
    base_lr = config.learning_rate()
    optimizer = make_optimizer(config.optimizer, net, params, base_lr, config.weight_decay, config.head_lr_multiplier())
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = min(total, round(config.warmup * steps_per_epoch))
    return Optimisation(
        optimizer,
        ClassifierLoss(weights, config.label_smoothing, config.aux_weight),
        lambda step: cosine_lr(step, total, warmup, base_lr),
        plan_precision(config.precision, device, net.model),
        training_precision(config.precision, device),
        PhotoAugment(network.pre.size, scale=(config.crop_scale, 1.0)),
    )


def describe(run: Run) -> str:
    """The model line of the log."""
    config, model, weights = run.config, run.network.net.model, run.optimisation.criterion.weight
    return (
        f"model: {config.arch}{' pretrained' if config.pretrained else ''}, "
        f"{count_parameters(model) / 1e6:.2f}M parameters "
        f"({count_parameters(model, trainable_only=True) / 1e6:.2f}M trained); {run.network.pre.size}px, "
        f"{run.optimisation.precision}, {run.device.type}"
        + (f" x {run.procs.world} processes" if run.procs.distributed else "")
        + f"; {config.optimizer} lr {config.learning_rate():g}, batch {config.batch_size}"
        + (f"; class weights {[round(w, 3) for w in weights.tolist()]}" if weights is not None else "")
    )


def restore(run: Run, payload: dict[str, Any]) -> None:
    """Continue from last.pt: weights, optimizer, RNG streams, history and clocks."""
    state = payload["training_state"]
    run.network.net.model.load_state_dict(payload["state_dict"])
    run.optimisation.optimizer.load_state_dict(state["optimizer"])
    run.progress.generator.set_state(state["generator"])
    if run.procs.main:  # the other processes keep their own dropout streams
        torch.set_rng_state(state["torch_rng"])
    p = run.progress
    p.history, p.best = list(state["history"]), state["best"]
    p.epoch, p.step = int(payload["epoch"]), int(state["step"])
    p.train_seconds, p.train_cpu_seconds = float(state["train_seconds"]), float(state.get("train_cpu_seconds", 0.0))
    run.log(f"resuming {run.out} after epoch {p.epoch}")


def score(run: Run, data: Decoded, desc: str) -> Evaluation:
    """Evaluate the model on a decoded set; with several processes each scores its share, then all gather."""
    config, procs, model = run.config, run.procs, run.network.net.model
    images = data.images[procs.share(len(data))]
    with progress_bar(len(images), desc, run.bars) as bar:
        probs = predict(
            model, images, run.network.pre, batch_size=max(64, config.batch_size),
            precision=run.optimisation.eval_precision, tta=config.tta, progress=bar,
        )  # fmt: skip
    return Evaluation.score(procs.gather_rows(probs, len(data)), data)


def train_epoch(run: Run, epoch: int) -> tuple[EpochStats, Evaluation, dict[str, Any]]:
    """Train one epoch and score the validation split; return the stats, the evaluation and the history record."""
    config, opt, p, procs = run.config, run.optimisation, run.progress, run.procs
    cpu_start = time.process_time()
    view = lambda u8, rows: opt.augment(u8, p.generator, rows)  # noqa: E731
    loader = batches(run.data.train, config.batch_size, view, shuffle=p.generator, rank=procs.rank, world=procs.world)
    with progress_bar(len(run.data.train) // procs.world, f"epoch {epoch}/{config.epochs}", run.bars) as bar:
        stats, p.step = train_one_epoch(
            run.network.trains, prefetch(loader), opt.criterion, opt.optimizer, run.network.pre, lr_at=opt.lr_at,
            step=p.step, precision=opt.precision, freeze_bn=config.bn_frozen(), progress=bar,
        )  # fmt: skip
    eval_start = time.perf_counter()
    ev = score(run, run.data.val, f"evaluating ({run.data.splits.val_name})")
    seconds = stats.seconds + time.perf_counter() - eval_start
    # loss and accuracy over every process's images; CPU time of them all
    loss_sum, correct, images, cpu_seconds = procs.sum(
        [stats.loss_sum, stats.correct, stats.images, time.process_time() - cpu_start]
    )
    stats = EpochStats(loss_sum, int(correct), int(images), seconds)
    p.train_seconds += seconds
    p.train_cpu_seconds += cpu_seconds
    record = {
        "epoch": epoch,
        "lr": opt.lr_at(p.step - 1),
        "train_loss": stats.loss,
        "train_accuracy": stats.accuracy,
        "train_images": stats.images,  # over all processes: each image once (plus DistributedSampler-style padding)
        "val_loss": ev.loss,
        "val_accuracy": ev.accuracy,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
    }
    p.history.append(record)
    p.epoch = epoch
    return stats, ev, record


def checkpoint(run: Run, ev: Evaluation) -> bool:
    """Save last.pt (resumable) and, when the epoch is the best so far, best.pt; return whether it was."""
    config, p, epoch = run.config, run.progress, run.progress.epoch
    improved = p.best is None or ev.accuracy > p.best["accuracy"]
    if improved:
        p.best = {"epoch": epoch, **ev.to_dict(run.data.splits.val_name)}
    if not run.procs.main:
        return improved
    model = run.network.net.model
    classes, scores = run.data.splits.train.classes, {"val_accuracy": ev.accuracy}
    info = CheckpointInfo(config.arch, classes, run.network.pre, dict(config.options), epoch, scores, config.tta)
    if improved:
        save_checkpoint(run.out / "best.pt", model, info)
    state = {
        "config": config.to_dict(),
        "optimizer": run.optimisation.optimizer.state_dict(),
        "generator": p.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": p.history,
        "best": p.best,
        "step": p.step,
        "train_seconds": p.train_seconds,
        "train_cpu_seconds": p.train_cpu_seconds,
    }
    save_checkpoint(run.out / "last.pt", model, info, training_state=state)
    # written with the first checkpoint, not before: a run refused before it leaves no folder behind
    _write_json(run.out / "config.json", config.to_dict())
    _write_json(run.out / "metrics.json", metrics(run, {}))
    report.save_figure(report.curves_figure(p.history, f"{run.out.name}: {config.arch}"), run.out / "curves.png")
    return improved


def metrics(run: Run, extra: dict[str, Any]) -> dict[str, Any]:
    """metrics.json: the config, the data, every epoch, the best one, and the clocks."""
    data, p = run.data, run.progress
    return {
        "config": run.config.to_dict(),
        "classes": list(data.splits.train.classes),
        "data": {
            "dir": str(run.data_dir),
            "layout": data.splits.layout,
            "images": {name: len(d) for name, d in data.decoded.items()},
            "per_class": {name: d.counts() for name, d in data.decoded.items()},
            "skipped": data.skipped,
            "decode_seconds": data.seconds,
        },
        "precision": str(run.optimisation.precision),
        "size": run.network.pre.size,
        "parameters": count_parameters(run.network.net.model),
        "processes": run.procs.world,
        "epochs": p.history,
        "best": p.best,
        "train_seconds": p.train_seconds,
        # CPU time of every process: on a CPU shared with other jobs, wall time overstates the cost
        "train_cpu_seconds": p.train_cpu_seconds,
        **extra,
    }


def final_report(run: Run, wall_start: float) -> dict[str, Any]:
    """Score the best epoch (on the test folder when there is one), draw its confusion matrix, write metrics.json."""
    config, best, classes = run.config, run.progress.best, run.data.splits.train.classes
    final, extra = dict(best), {}
    if "test" in run.data.decoded:
        model = run.network.net.model
        model.load_state_dict(read_checkpoint(run.out / "best.pt")["state_dict"])
        ev = evaluate(
            model, run.data.decoded["test"], run.network.pre, precision=run.optimisation.eval_precision, tta=config.tta
        )
        final = extra["test"] = ev.to_dict("test")
    cm = torch.tensor(final["confusion_matrix"])
    title = f"{config.arch}, epoch {best['epoch']}: {final['split']} accuracy {final['accuracy']:.3f}"
    report.save_figure(report.confusion_figure(cm, classes, title), run.out / "confusion_matrix.png")
    extra["wall_seconds"] = time.perf_counter() - wall_start
    result = metrics(run, extra)
    _write_json(run.out / "metrics.json", result)
    run.log(
        f"best epoch {best['epoch']}: {final['split']} accuracy {final['accuracy']:.4f}\n"
        + report.format_confusion(cm, classes)
    )
    return result


# ---------------------------------------------------------------- the run


def _folder_lock(out: Path, procs: Processes):
    """The run folder's lock (deepdream.locks): a second `train --out` on it refuses. Not under torchrun,
    where one process refusing would leave the others waiting at the first barrier."""
    if procs.distributed or not out.parent.is_dir():  # a missing parent: check_output says so
        return contextlib.nullcontext()
    return locks.hold(out)


@contextlib.contextmanager
def _made_here(out: Path | None):
    """Create the run folder `out` (None: not this process's to write) for the block; when the block fails
    before anything was written into it, remove it again, so a refused run leaves no empty folder."""
    if out is None:
        yield
        return
    created = not out.exists()
    out.mkdir(exist_ok=True)
    try:
        yield
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()
        raise


def _guarded(train, run: Run, epoch: int):
    """train(run, epoch), stopping the run on a NaN or inf loss: no checkpoint of this epoch is written,
    so last.pt stays the last good one, and the message says which that is."""
    try:
        return train(run, epoch)
    except NonFiniteError as exc:
        kept = f"{run.out / 'last.pt'} (epoch {run.progress.epoch})" if run.progress.epoch else "none"
        raise NonFiniteError(f"training stopped in epoch {epoch}: {exc}; last good checkpoint: {kept}") from None


def start(
    data_dir: Path, out: Path, config: TrainConfig, payload: dict[str, Any] | None, procs: Processes,
    bars: bool, log: Log, on_skip: Callable[[Path, str], None] | None,
) -> Run:  # fmt: skip
    """Data, model and optimisation, restored from `payload` when resuming."""
    if config.batch_size % procs.world:
        raise SettingsError(f"the batch size {config.batch_size} does not split evenly over {procs.world} processes")
    device = procs.device(resolve_device(config.device))
    logger.debug("process %d of %d on %s; config %s", procs.rank, procs.world, device, config.to_dict())
    torch.manual_seed(config.seed)  # the same initial weights in every process
    splits = discover(data_dir, config.val_split, config.seed)
    network = build_network(config, splits.train.classes, payload is None, device, procs)
    if procs.distributed:
        torch.manual_seed(config.seed + procs.rank)  # and different dropout masks
    check_fits(config, network, splits, device, procs)
    data = load_data(splits, network.pre.resize, bars, on_skip, log)
    optimisation = build_optimisation(config, network, data, device)
    progress = RunProgress(torch.Generator().manual_seed(config.seed))
    run = Run(config, out, data_dir, procs, device, data, network, optimisation, progress, log, bars)
    log(describe(run))
    if payload is not None:
        restore(run, payload)
    return run


def fit(
    data_dir: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    log: Log = logger.info,
    on_skip: Callable[[Path, str], None] | None = None,
) -> dict[str, Any]:
    """Train `config` on `data_dir`, writing the run to `out_dir`; return the final metrics.

    resume: continue from `out_dir/last.pt` up to `config.epochs` (the config must match the run's).
    Launched by torchrun, the processes train together and rank 0 alone writes and logs (`log`, by
    default this module's logger at INFO). A run stopped before its first checkpoint leaves nothing behind.
    """
    wall_start = time.perf_counter()
    out, data_dir = Path(out_dir), Path(data_dir)
    with process_group(resolve_device(config.device)) as procs, _folder_lock(out, procs):
        payload = check_output(out, config, resume, force, data_dir)
        procs.barrier()  # every process has looked at the folder before rank 0 writes into it
        if not procs.main:
            log, progress = _silent, False
        run = start(data_dir, out, config, payload, procs, progress, log, on_skip)
        with _made_here(out if procs.main else None):
            for epoch in range(run.progress.epoch + 1, config.epochs + 1):
                logger.debug("epoch %d: training %d images", epoch, len(run.data.train))
                stats, ev, record = _guarded(train_epoch, run, epoch)
                improved = checkpoint(run, ev)
                log(
                    f"epoch {epoch}/{config.epochs}: train loss {stats.loss:.3f} acc {stats.accuracy:.3f} | "
                    f"{run.data.splits.val_name} loss {ev.loss:.3f} acc {ev.accuracy:.4f} | "
                    f"{record['seconds']:.0f}s ({record['cpu_seconds']:.0f} cpu-s)" + ("  *best" if improved else "")
                )
        return final_report(run, wall_start) if procs.main else metrics(run, {})
