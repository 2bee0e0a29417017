"""Sub-commands `train`, `evaluate` and `report`: the classifier study from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import imagefiles
from ..errors import SettingsError
from ..training.config import (
    AUX_WEIGHT_LIMIT,
    BATCH_LIMIT,
    CLASS_WEIGHT_LIMIT,
    EPOCHS_LIMIT,
    HEAD_LR_SCALE_LIMIT,
    LR_LIMIT,
    SIZE_LIMIT,
    WEIGHT_DECAY_LIMIT,
    WIDTH_LIMIT,
)
from .args import cpu_threads, float_in, int_in, seed


def class_weights_arg(text: str) -> tuple[float, ...] | str:
    """'auto' or '0.42,0.58'."""
    if text.strip().lower() == "auto":
        return "auto"
    weight = float_in(0, CLASS_WEIGHT_LIMIT, open_low=True)
    try:
        return tuple(weight(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"class weights must be 'auto' or numbers in (0, {CLASS_WEIGHT_LIMIT:g}] like 0.42,0.58, got '{text}'"
        ) from None


fraction = float_in(0, 1, open_low=True, open_high=True)
pixels = int_in(16, SIZE_LIMIT)


def register(sub: argparse._SubParsersAction) -> None:
    _register_train(sub)
    _register_evaluate(sub)
    _register_report(sub)


def _arch(text: str) -> str:
    """A registered architecture, or timm:NAME / torchvision:NAME (the network itself is checked when built)."""
    from ..errors import ModelError
    from ..models.architectures import get_architecture

    try:
        return get_architecture(text).name
    except ModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _register_train(sub: argparse._SubParsersAction) -> None:
    from ..models.architectures import ARCHITECTURES
    from ..training.optim import TORCH_OPTIMIZERS
    from ..training.precision import TRAIN_PRECISIONS

    p = sub.add_parser(
        "train",
        help="train a classifier on an image folder",
        description="Train a classifier on DATA_DIR (train/<class>/ + test/<class>/, or one <class>/ tree with "
        "--val-split). The run folder gets best.pt, last.pt, metrics.json, curves.png and confusion_matrix.png. "
        "Unset options come from the recipe for the architecture (simple_cnn: 26 epochs at 96 px; "
        "efficientnet_lite0 --pretrained: 2 epochs, blocks.5 onwards trained). Under torchrun the processes train "
        "together (DistributedDataParallel).",
    )
    p.add_argument("data", metavar="DATA_DIR")
    p.add_argument("--out", "-o", help="run folder (default runs/ARCH)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--force", action="store_true", help="start over in a run folder that holds a run")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("model")
    g.add_argument(
        "--arch",
        type=_arch,
        metavar="ARCH",
        help=f"architecture: {', '.join(ARCHITECTURES)}, or timm:NAME / torchvision:NAME (default simple_cnn)",
    )
    g.add_argument("--pretrained", action="store_true", default=None, help="start from ImageNet weights, new head")
    g.add_argument(
        "--weights", metavar="FILE", help="start from a local state dict (.pth/.safetensors); implies --pretrained"
    )
    g.add_argument("--freeze-backbone", action="store_true", default=None, help="train the new head only")
    g.add_argument(
        "--trainable-from", metavar="LAYER",
        help="freeze everything before this dotted layer (e.g. blocks.3; efficientnet_lite0 --pretrained: "
        "blocks.5, conv_stem trains all)",
    )  # fmt: skip
    g.add_argument(
        "--freeze-bn",
        action=argparse.BooleanOptionalAction,
        help="keep batch-norm statistics fixed (default: when --pretrained)",
    )
    g.add_argument(
        "--aux-logits",
        action=argparse.BooleanOptionalAction,
        help="inception_v3: auxiliary classifier, its loss weighted in",
    )
    g.add_argument(
        "--aux-weight", type=float_in(0, AUX_WEIGHT_LIMIT), help="weight of the auxiliary loss (default 0.4)"
    )
    g.add_argument(
        "--transform-input",
        action=argparse.BooleanOptionalAction,
        help="inception_v3: re-normalise input (default: with --pretrained)",
    )
    g.add_argument("--width", type=int_in(1, WIDTH_LIMIT), help="simple_cnn: channels of the first layer (default 32)")
    g.add_argument(
        "--dropout", type=float_in(0, 1, open_high=True), help="simple_cnn: dropout before the classifier (default 0.2)"
    )
    g = p.add_argument_group("optimisation")
    g.add_argument(
        "--epochs",
        type=int_in(1, EPOCHS_LIMIT),
        help="default: the recipe's (simple_cnn 26, efficientnet_lite0 --pretrained 2, else 10)",
    )
    g.add_argument(
        "--batch-size", type=int_in(1, BATCH_LIMIT), help="global batch, split over torchrun's processes (default 32)"
    )
    g.add_argument("--optimizer", choices=list(TORCH_OPTIMIZERS), help="default adamw")
    g.add_argument(
        "--lr",
        type=float_in(0, LR_LIMIT, open_low=True),
        help="peak learning rate (default 3e-3 from scratch, 1e-4 fine-tuning, 1e-3 head only)",
    )
    g.add_argument(
        "--head-lr-scale",
        type=float_in(0, HEAD_LR_SCALE_LIMIT, open_low=True),
        help="the new head's lr is --lr times this (default 10 with --pretrained)",
    )
    g.add_argument("--weight-decay", type=float_in(0, WEIGHT_DECAY_LIMIT), help="default 0.01 (simple_cnn 0.05)")
    g.add_argument(
        "--warmup",
        type=float_in(0, EPOCHS_LIMIT),
        help="epochs of linear warm-up before the cosine decay (default 0.5; lite0 --pretrained 0.3)",
    )
    g.add_argument("--label-smoothing", type=float_in(0, 1, open_high=True), help="default 0.1")
    g.add_argument("--class-weights", type=class_weights_arg, help="'auto' (inverse class frequency) or e.g. 0.42,0.58")
    g.add_argument("--seed", type=seed)
    g.add_argument("--precision", choices=TRAIN_PRECISIONS, help="auto: bf16 where the CPU/GPU has it natively")
    g.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="default cpu")
    g.add_argument("--threads", type=cpu_threads, help="CPU threads (default: one per core)")
    g = p.add_argument_group("data")
    g.add_argument("--size", type=pixels, help="training crop in pixels (default per architecture; simple_cnn 96)")
    g.add_argument(
        "--eval-size", type=pixels,
        help="centre crop for evaluation (default --size; lite0 --pretrained 256: a bit larger often scores better)",
    )  # fmt: skip
    g.add_argument("--resize", type=pixels, help="decoded square the crops come from (default size/0.875)")
    g.add_argument(
        "--crop-scale", type=float_in(0, 1, open_low=True),
        help="smallest area fraction of the random crop (default 0.25; simple_cnn 0.35, lite0 --pretrained 0.5)",
    )  # fmt: skip
    g.add_argument(
        "--val-split", type=fraction, help="carve this fraction of train/ (or the single tree) out for validation"
    )
    g.add_argument("--tta", action="store_true", default=None, help="evaluate with the mirrored image averaged in")
    p.set_defaults(run=run_train)


def _register_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="accuracy and confusion matrix of a checkpoint",
        description="Score a checkpoint on DATA_DIR: its test/ (or val/) folder, or a plain <class>/ tree.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("data", metavar="DATA_DIR")
    p.add_argument("--split", default="auto", help="sub-folder to score (default: test/ or val/, else the tree itself)")
    p.add_argument("-o", "--output", help="write the confusion matrix figure (.png, .pdf, .svg)")
    p.add_argument("--json", metavar="FILE", help="write the evaluation as JSON")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--batch-size", type=int_in(1, BATCH_LIMIT), default=64)
    p.add_argument(
        "--tta", action=argparse.BooleanOptionalAction, help="average in the mirrored image (default: as trained)"
    )
    p.add_argument("--threads", type=cpu_threads, help="CPU threads (default: one per core)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run_evaluate)


def _register_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="compare training runs",
        description="Print a table comparing run folders and optionally draw accuracy curves and confusion matrices.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("-o", "--output", help="comparison figure (.png, .pdf, .svg)")
    p.add_argument("--force", action="store_true", help="overwrite an existing figure")
    p.set_defaults(run=run_report)


FIGURE_FORMATS = (".png", ".pdf", ".svg")


def _figure_output(path: str, force: bool, inputs: tuple[str, ...]) -> Path:
    out = Path(path)
    if out.suffix.lower() not in FIGURE_FORMATS:
        raise SettingsError(f"figure format must be one of {', '.join(FIGURE_FORMATS)}, got '{out.suffix}' for {out}")
    return imagefiles.check_writable(out, force=force, inputs=inputs)


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _warn_skip(path: Path, reason: str) -> None:
    print(f"deepdream: warning: skipped {path}: {reason}", file=sys.stderr)


def _config_from_args(args: argparse.Namespace):
    """The recipe for the architecture with the options given on top; on --resume the run's own config instead."""
    from ..training.config import load_config
    from ..training.recipes import recipe

    options = {
        key: value
        for key, value in (
            ("aux_logits", args.aux_logits), ("transform_input", args.transform_input), ("width", args.width),
            ("dropout", args.dropout),
        )
        if value is not None
    }  # fmt: skip
    given = {
        "weights": str(Path(args.weights).resolve()) if args.weights else None,
        "freeze_backbone": args.freeze_backbone,
        "trainable_from": args.trainable_from,
        "freeze_bn": args.freeze_bn,
        "aux_weight": args.aux_weight,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "head_lr_scale": args.head_lr_scale,
        "weight_decay": args.weight_decay,
        "warmup": args.warmup,
        "label_smoothing": args.label_smoothing,
        "class_weights": args.class_weights,
        "seed": args.seed,
        "precision": args.precision,
        "device": args.device,
        "size": args.size,
        "eval_size": args.eval_size,
        "resize": args.resize,
        "crop_scale": args.crop_scale,
        "val_split": args.val_split,
        "tta": args.tta,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if args.resume:
        # the run's own settings with the given ones on top; fit refuses any change but --epochs
        saved = load_config(args.out)
        for key, value in (("arch", args.arch), ("pretrained", args.pretrained)):
            if value is not None:
                given[key] = value
        return saved.replace(**given, options={**saved.options, **options})
    return recipe(args.arch or "simple_cnn", bool(args.pretrained), **given, options=options)


def run_train(args: argparse.Namespace) -> int:
    from ..training.distributed import launched
    from ..training.run import fit

    if args.out is None:
        args.out = str(Path("runs") / (args.arch or "simple_cnn"))
    if args.resume and args.force:
        raise SettingsError("use either --resume or --force")
    config = _config_from_args(args)
    _set_threads(args.threads)
    fit(args.data, args.out, config, resume=args.resume, force=args.force, progress=not args.quiet, on_skip=_warn_skip)
    if launched().main:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..training import report
    from ..training.evaluation import evaluate_checkpoint

    # neither output may be the checkpoint, lie in the data folder, or be the other output
    read = (args.checkpoint, args.data)
    figure = _figure_output(args.output, args.force, read) if args.output else None
    json_out = (
        imagefiles.check_writable(Path(args.json), force=args.force, inputs=(*read, figure)) if args.json else None
    )
    _set_threads(args.threads)
    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        split=args.split,
        batch_size=args.batch_size,
        tta=args.tta,
        progress=not args.quiet,
        on_skip=_warn_skip,
    )
    ev, info = result.evaluation, result.info
    skipped = f", {len(result.skipped)} unreadable skipped" if result.skipped else ""
    print(f"{args.checkpoint} ({info.arch}, epoch {info.epoch}) on {args.data}: {len(ev.targets)} images{skipped}")
    print(
        f"accuracy {ev.accuracy:.4f}  loss {ev.loss:.4f}  ({result.seconds:.1f}s{', flip TTA' if result.tta else ''})"
    )
    print(report.format_confusion(ev.confusion, info.classes))
    if figure is not None:
        title = f"{Path(args.checkpoint).parent.name or info.arch}: accuracy {ev.accuracy:.3f}"
        report.save_figure(report.confusion_figure(ev.confusion, info.classes, title), figure)
        print(f"wrote {figure}", file=sys.stderr)
    if json_out is not None:
        data = result.to_dict(args.split if args.split != "auto" else "evaluation", args.data)
        imagefiles.atomic_write(json_out, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))
        print(f"wrote {json_out}", file=sys.stderr)
    return 0


def run_report(args: argparse.Namespace) -> int:
    import torch

    from ..training import report

    figure = _figure_output(args.output, args.force, tuple(args.runs)) if args.output else None
    runs = [report.load_run(path) for path in args.runs]
    print(report.comparison_table(runs))
    for run in runs:
        final = run.final
        if final.get("confusion_matrix") is not None:
            print(f"\n{run.name}: {final['split']} accuracy {final['accuracy']:.4f}")
            print(report.format_confusion(torch.tensor(final["confusion_matrix"]), run.classes))
    if figure is not None:
        report.save_figure(report.comparison_figure(runs), figure)
        print(f"wrote {figure}", file=sys.stderr)
    return 0
