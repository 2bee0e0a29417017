"""Training and evaluation loops, and `fit`: one run from a data folder to a run folder.

The loops are model-agnostic (torchvision's reference `train_one_epoch` / `evaluate` split): they see
batches, a loss and an optimizer. `fit` adds the run folder: best and last checkpoints, metrics.json,
curves and confusion-matrix figures, and resuming after an interruption.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import imagefiles
from ..runtime import autocast, is_depthwise, native_bf16
from ..errors import OutputError, SettingsError
from . import report
from ..models.architectures import Net, build_model, count_parameters, get_architecture, set_trainable, train_mode
from ..models.checkpoint import CheckpointInfo, read_checkpoint, save_checkpoint
from ..models.preprocessing import Preprocessing
from .data import Decoded, PhotoAugment, batches, decode, discover, prefetch

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adamw": lambda params, lr, wd: torch.optim.AdamW(params, lr=lr, weight_decay=wd),
    "adam": lambda params, lr, wd: torch.optim.Adam(params, lr=lr, weight_decay=wd),
    "sgd": lambda params, lr, wd: torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9, nesterov=True),
}
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; saved in the run folder and in every checkpoint."""

    arch: str = "simple_cnn"
    pretrained: bool = False
    weights: str | None = None  # a local state dict to start from instead of the built-in pretrained weights
    options: dict[str, Any] = field(default_factory=dict)  # architecture options (aux_logits, width, ...)
    freeze_backbone: bool = False
    trainable_from: str | None = None
    freeze_bn: bool | None = None  # None: frozen batch-norm statistics exactly when fine-tuning pretrained weights
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float | None = None  # None: 3e-3 from scratch, 1e-3 head only, 1e-4 fine-tuning
    head_lr_scale: float | None = None  # the new head's lr is lr * this; None: 10 when fine-tuning pretrained weights
    weight_decay: float = 0.01
    warmup: float = 0.5  # epochs of linear warm-up before the cosine decay
    label_smoothing: float = 0.1
    class_weights: tuple[float, ...] | str | None = None  # explicit, 'auto' (inverse frequency) or none
    size: int | None = None  # training crop; None: the architecture's default
    eval_size: int | None = None  # centre crop for evaluation; None: size
    resize: int | None = None  # decoded square; None: max(size, eval_size) / 0.875
    crop_scale: float = 0.25  # smallest area fraction of the random resized crop
    val_split: float | None = None
    tta: bool = False  # evaluate with the horizontal flip averaged in
    aux_weight: float = 0.4  # weight of InceptionV3's auxiliary loss when aux_logits is on
    seed: int = 0
    precision: str = "auto"
    device: str = "cpu"

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise SettingsError(message)

        get_architecture(self.arch)
        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        need(self.optimizer in OPTIMIZERS, f"unknown optimizer '{self.optimizer}' (choose from {', '.join(OPTIMIZERS)})")
        need(self.lr is None or self.lr > 0, f"learning rate must be positive, got {self.lr}")
        need(self.head_lr_scale is None or self.head_lr_scale > 0, f"head lr scale must be positive, got {self.head_lr_scale}")
        need(self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}")
        need(0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        need(0 < self.crop_scale <= 1, f"crop scale must be in (0, 1], got {self.crop_scale}")
        need(self.size is None or self.size >= 16, f"size must be >= 16, got {self.size}")
        need(self.eval_size is None or self.eval_size >= 16, f"eval size must be >= 16, got {self.eval_size}")
        largest = max(self.size or 0, self.eval_size or 0)
        need(self.resize is None or self.resize >= largest, f"resize must be >= size and eval size ({largest})")
        need(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        need(self.aux_weight >= 0, f"aux weight must be >= 0, got {self.aux_weight}")
        if isinstance(self.class_weights, str):
            need(self.class_weights == "auto", f"class weights must be 'auto' or numbers, got '{self.class_weights}'")

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if isinstance(self.class_weights, tuple):
            d["class_weights"] = list(self.class_weights)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if isinstance(values.get("class_weights"), list):
            values["class_weights"] = tuple(values["class_weights"])
        return cls(**values)

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        if self.freeze_backbone:
            return 1e-3
        return 1e-4 if self.pretrained else 3e-3

    def head_lr_multiplier(self) -> float:
        """A fresh head on pretrained features learns faster than the features should move."""
        if self.head_lr_scale is not None:
            return self.head_lr_scale
        return 10.0 if self.pretrained and not self.freeze_backbone else 1.0

    def bn_frozen(self) -> bool:
        return self.pretrained if self.freeze_bn is None else self.freeze_bn


def training_precision(name: str, device: torch.device) -> str:
    """Precision of forward-only passes: 'auto' is bf16 where the hardware has it natively, else fp32."""
    if name != "auto":
        return name
    return "bf16" if native_bf16(device) else "fp32"


@dataclass(frozen=True)
class PrecisionPlan:
    """Autocast of a training step: `frozen` for the frozen layers up to `boundary`, `trainable` from it on."""

    frozen: str
    trainable: str
    boundary: str | None = None  # first module with trainable parameters; None: one precision throughout

    def __str__(self) -> str:
        return self.trainable if self.boundary is None else f"{self.frozen} frozen layers, {self.trainable} from {self.boundary}"


def plan_precision(name: str, device: torch.device, model: nn.Module) -> PrecisionPlan:
    """Choose the training precision ('auto': as fast as the hardware allows).

    On CPUs the backward pass of depthwise convolutions (EfficientNet, MobileNet) is several times
    slower in bf16 than in fp32, while their forward pass is faster in bf16. So with 'auto', layers
    that train keep fp32 when depthwise convolutions are among them, and a frozen prefix (with
    --trainable-from or --freeze-backbone) still runs in bf16: it has no backward pass.
    """
    if name != "auto":
        return PrecisionPlan(name, name)
    fast = training_precision(name, device)
    depthwise_trains = any(is_depthwise(m) and m.weight.requires_grad for m in model.modules())
    trainable = "fp32" if device.type == "cpu" and depthwise_trains else fast
    # the outermost module whose parameters all train, e.g. 'blocks.4' for --trainable-from blocks.4
    with_params = [(n, list(m.parameters())) for n, m in model.named_modules() if n and any(True for _ in m.parameters())]
    boundary = next((n for n, ps in with_params if all(p.requires_grad for p in ps)), None)
    if trainable == fast or boundary is None or boundary == with_params[0][0]:
        return PrecisionPlan(trainable, trainable)
    return PrecisionPlan(fast, trainable, boundary)


@contextlib.contextmanager
def precision_switch(model: nn.Module, plan: PrecisionPlan, device: torch.device):
    """While active, the forward pass leaves autocast at `plan.boundary` and goes on in fp32."""
    if plan.boundary is None:
        yield
        return

    def switch(module: nn.Module, args: tuple) -> tuple:
        # the autocast context that the step entered restores its own state on exit
        torch.set_autocast_enabled(device.type, False)
        return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    handle = model.get_submodule(plan.boundary).register_forward_pre_hook(switch)
    try:
        yield
    finally:
        handle.remove()


# ---------------------------------------------------------------- loss


def class_weights(spec: Sequence[float] | str | None, counts: Sequence[int]) -> torch.Tensor | None:
    """Cross-entropy class weights: None, explicit numbers, or 'auto' = N / (K * n_c) (inverse frequency)."""
    if spec is None:
        return None
    k = len(counts)
    if spec == "auto":
        if min(counts) == 0:
            raise SettingsError("class weights 'auto' need at least one training image per class")
        n = sum(counts)
        return torch.tensor([n / (k * c) for c in counts], dtype=torch.float32)
    weights = [float(w) for w in spec]
    if len(weights) != k:
        raise SettingsError(f"{len(weights)} class weights given for {k} classes")
    if any(not math.isfinite(w) or w <= 0 for w in weights):
        raise SettingsError(f"class weights must be positive numbers, got {','.join(map(str, spec))}")
    return torch.tensor(weights, dtype=torch.float32)


@dataclass(frozen=True)
class ClassifierLoss:
    """Weighted cross-entropy; with an auxiliary head (InceptionV3 in training) its loss is added, weighted."""

    weight: torch.Tensor | None = None
    label_smoothing: float = 0.0
    aux_weight: float = 0.4

    def __call__(self, output: torch.Tensor | tuple, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (loss, main logits)."""
        aux = None
        if isinstance(output, tuple):  # torchvision InceptionOutputs / GoogLeNetOutputs
            output, aux = output[0], output[1]
        weight = self.weight.to(output.device) if self.weight is not None else None
        loss = F.cross_entropy(output.float(), targets, weight=weight, label_smoothing=self.label_smoothing)
        if aux is not None and self.aux_weight > 0:
            loss = loss + self.aux_weight * F.cross_entropy(
                aux.float(), targets, weight=weight, label_smoothing=self.label_smoothing
            )
        return loss, output


def make_optimizer(config: TrainConfig, net: Net, params: Sequence[nn.Parameter]) -> torch.optim.Optimizer:
    """The configured optimizer; the new head's parameter group gets its lr scaled (`lr_scale`)."""
    head = {id(p) for name in net.head for p in net.model.get_submodule(name).parameters()}
    groups = [
        {"params": [p for p in params if id(p) not in head], "lr_scale": 1.0},
        {"params": [p for p in params if id(p) in head], "lr_scale": config.head_lr_multiplier()},
    ]
    return OPTIMIZERS[config.optimizer]([g for g in groups if g["params"]], config.learning_rate(), config.weight_decay)


def cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up to `base`, then cosine decay to zero; a pure function of the step, so resuming needs no state."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ---------------------------------------------------------------- loops


@dataclass(frozen=True)
class EpochStats:
    loss: float
    accuracy: float
    images: int
    seconds: float


def _to_input(x: torch.Tensor, pre: Preprocessing, device: torch.device) -> torch.Tensor:
    return pre.normalize(x).to(device).contiguous(memory_format=torch.channels_last)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    criterion: ClassifierLoss,
    optimizer: torch.optim.Optimizer,
    preprocessing: Preprocessing,
    *,
    lr_at: Callable[[int], float],
    step: int = 0,
    precision: PrecisionPlan | str = "fp32",
    freeze_bn: bool = False,
    progress: Any = None,
) -> tuple[EpochStats, int]:
    """One pass over `loader` (images in [0, 1], labels); returns the epoch's stats and the next global step."""
    device = next(model.parameters()).device
    plan = precision if isinstance(precision, PrecisionPlan) else PrecisionPlan(precision, precision)
    train_mode(model, freeze_bn)
    start = time.perf_counter()
    total_loss, correct, seen = 0.0, 0, 0
    with precision_switch(model, plan, device):
        for x, y in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step) * group.get("lr_scale", 1.0)
            y = y.to(device)
            with autocast(device, plan.frozen):
                output = model(_to_input(x, preprocessing, device))
            loss, logits = criterion(output, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            total_loss += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if progress is not None:
                progress.update(len(y))
                progress.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return EpochStats(total_loss / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start), step


@dataclass(frozen=True)
class Evaluation:
    """Predictions on a set of images, with the class names they index."""

    targets: torch.Tensor  # N
    probabilities: torch.Tensor  # N x K
    classes: tuple[str, ...]
    loss: float

    @property
    def predictions(self) -> torch.Tensor:
        return self.probabilities.argmax(1)

    @property
    def confusion(self) -> torch.Tensor:
        return report.confusion_matrix(self.targets, self.predictions, len(self.classes))

    @property
    def accuracy(self) -> float:
        return report.accuracy(self.confusion)

    def to_dict(self, split: str) -> dict[str, Any]:
        cm = self.confusion
        return {
            "split": split,
            "images": len(self.targets),
            "accuracy": self.accuracy,
            "loss": self.loss,
            "confusion_matrix": cm.tolist(),
            "recall": dict(zip(self.classes, report.recall_per_class(cm))),
        }


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    preprocessing: Preprocessing,
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    tta: bool = False,
    progress: Any = None,
) -> torch.Tensor:
    """Class probabilities (N x K) for uint8 squares N x 3 x S x S; tta averages in the mirrored view."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = _to_input(preprocessing.center(images[start : start + batch_size]), preprocessing, device)
        views = (x, x.flip(-1)) if tta else (x,)
        with autocast(device, precision):
            probs = sum(torch.softmax(model(v).float(), dim=1) for v in views) / len(views)
        out.append(probs.cpu())
        if progress is not None:
            progress.update(len(x))
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate(
    model: nn.Module,
    data: Decoded,
    preprocessing: Preprocessing,
    *,
    batch_size: int = 64,
    precision: str = "fp32",
    tta: bool = False,
    progress: Any = None,
) -> Evaluation:
    """Score a decoded set: probabilities, loss (unweighted cross-entropy) and the confusion matrix."""
    probs = predict(model, data.images, preprocessing, batch_size=batch_size, precision=precision, tta=tta, progress=progress)
    loss = float(F.nll_loss(probs.clamp_min(1e-12).log(), data.labels)) if len(data) else float("nan")
    return Evaluation(data.labels, probs, data.classes, loss)


# ---------------------------------------------------------------- a whole run


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", leave=False, file=sys.stderr, dynamic_ncols=True)


def load_config(run_dir: str | Path) -> TrainConfig:
    """The configuration a run folder was trained with (its config.json)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise OutputError(f"{run_dir} is not a training run (no config.json)")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise OutputError(f"cannot read {path}: {exc}") from exc


def _write_json(path: Path, data: Any) -> None:
    imagefiles.atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


RUN_FILES = ("best.pt", "last.pt", "metrics.json", "config.json")


def fit(
    data_dir: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = _stderr,
    on_skip: Callable[[Path, str], None] | None = None,
) -> dict[str, Any]:
    """Train `config` on `data_dir`, writing the run to `out_dir`; return the final metrics.

    resume: continue from `out_dir/last.pt` up to `config.epochs` (the config must match the run's).
    """
    wall_start = time.perf_counter()
    out = Path(out_dir)
    payload = None
    if resume:
        if not (out / "last.pt").is_file():
            raise OutputError(f"nothing to resume: {out / 'last.pt'} does not exist")
        payload = read_checkpoint(out / "last.pt")
        if "training_state" not in payload:
            raise OutputError(f"{out / 'last.pt'} holds weights only, no training state to resume from")
        saved = TrainConfig.from_dict(payload["training_state"]["config"])
        if saved.replace(epochs=config.epochs) != config:
            changed = [
                f.name
                for f in dataclasses.fields(TrainConfig)
                if f.name != "epochs" and getattr(saved, f.name) != getattr(config, f.name)
            ]
            raise SettingsError(f"--resume continues the run as configured; these settings differ: {', '.join(changed)}")
    else:
        if out.exists() and not out.is_dir():
            raise OutputError(f"{out} exists and is not a folder")
        existing = [name for name in RUN_FILES if (out / name).exists()]
        if existing and not force:
            raise OutputError(f"{out} already holds a run ({existing[0]}); use --resume to continue it or --force to start over")
    if not out.parent.is_dir():
        raise OutputError(f"output folder {out.parent} does not exist")

    from ..runtime import resolve_device

    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    splits = discover(data_dir, config.val_split, config.seed)
    classes = splits.train.classes
    arch = get_architecture(config.arch)
    # a resumed run gets every weight from its checkpoint
    fresh = payload is None
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
    model = net.model.to(device, memory_format=torch.channels_last)
    eval_precision = training_precision(config.precision, device)

    # decode every image once; the epochs then only augment tensors
    decode_start = time.perf_counter()
    threads = max(1, torch.get_num_threads())
    decoded: dict[str, Decoded] = {}
    for name, split in (("train", splits.train), (splits.val_name, splits.val), ("test", splits.test)):
        if split is None:
            continue
        bar = progress_bar(len(split), f"decoding {name}", progress)
        decoded[name] = decode(split, pre.resize, threads=threads, progress=bar.update if bar else None, on_skip=on_skip)
        if bar:
            bar.close()
    decode_seconds = time.perf_counter() - decode_start
    train_data, val_data = decoded["train"], decoded[splits.val_name]
    skipped = {name: len(d.skipped) for name, d in decoded.items()}
    log(
        f"data: {splits.layout}; classes {', '.join(classes)}; "
        + ", ".join(f"{name} {len(d)}" for name, d in decoded.items())
        + (f"; skipped {sum(skipped.values())} unreadable" if any(skipped.values()) else "")
        + f" (decoded in {decode_seconds:.0f}s)"
    )

    params = set_trainable(net, freeze_backbone=config.freeze_backbone, trainable_from=config.trainable_from)
    precision = plan_precision(config.precision, device, model)
    weights = class_weights(config.class_weights, train_data.counts())
    criterion = ClassifierLoss(weights, config.label_smoothing, config.aux_weight)
    base_lr = config.learning_rate()
    optimizer = make_optimizer(config, net, params)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = min(total_steps, round(config.warmup * steps_per_epoch))
    lr_at = lambda step: cosine_lr(step, total_steps, warmup, base_lr)  # noqa: E731
    augment = PhotoAugment(size, scale=(config.crop_scale, 1.0))
    log(
        f"model: {config.arch}{' pretrained' if config.pretrained else ''}, {count_parameters(model) / 1e6:.2f}M parameters "
        f"({count_parameters(model, trainable_only=True) / 1e6:.2f}M trained); {size}px, {precision}, {device.type}; "
        f"{config.optimizer} lr {base_lr:g}" + (f"; class weights {[round(w, 3) for w in weights.tolist()]}" if weights is not None else "")
    )

    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    start_epoch, step, train_seconds, train_cpu_seconds = 0, 0, 0.0, 0.0
    if payload is not None:
        state = payload["training_state"]
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, best = list(state["history"]), state["best"]
        start_epoch, step = int(payload["epoch"]), int(state["step"])
        train_seconds, train_cpu_seconds = float(state["train_seconds"]), float(state.get("train_cpu_seconds", 0.0))
        log(f"resuming {out} after epoch {start_epoch}")

    def info(epoch: int, metrics: dict[str, float]) -> CheckpointInfo:
        return CheckpointInfo(config.arch, classes, pre, dict(config.options), epoch, metrics, config.tta)

    def metrics_json(extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "classes": list(classes),
            "data": {
                "dir": str(data_dir),
                "layout": splits.layout,
                "images": {name: len(d) for name, d in decoded.items()},
                "per_class": {name: d.counts() for name, d in decoded.items()},
                "skipped": skipped,
                "decode_seconds": decode_seconds,
            },
            "precision": str(precision),
            "size": size,
            "parameters": count_parameters(model),
            "epochs": history,
            "best": best,
            "train_seconds": train_seconds,
            # CPU time of this process: on a CPU shared with other jobs, wall time overstates the cost
            "train_cpu_seconds": train_cpu_seconds,
            **extra,
        }

    out.mkdir(exist_ok=True)  # only now: a bad data folder leaves nothing behind
    _write_json(out / "config.json", config.to_dict())
    for epoch in range(start_epoch + 1, config.epochs + 1):
        cpu_start = time.process_time()
        bar = progress_bar(len(train_data), f"epoch {epoch}/{config.epochs}", progress)
        view = lambda u8: augment(u8, generator)  # noqa: E731
        stats, step = train_one_epoch(
            model,
            prefetch(batches(train_data, config.batch_size, view, shuffle=generator)),
            criterion,
            optimizer,
            pre,
            lr_at=lr_at,
            step=step,
            precision=precision,
            freeze_bn=config.bn_frozen(),
            progress=bar,
        )
        if bar:
            bar.close()
        eval_start = time.perf_counter()
        bar = progress_bar(len(val_data), f"evaluating ({splits.val_name})", progress)
        ev = evaluate(
            model, val_data, pre, batch_size=max(64, config.batch_size), precision=eval_precision, tta=config.tta, progress=bar
        )
        if bar:
            bar.close()
        seconds = stats.seconds + time.perf_counter() - eval_start
        train_seconds += seconds
        cpu_seconds = time.process_time() - cpu_start
        train_cpu_seconds += cpu_seconds
        record = {
            "epoch": epoch,
            "lr": lr_at(step - 1),
            "train_loss": stats.loss,
            "train_accuracy": stats.accuracy,
            "val_loss": ev.loss,
            "val_accuracy": ev.accuracy,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
        }
        history.append(record)
        improved = best is None or ev.accuracy > best["accuracy"]
        if improved:
            best = {"epoch": epoch, **ev.to_dict(splits.val_name)}
            save_checkpoint(out / "best.pt", model, info(epoch, {"val_accuracy": ev.accuracy}))
        save_checkpoint(
            out / "last.pt",
            model,
            info(epoch, {"val_accuracy": ev.accuracy}),
            training_state={
                "config": config.to_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
                "best": best,
                "step": step,
                "train_seconds": train_seconds,
                "train_cpu_seconds": train_cpu_seconds,
            },
        )
        _write_json(out / "metrics.json", metrics_json({}))
        report.save_figure(report.curves_figure(history, f"{out.name}: {config.arch}"), out / "curves.png")
        log(
            f"epoch {epoch}/{config.epochs}: train loss {stats.loss:.3f} acc {stats.accuracy:.3f} | "
            f"{splits.val_name} loss {ev.loss:.3f} acc {ev.accuracy:.4f} | {seconds:.0f}s ({cpu_seconds:.0f} cpu-s)" + ("  *best" if improved else "")
        )

    # the best epoch decides; with a separate test folder it is scored once, at the end
    final = dict(best)
    extra: dict[str, Any] = {}
    if "test" in decoded:
        best_state = read_checkpoint(out / "best.pt")["state_dict"]
        model.load_state_dict(best_state)
        ev = evaluate(model, decoded["test"], pre, precision=eval_precision, tta=config.tta)
        final = extra["test"] = ev.to_dict("test")
    cm = torch.tensor(final["confusion_matrix"])
    title = f"{config.arch}, epoch {best['epoch']}: {final['split']} accuracy {final['accuracy']:.3f}"
    report.save_figure(report.confusion_figure(cm, classes, title), out / "confusion_matrix.png")
    extra["wall_seconds"] = time.perf_counter() - wall_start
    metrics = metrics_json(extra)
    _write_json(out / "metrics.json", metrics)
    log(f"best epoch {best['epoch']}: {final['split']} accuracy {final['accuracy']:.4f}\n{report.format_confusion(cm, classes)}")
    return metrics
