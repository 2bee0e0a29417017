"""The trainer on a synthetic image-folder dataset: it learns, checkpoints round-trip, the CLI works end
to end, corrupt files are skipped, a wrong layout is one clear line, and a trained model dreams."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deepdream
from conftest import run_cli
from deepdream.cli import main
from deepdream.errors import ModelError, OutputError, SettingsError
from deepdream.models.architectures import build_model, set_trainable
from deepdream.models.checkpoint import (
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from deepdream.models.preprocessing import Preprocessing
from deepdream.runtime import native_bf16
from deepdream.training import report
from deepdream.training.config import TrainConfig
from deepdream.training.data import (
    DatasetError,
    PhotoAugment,
    SkippedImageWarning,
    decode,
    discover,
    prefetch,
    scan_folder,
)
from deepdream.training.loop import predict
from deepdream.training.optim import ClassifierLoss, class_weights, cosine_lr
from deepdream.training.precision import PrecisionPlan, plan_precision, precision_switch
from deepdream.training.run import fit

CLASSES = ("checker", "horizontal", "vertical")
SIZE = 48


@pytest.fixture(autouse=True)
def one_thread():
    # tiny tensors: one thread avoids OpenMP hand-offs that dominate (and stall on a busy CPU)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def stripes(kind: str, rng: np.random.Generator, size: int = SIZE) -> Image.Image:
    """Random-colour stripes: horizontal, vertical, or a checker of both; noise on top."""
    yy, xx = np.mgrid[0:size, 0:size]
    period, phase = rng.uniform(6, 12), rng.uniform(0, 2 * np.pi)
    wave = {
        "horizontal": np.sin(2 * np.pi * yy / period + phase),
        "vertical": np.sin(2 * np.pi * xx / period + phase),
        "checker": np.sin(2 * np.pi * xx / period + phase) * np.sin(2 * np.pi * yy / period + phase),
    }[kind]
    img = rng.uniform(0.2, 0.8, 3) + rng.uniform(0.15, 0.3) * wave[..., None] + rng.normal(0, 0.05, (size, size, 3))
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")


def make_dataset(root: Path, n_train: int = 24, n_test: int = 12, seed: int = 0, layout: str = "split") -> Path:
    """train/<class>/ and test/<class>/ (layout 'split') or a single <class>/ tree (layout 'flat')."""
    rng = np.random.default_rng(seed)
    parts = (("train", n_train), ("test", n_test)) if layout == "split" else (("", n_train),)
    for split, n in parts:
        for kind in CLASSES:
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                stripes(kind, rng).save(folder / f"{i:03d}.png")
    return root


def add_corrupt_files(folder: Path) -> int:
    (folder / "garbage.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    (folder / "empty.png").write_bytes(b"")
    good = (folder / "000.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 3])
    return 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real training run through the CLI on a synthetic dataset with 3 corrupt files in it."""
    root = make_dataset(tmp_path_factory.mktemp("data"))
    corrupt = add_corrupt_files(root / "train" / "vertical")
    run = tmp_path_factory.mktemp("runs") / "cnn"
    result = run_cli(
        "train",
        root,
        "--arch",
        "simple_cnn",
        "--width",
        "8",
        "--size",
        "40",
        "--epochs",
        "8",
        "--batch-size",
        "16",
        "--seed",
        "0",
        "--out",
        run,
        "--threads",
        "1",
    )  # fmt: skip  (no -q: progress goes to a pipe, as in a log)
    assert result.returncode == 0, result.stderr
    return {"data": root, "run": run, "stderr": result.stderr, "corrupt": corrupt}


# ---------------------------------------------------------------- learning and the run folder


def test_training_learns_well_above_chance(trained):
    metrics = json.loads((trained["run"] / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 8
    assert metrics["best"]["accuracy"] >= 0.8  # chance is 1/3
    assert metrics["epochs"][-1]["train_loss"] < metrics["epochs"][0]["train_loss"]
    for name in ("best.pt", "last.pt", "metrics.json", "config.json", "confusion_matrix.png", "curves.png"):
        assert (trained["run"] / name).is_file(), name
    assert Image.open(trained["run"] / "confusion_matrix.png").size[0] > 100


def test_corrupt_images_are_skipped_warned_and_counted(trained):
    metrics = json.loads((trained["run"] / "metrics.json").read_text())
    assert metrics["data"]["skipped"]["train"] == trained["corrupt"]
    assert metrics["data"]["images"]["train"] == 3 * 24
    warnings = [line for line in trained["stderr"].splitlines() if "warning: skipped" in line]
    assert len(warnings) == trained["corrupt"]
    assert "skipped 3 unreadable" in trained["stderr"]


def test_progress_off_a_terminal_is_one_plain_line_per_epoch(trained):
    """stderr is a pipe here: no carriage-return bar updates, one summary line for each of the 8 epochs."""
    err = trained["stderr"]
    assert "\r" not in err and "\x1b" not in err
    epoch_lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == [f"epoch {k}/8" for k in range(1, 9)]
    assert all("train loss" in line and "test loss" in line for line in epoch_lines)
    assert len(err.splitlines()) < 30  # data, model, 3 skip warnings, 8 epochs, the best epoch and its matrix


def test_decode_warns_on_each_corrupt_file(tmp_path):
    root = make_dataset(tmp_path / "d", n_train=3, n_test=1)
    add_corrupt_files(root / "train" / "checker")
    split = scan_folder(root / "train")
    with pytest.warns(SkippedImageWarning) as caught:
        data = decode(split, 32)
    assert len(caught) == 3 and len(data.skipped) == 3
    assert data.images.shape == (9, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.counts() == [3, 3, 3]


def test_a_class_with_only_corrupt_files_is_an_error(tmp_path):
    root = make_dataset(tmp_path / "d", n_train=2, n_test=1)
    for f in (root / "train" / "checker").iterdir():
        f.write_bytes(b"broken")
    with pytest.raises(DatasetError, match="no readable images left for class checker"):
        decode(scan_folder(root / "train"), 32, on_skip=lambda p, r: None)


# ---------------------------------------------------------------- loss, schedule, confusion matrix


def test_class_weights_change_the_loss_as_expected():
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])  # the second sample (class 1) is wrong
    targets = torch.tensor([0, 1, 1])
    ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    plain, _ = ClassifierLoss()(logits, targets)
    weighted, _ = ClassifierLoss(torch.tensor([0.42, 0.58]))(logits, targets)
    assert plain == pytest.approx(float(ce.mean()))
    expected = (0.42 * ce[0] + 0.58 * ce[1] + 0.58 * ce[2]) / (0.42 + 0.58 + 0.58)
    assert weighted == pytest.approx(float(expected))
    heavier, _ = ClassifierLoss(torch.tensor([1.0, 3.0]))(logits, targets)
    assert heavier > plain  # the misclassified class counts more
    assert class_weights("auto", [30, 10]).tolist() == pytest.approx([40 / 60, 40 / 20])
    assert class_weights("auto", [10, 10]).tolist() == [1.0, 1.0]
    assert class_weights((0.42, 0.58), [1, 1]).tolist() == pytest.approx([0.42, 0.58])
    assert class_weights(None, [1, 2]) is None
    with pytest.raises(SettingsError, match="2 class weights given for 3 classes"):
        class_weights((1.0, 2.0), [1, 1, 1])


def test_aux_loss_is_weighted_in():
    main, aux = torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 1])
    ce = torch.nn.functional.cross_entropy
    loss, logits = ClassifierLoss(aux_weight=0.4)((main, aux), y)
    assert loss == pytest.approx(float(ce(main, y) + 0.4 * ce(aux, y)))
    assert logits is main


def test_confusion_matrix_on_a_known_case():
    targets = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0, 2])
    cm = report.confusion_matrix(targets, preds, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert report.accuracy(cm) == pytest.approx(5 / 7)
    assert report.recall_per_class(cm) == pytest.approx([0.5, 1.0, 2 / 3])
    assert report.confusion_matrix(torch.tensor([1]), torch.tensor([0]), 4).sum() == 1
    text = report.format_confusion(cm, ["a", "b", "c"])
    assert text.splitlines()[1].split()[:4] == ["a", "1", "1", "0"]


def test_cosine_schedule_warms_up_then_decays():
    lrs = [cosine_lr(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] < 0.01
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_photo_augment_exact_on_tiny_tensors():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8).remainder(256).to(torch.uint8)
    identity = PhotoAugment(8, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, jitter=0.0)
    out = identity(images, torch.Generator().manual_seed(0))
    assert torch.allclose(out, images.float() / 255, atol=1e-6)
    augment = PhotoAugment(6)
    a = augment(images, torch.Generator().manual_seed(3))
    b = augment(images, torch.Generator().manual_seed(3))
    assert a.shape == (2, 3, 6, 6) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    pre = Preprocessing(6, 8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.equal(pre.center(images), images[..., 1:7, 1:7].float() / 255)
    larger = Preprocessing(4, 8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), eval_size=6)  # train 4 px crops, score 6 px
    assert torch.equal(larger.center(images), pre.center(images))
    assert Preprocessing.from_dict(larger.to_dict()) == larger


def test_prefetch_keeps_order_propagates_errors_and_stops_early():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(prefetch(failing()))
    for i in prefetch(iter(range(1000)), depth=2):  # leaving early must not hang on a full queue
        if i == 3:
            break


# ---------------------------------------------------------------- models


def test_pretrained_efficientnet_gets_a_new_head_and_freezing_works():
    net = build_model("efficientnet_lite0", 3, pretrained=True)
    embedded = deepdream.load_backbone("efficientnet_lite0").model
    assert net.model.classifier.out_features == 3
    assert torch.equal(net.model.conv_stem.weight, embedded.conv_stem.weight)
    head_only = set_trainable(net, freeze_backbone=True)
    assert [p.shape for p in head_only] == [torch.Size([3, 1280]), torch.Size([3])]
    set_trainable(net, trainable_from="blocks.5")
    trained = {n for n, p in net.model.named_parameters() if p.requires_grad}
    assert "blocks.5.0.conv_pw.weight" in trained and "conv_head.weight" in trained and "classifier.weight" in trained
    assert not any(n.startswith(("blocks.4.", "conv_stem")) for n in trained)
    with pytest.raises(ModelError, match="unknown layer 'blocks.9'"):
        set_trainable(net, trainable_from="blocks.9")
    with pytest.raises(ModelError, match="no pretrained weights"):
        build_model("simple_cnn", 2, pretrained=True)


def test_pretrained_weights_from_a_local_file(tmp_path):
    source = build_model("efficientnet_lite0", 1000).model  # random weights stand in for a downloaded file
    path = tmp_path / "lite0.pth"
    torch.save(source.state_dict(), path)
    net = build_model("efficientnet_lite0", 2, pretrained=True, weights=path)
    assert torch.equal(net.model.conv_stem.weight, source.conv_stem.weight) and net.model.classifier.out_features == 2
    with pytest.raises(ModelError, match="no pretrained weights"):
        build_model("simple_cnn", 2, weights=path)


def test_precision_plan_keeps_trained_depthwise_layers_in_fp32():
    cpu = torch.device("cpu")
    net = build_model("efficientnet_lite0", 2)
    set_trainable(net, trainable_from="blocks.5")
    plan = plan_precision("auto", cpu, net.model)
    if native_bf16(cpu):
        assert plan == PrecisionPlan("bf16", "fp32", "blocks.5")
        assert plan_precision("auto", cpu, build_model("simple_cnn", 2).model) == PrecisionPlan("bf16", "bf16")
    else:
        assert plan == PrecisionPlan("fp32", "fp32")
    set_trainable(net)  # everything trains: no frozen prefix to run in bf16
    assert plan_precision("auto", cpu, net.model).boundary is None
    assert plan_precision("fp32", cpu, net.model) == PrecisionPlan("fp32", "fp32")

    # the switch: bf16 up to the boundary, fp32 from there on, gradients only where they train
    set_trainable(net, trainable_from="blocks.5")
    dtypes = {}

    def record(name):
        def hook(module, inputs, output):
            dtypes[name] = output.dtype

        return hook

    hooks = [net.model.get_submodule(n).register_forward_hook(record(n)) for n in ("blocks.4", "blocks.5")]
    with (
        precision_switch(net.model, PrecisionPlan("bf16", "fp32", "blocks.5"), cpu),
        torch.autocast("cpu", dtype=torch.bfloat16),
    ):
        logits = net.model(torch.rand(2, 3, 64, 64))
    assert not torch.is_autocast_enabled("cpu")  # the step's autocast restored its state
    assert dtypes == {"blocks.4": torch.bfloat16, "blocks.5": torch.float32} and logits.dtype == torch.float32
    logits.sum().backward()
    assert net.model.blocks[5][0].conv_pw.weight.grad is not None and net.model.blocks[4][0].conv_pw.weight.grad is None
    for h in hooks:
        h.remove()


def test_inception_v3_wrapper_options():
    net = build_model("inception_v3", 3, options={"aux_logits": True, "transform_input": True})
    model = net.model
    assert model.transform_input and model.aux_logits and net.head == ("fc", "AuxLogits")
    assert model.fc.out_features == 3 and model.AuxLogits.fc.out_features == 3
    model.train()
    x = torch.randn(2, 3, net.min_size, net.min_size)
    out = model(x)
    assert isinstance(out, tuple) and out[0].shape == out[1].shape == (2, 3)
    loss, _ = ClassifierLoss(aux_weight=0.4)(out, torch.tensor([0, 2]))
    loss.backward()
    assert model.AuxLogits.fc.weight.grad is not None  # the auxiliary loss reaches its head
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3)
    assert not build_model("inception_v3", 2).model.transform_input  # off without pretrained weights
    with pytest.raises(ModelError, match="does not take the option"):
        build_model("inception_v3", 2, options={"width": 4})


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    torch.manual_seed(0)
    net = build_model("simple_cnn", 3, options={"width": 8})
    net.model.train()
    with torch.no_grad():  # move the batch-norm statistics away from their initial values
        net.model(torch.randn(8, 3, 40, 40))
    pre = Preprocessing(36, 46, net.mean, net.std, eval_size=40)
    info = CheckpointInfo("simple_cnn", CLASSES, pre, {"width": 8}, epoch=3, metrics={"val_accuracy": 0.5})
    path = save_checkpoint(tmp_path / "ck.pt", net.model, info)
    raw = torch.load(path, weights_only=True)  # plain data and tensors only
    assert raw["classes"] == list(CLASSES) and raw["arch"] == "simple_cnn"
    loaded, loaded_info, _ = load_checkpoint(path)
    assert loaded_info == info
    images = torch.randint(0, 256, (5, 3, 46, 46), dtype=torch.uint8)
    before = predict(net.model, images, pre)
    after = predict(loaded.model, images, loaded_info.preprocessing)
    assert torch.equal(before, after)


def test_checkpoint_loading_refuses_foreign_files(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(1)}, plain)
    with pytest.raises(ModelError, match="not a checkpoint written by 'deepdream train'"):
        read_checkpoint(plain)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "deepdream-classifier", "obj": Path("x")}, evil)  # needs unpickling a class
    with pytest.raises(ModelError, match="cannot load checkpoint"):
        read_checkpoint(evil)
    with pytest.raises(ModelError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_is_a_dreaming_backbone(trained):
    backbone = deepdream.load_backbone(checkpoint=trained["run"] / "best.pt")
    assert backbone.categories == CLASSES
    assert backbone.resolve_class("Vertical") == 2
    assert not backbone.model.training
    assert not any(p.requires_grad for p in backbone.model.parameters())
    for layer in backbone.recommended_layers:
        assert backbone.resolve_layer(layer) == layer
    # the models layer names no command line (issue 23): the hint is the layer count, the CLI lists them
    with pytest.raises(ModelError, match=r"unknown layer 'no_such_layer_xyz' for simple_cnn; it has \d+ listed"):
        backbone.resolve_layer("no_such_layer_xyz")


def test_dreaming_with_a_trained_checkpoint_raises_the_target_class(trained, tmp_path):
    source = next((trained["data"] / "test" / "horizontal").glob("*.png"))
    checkpoint = trained["run"] / "best.pt"
    backbone = deepdream.load_backbone(checkpoint=checkpoint)
    target = backbone.resolve_class("vertical")

    def probability(img: Image.Image) -> float:
        x = deepdream.imagefiles.pil_to_tensor(img)[0]
        with torch.no_grad():
            return float(torch.softmax(backbone.model(backbone.normalize(x)), 1)[0, target])

    dreamed = deepdream.dream(
        source, backbone=backbone, target_class="vertical", iterations=20, octaves=1, jitter=2, seed=0, precision="fp32"
    )
    before, after = probability(Image.open(source).convert("RGB")), probability(dreamed)
    assert after > before + 0.3, (before, after)
    out = tmp_path / "dogcloud.png"
    result = run_cli(
        "dream", source, "-o", out, "--checkpoint", checkpoint, "--target-class", "vertical",
        "--iterations", "5", "--octaves", "1", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size == (SIZE, SIZE)


# ---------------------------------------------------------------- evaluate and report through the CLI


def test_evaluate_cli_end_to_end(trained, tmp_path, capsys):
    figure, scores = tmp_path / "cm.png", tmp_path / "eval.json"
    result = run_cli(
        "evaluate", trained["run"] / "best.pt", trained["data"], "-o", figure, "--json", scores, "-q", "--threads", "1"
    )
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout and "horizontal" in result.stdout
    evaluation = json.loads(scores.read_text())
    metrics = json.loads((trained["run"] / "metrics.json").read_text())
    # the same best checkpoint on the same test folder scores exactly what training recorded
    assert evaluation["confusion_matrix"] == metrics["best"]["confusion_matrix"]
    assert evaluation["images"] == 3 * 12
    assert Image.open(figure).format == "PNG"
    assert main(["evaluate", str(trained["run"] / "best.pt"), str(trained["data"]), "-o", str(figure), "-q"]) == 1
    assert "exists (use --force" in capsys.readouterr().err


def test_report_cli_end_to_end(trained, tmp_path, capsys):
    other = tmp_path / "cnn_copy"
    shutil.copytree(trained["run"], other)
    figure = tmp_path / "comparison.png"
    result = run_cli("report", trained["run"], other, "-o", figure)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| cnn")]
    assert len(rows) == 2 and "simple_cnn" in rows[0]
    assert Image.open(figure).size[0] >= 600
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("deepdream: error:") and "no metrics.json" in err


# ---------------------------------------------------------------- layouts, resume, refusing to overwrite


def test_wrong_layout_gives_one_clear_cli_error(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    stripes("vertical", np.random.default_rng(0)).save(loose / "a.png")
    result = run_cli("train", loose, "--out", tmp_path / "run", "-q")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("deepdream: error:")
    assert "no class folders" in result.stderr
    assert not (tmp_path / "run").exists()


def test_layout_errors_name_the_fix(tmp_path):
    flat = make_dataset(tmp_path / "flat", n_train=2, layout="flat")
    with pytest.raises(DatasetError, match="pass --val-split"):
        discover(flat)
    assert len(discover(flat, val_split=0.5).val) == 3
    only_train = tmp_path / "only_train"
    shutil.copytree(flat, only_train / "train")
    with pytest.raises(DatasetError, match="no sibling test/"):
        discover(only_train)
    one_class = tmp_path / "one"
    shutil.copytree(flat / "vertical", one_class / "vertical")
    with pytest.raises(DatasetError, match="at least 2 classes"):
        discover(one_class, val_split=0.5)
    with pytest.raises(DatasetError, match="not found"):
        discover(tmp_path / "nope")
    mismatch = make_dataset(tmp_path / "mismatch", n_train=1, n_test=1)
    (mismatch / "test" / "zebra").mkdir()
    stripes("vertical", np.random.default_rng(0)).save(mismatch / "test" / "zebra" / "z.png")
    with pytest.raises(DatasetError, match="not in the training classes: zebra"):
        discover(mismatch)


def test_val_split_resume_and_overwrite_protection(tmp_path):
    data = make_dataset(tmp_path / "flat", n_train=8, layout="flat")
    run = tmp_path / "run"
    config = TrainConfig(arch="simple_cnn", options={"width": 4}, size=32, epochs=2, batch_size=8, val_split=0.25)
    quiet = dict(progress=False, log=lambda m: None)
    first = fit(data, run, config, **quiet)
    assert [e["epoch"] for e in first["epochs"]] == [1, 2] and first["best"]["split"] == "validation"
    assert first["best"]["images"] == 6  # 2 of every 8 per class
    with pytest.raises(OutputError, match="already holds a run"):
        fit(data, run, config, **quiet)
    with pytest.raises(SettingsError, match="differ: lr"):
        fit(data, run, config.replace(epochs=3, lr=0.1), resume=True, **quiet)
    resumed = fit(data, run, config.replace(epochs=3), resume=True, **quiet)
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3]
    assert resumed["epochs"][:2] == first["epochs"]
    assert read_checkpoint(run / "last.pt")["epoch"] == 3
    fresh = fit(data, run, config.replace(epochs=1), force=True, **quiet)
    assert len(fresh["epochs"]) == 1


# ---------------------------------------------------------------- recipes, one resume check, evaluate_checkpoint


def _cli_config(*argv: str) -> TrainConfig:
    from deepdream.cli import build_parser
    from deepdream.cli.train import _config_from_args

    return _config_from_args(build_parser().parse_args(["train", "DATA", *argv]))


def test_plain_train_commands_run_the_study_recipes():
    """`deepdream train DATA [--arch efficientnet_lite0 --pretrained]` is the recipe docs/training.md measures."""
    transfer = _cli_config("--arch", "efficientnet_lite0", "--pretrained")
    assert transfer == TrainConfig(
        arch="efficientnet_lite0",
        pretrained=True,
        trainable_from="blocks.5",
        epochs=2,
        eval_size=256,
        crop_scale=0.5,
        warmup=0.3,
    )
    assert transfer.learning_rate() == 1e-4 and transfer.head_lr_multiplier() == 10 and transfer.bn_frozen()
    own = _cli_config()
    assert own == TrainConfig(arch="simple_cnn", epochs=26, size=96, crop_scale=0.35, weight_decay=0.05)
    assert own.learning_rate() == 3e-3 and own.batch_size == 32
    # options given on top replace the recipe's; the exclusive --freeze-backbone drops its --trainable-from
    assert _cli_config("--epochs", "5", "--size", "64").replace(epochs=26, size=96) == own
    head = _cli_config("--arch", "efficientnet_lite0", "--pretrained", "--freeze-backbone")
    assert head.freeze_backbone and head.trainable_from is None and head.epochs == 2
    # no recipe for this choice: the generic defaults
    assert _cli_config("--arch", "efficientnet_lite0") == TrainConfig(arch="efficientnet_lite0")


def test_resume_with_changed_settings_is_one_cli_line(trained):
    result = run_cli(
        "train", trained["data"], "--out", trained["run"], "--resume", "--lr", "0.5", "--width", "16", "-q"
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("deepdream: error:")
    assert "these settings differ: options, lr" in result.stderr


def test_evaluate_checkpoint_scores_what_training_recorded(trained):
    from deepdream.training import evaluate_checkpoint

    result = evaluate_checkpoint(trained["run"] / "best.pt", trained["data"], progress=False)
    metrics = json.loads((trained["run"] / "metrics.json").read_text())
    assert result.evaluation.confusion.tolist() == metrics["best"]["confusion_matrix"]
    assert result.info.classes == CLASSES and result.skipped == () and result.tta is False
    assert result.to_dict("test", trained["data"])["images"] == 3 * 12
