"""Hostile input across every command: one line and a non-zero exit (never a traceback), no hang, no
silent NaN, no output or partial file, inputs byte-identical, and concurrent runs that never clobber.

One representative case per class of issue 16. CLI cases run in-process through `main`; subprocesses
only where the process itself is the subject (a closed pipe, a full disk, two runs at once).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import synthetic_photo
from deepdream import locks
from deepdream.cli import main
from deepdream.errors import NonFiniteError, OutputError
from deepdream.imagefiles import save_image
from deepdream.models.architectures import build_model
from deepdream.models.checkpoint import CheckpointInfo, save_checkpoint
from deepdream.models.preprocessing import Preprocessing
from deepdream.settings import Settings
from deepdream.training.config import TrainConfig
from deepdream.training.loop import train_one_epoch

HUGE = "1180591620717411303424"  # 2**70
FAST = ["--octaves", "1", "--iterations", "2", "-q"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Evil:
    """Unpickling this would call print: a weights-only load must refuse it, never run it."""

    def __reduce__(self):
        return (print, ("EXECUTED",))


def _clip(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=8)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode())
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Tiny inputs of every kind in one folder: a photo, a dataset, checkpoints good and bad, runs, clips."""
    root = tmp_path_factory.mktemp("hostile")
    synthetic_photo(32, 32).save(root / "photo.png")
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("test", 1)):
        for cls in ("a", "b"):
            (root / "data" / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                    root / "data" / split / cls / f"{i}.png"
                )
    net = build_model("simple_cnn", 2, pretrained=False, options={"width": 4})
    pre = Preprocessing(32, 36, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    save_checkpoint(root / "ck.pt", net.model, CheckpointInfo("simple_cnn", ("a", "b"), pre, {"width": 4}))
    good = torch.load(root / "ck.pt", weights_only=True)
    nan = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in good["state_dict"].items()}
    torch.save({**good, "state_dict": nan}, root / "nan.pt")
    torch.save(
        {**good, "preprocessing": {**good["preprocessing"], "size": -5, "mean": [float("nan")] * 3}}, root / "absurd.pt"
    )
    (root / "empty.pt").write_bytes(b"")
    (root / "evil.pt").write_bytes(pickle.dumps({"format": "deepdream-classifier", "x": _Evil()}))
    (root / "big.toml").write_text('[deepdream]\ninit = "noise"\nsize = [100000, 100000]\n')
    metrics = {
        "classes": ["a", "b"], "config": {"arch": "simple_cnn"}, "train_seconds": 1.0,
        "epochs": [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.7, "train_accuracy": 0.5, "val_accuracy": 0.5}],
        "best": {"epoch": 1, "split": "validation", "images": 2, "accuracy": 0.5, "confusion_matrix": [[1, 0], [1, 0]]},
    }  # fmt: skip
    odd = {
        "badrun": {**metrics, "epochs": [{"epoch": 1, "val_accuracy": "high"}]},
        "nanrun": {**metrics, "train_seconds": float("nan")},
        "hugerun": {**metrics, "best": {**metrics["best"], "confusion_matrix": [[1e308, 0], [1, 0]]}},
        "infrun": {**metrics, "epochs": [{**metrics["epochs"][0], "val_loss": float("inf")}]},
    }
    for name, m in (("run", metrics), *odd.items()):
        (root / name).mkdir()
        (root / name / "metrics.json").write_text(json.dumps(m))  # NaN and Infinity as Python's json writes them
    Image.new("RGB", (8, 8)).save(root / "run" / "curves.png")
    (root / "resumable").mkdir()
    (root / "resumable" / "config.json").write_text(json.dumps(TrainConfig(options={"width": 4}, size=32).to_dict()))
    (root / "resumable" / "last.pt").write_bytes(b"")
    _clip(root / "a.mp4", 1)
    _clip(root / "b.mp4", 2)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (hidden ones, locks and temporaries too) with the hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def refused(capsys, root: Path, argv: list[str]) -> str:
    """Run the CLI in root; assert a non-zero exit with one line, no traceback, no file added or changed."""
    before = snapshot(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2
        code = exc.code
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code not in (0, None), err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "EXECUTED" not in out + err and "weights_only" not in err
    assert snapshot(root) == before, "a refused command changed files"
    return lines[0]


CASES = {
    # ---- tracebacks: one clear line instead
    "huge seed, dream": (["dream", "photo.png", "-o", "o.png", "--seed", HUGE], "seed must be an integer"),
    "huge seed, video": (["video", "a.mp4", "-o", "o.mp4", "--seed", HUGE], "seed must be an integer"),
    "huge seed, zoom": (["zoom", "photo.png", "-o", "o.mp4", "--seed", HUGE], "seed must be an integer"),
    "huge seed, sweep": (["sweep", "photo.png", "-o", "o.png", "--seed", HUGE], "seed must be an integer"),
    "huge seed, atlas": (["atlas", "-o", "o.png", "--seed", HUGE], "seed must be an integer"),
    "huge seed, train": (["train", "data", "--out", "r", "--seed", HUGE], "seed must be an integer"),
    "0-byte checkpoint, dream": (["dream", "photo.png", "-o", "o.png", "--checkpoint", "empty.pt"], "empty (0 bytes)"),
    "0-byte checkpoint, evaluate": (["evaluate", "empty.pt", "data"], "empty (0 bytes)"),
    "0-byte last.pt, resume": (["train", "data", "--out", "resumable", "--resume"], "empty (0 bytes)"),
    "noise too large": (["dream", "--init", "noise", "--size", "100000x100000", "-o", "o.png"], "lower --size"),
    "noise too large, config": (["dream", "--config", "big.toml", "-o", "o.png"], "lower --size"),
    "zoom too large": (["zoom", "--init", "noise", "--size", "100000x100000", "-o", "o.mp4"], "lower --size"),
    "atlas tile too large": (["atlas", "-o", "o.png", "--tile", "100000", "--channels", "0"], "needs about"),
    "train size too large": (
        ["train", "data", "--out", "r", "--size", "4096", "--batch-size", "65536"],
        "lower --size",
    ),
    "train size beyond any": (["train", "data", "--out", "r", "--size", "100000"], "from 16 to 4096"),
    "float overflow": (["atlas", "-o", "o.png", "--lr", "1e300"], "at most 3.4e+38"),
    "absurd preprocessing": (["evaluate", "absurd.pt", "data"], "invalid"),
    "metrics of wrong types": (["report", "badrun"], "val_accuracy should be a number"),
    "NaN seconds in metrics": (["report", "nanrun"], "train_seconds should be a number of seconds"),
    "1e308 count in metrics": (["report", "hugerun", "-o", "cmp.png"], "confusion_matrix should be a square table"),
    "inf loss in metrics": (["report", "infrun"], "val_loss should be a finite number"),
    # ---- numbers that overflow inside torch: refused where they are parsed (issue 23)
    "lr 1e38": (["train", "data", "--out", "r", "--lr", "1e38"], "must be in (0, 10]"),
    "lr 1e30": (["train", "data", "--out", "r", "--lr", "1e30"], "must be in (0, 10]"),
    "head lr scale": (["train", "data", "--out", "r", "--head-lr-scale", "3e38"], "must be in (0, 1000]"),
    "weight decay": (["train", "data", "--out", "r", "--weight-decay", "1e38"], "must be in [0, 10]"),
    "dropout above 1": (["train", "data", "--out", "r", "--dropout", "5"], "must be in [0, 1)"),
    "label smoothing 1": (["train", "data", "--out", "r", "--label-smoothing", "1"], "must be in [0, 1)"),
    "crop scale above 1": (["train", "data", "--out", "r", "--crop-scale", "2"], "must be in (0, 1]"),
    "epochs of many digits": (["train", "data", "--out", "r", "--epochs", HUGE], "from 1 to 100000"),
    "width of many digits": (["train", "data", "--out", "r", "--width", "100000000"], "from 1 to 1024"),
    "class weight 1e38": (["train", "data", "--out", "r", "--class-weights", "1e38,1"], "class weights must be"),
    "threads, train": (["train", "data", "--out", "r", "--threads", "100000"], "--threads: must be an integer from 1"),
    "threads, evaluate": (["evaluate", "ck.pt", "data", "--threads", "100000"], "--threads: must be an integer from 1"),
    "eval batch of many digits": (["evaluate", "ck.pt", "data", "--batch-size", HUGE], "from 1 to 65536"),
    # ---- hangs and runaway memory: refused up front
    "zoom translate far away": (["zoom", "photo.png", "-o", "o.mp4", "--translate", "1e12,-1e12"], "out of itself"),
    "zoom shrinks to nothing": (["zoom", "photo.png", "-o", "o.mp4", "--zoom", "1e-9"], "zoom must be between"),
    "channel range runaway": (["atlas", "-o", "o.png", "--channels", "0-100000000"], "more than 65536 items"),
    # ---- silent nonsense: an error, never a black picture or NaN metrics
    "nan layer weight": (["dream", "photo.png", "-o", "o.png", "--layers", "blocks.4:nan"], "finite number"),
    "inf layer weight, sweep": (["sweep", "photo.png", "-o", "o.png", "--layers", "blocks.4:inf"], "finite number"),
    "negative warm-up": (["train", "data", "--out", "r", "--warmup", "-1"], "must be in [0, 100000]"),
    "NaN weights": (["evaluate", "nan.pt", "data"], "NaN or infinite weights"),
    "two sources of weights": (["layers", "--weights", "empty.pt", "--checkpoint", "ck.pt"], "not both"),
    # ---- clobbering: inputs, files being read, datasets and run folders are never written
    "json onto the checkpoint": (
        ["evaluate", "ck.pt", "data", "--json", "ck.pt", "--force"],
        "refusing to overwrite the input",
    ),
    "json into the dataset": (["evaluate", "ck.pt", "data", "--json", "data/test/a/0.png", "--force"], "inside data"),
    "figure and json the same": (["evaluate", "ck.pt", "data", "-o", "same.png", "--json", "same.png"], "refusing"),
    "run into the dataset": (["train", "data", "--out", "data"], "refusing to overwrite the input data"),
    "figure into a run": (["report", "run", "-o", "run/curves.png", "--force"], "inside run"),
    "dream onto its input": (["dream", "photo.png", "-o", "photo.png", "--force"], "refusing to overwrite the input"),
    "video onto its input": (["video", "a.mp4", "-o", "a.mp4", "--force"], "refusing to overwrite the input"),
    # ---- messages: a stranger's pickle is refused without torch's weights_only=False advice
    "pickled code": (["dream", "photo.png", "-o", "o.png", "--checkpoint", "evil.pt"], "never loaded"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_one_line_and_touches_nothing(name, world, capsys):
    argv, words = CASES[name]
    quiet = {
        "dream": FAST,
        "sweep": FAST,
        "zoom": FAST,
        "video": FAST,
        "atlas": ["-q"],
        "train": ["-q"],
        "evaluate": ["-q"],
    }
    line = refused(capsys, world, [*argv, *quiet.get(argv[0], [])])
    if words is not None:
        assert words in line, line


def test_config_is_an_input_too(world, capsys):
    """Reproducing a dream from its own output (--config) must not overwrite that output."""
    save_image(Image.new("RGB", (32, 32)), world / "dreamed.png", metadata=Settings(octaves=1).to_json())
    line = refused(
        capsys, world, ["dream", "photo.png", "-o", "dreamed.png", "--config", "dreamed.png", "--force", "-q"]
    )
    assert "refusing to overwrite the input" in line


def test_a_nan_gradient_stops_the_dream(world, capsys):
    """A finite weight whose product overflows float32: the guard in the ascent loop, not the parser."""
    line = refused(capsys, world, ["dream", "photo.png", "-o", "o.png", "--layers", "blocks.4:3e38", *FAST])
    assert "NaN or infinite" in line


def test_a_nan_loss_stops_training_and_leaves_nothing_behind(world, capsys, monkeypatch):
    """A loss that turns NaN in epoch 1 (an lr within bounds can still diverge): the loss guard stops the run
    before the weights change, and the run folder it had made is gone again (no config.json, no figure)."""
    from deepdream.training import optim

    real = optim.ClassifierLoss.__call__

    def diverged(self, output, targets):
        loss, logits = real(self, output, targets)
        return loss * float("nan"), logits

    monkeypatch.setattr(optim.ClassifierLoss, "__call__", diverged)
    before = snapshot(world)
    monkeypatch.chdir(world)
    code = main(["train", "data", "--out", "divergent", "--size", "32", "--width", "4", "--epochs", "2",
                 "--batch-size", "2", "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]  # after the run's own log lines
    assert last.startswith("deepdream: error: training stopped in epoch 1") and "lower --lr" in last, err
    assert "last good checkpoint: none" in last
    assert not (world / "divergent").exists()
    assert snapshot(world) == before


# ---------------------------------------------------------------- odd but valid input gets a correct output


@pytest.mark.parametrize("width, height, change", [(2000, 40, 2), (40, 2000, 2), (1, 1, None), (300, 2, 0.2)])
def test_a_picture_below_the_network_minimum_is_dreamed(tmp_path, capsys, monkeypatch, width, height, change):
    """A panorama strip, a 1x1 and a 2 px line are dreamed at their own size (refused before issue 23). Two
    steps on a 16x taller copy of a 2 px line leave less in it than in a strip: a smaller least change."""
    photo = synthetic_photo(max(width, 32), max(height, 32)).resize((width, height))
    photo.save(tmp_path / "in.png")
    monkeypatch.chdir(tmp_path)
    code = main(["dream", "in.png", "-o", "out.png", "--max-size", "2000", *FAST])
    assert code == 0, capsys.readouterr().err
    out = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"), dtype=np.float32)
    assert out.shape == (height, width, 3)
    if change is not None:  # a 1x1 can only change its colour; the strips are dreamed in earnest
        assert np.abs(out - np.asarray(photo.convert("RGB"), dtype=np.float32)).mean() > change


def test_a_16_bit_mask_blends_by_its_grey_level(tmp_path, monkeypatch, capsys):
    """25% grey in a 16-bit PNG mask dreams a quarter as strongly as white (it was clipped to white)."""
    synthetic_photo(48, 48).save(tmp_path / "in.png")
    Image.fromarray(np.full((48, 48), 65535 // 4, np.uint16)).save(tmp_path / "grey16.png")
    Image.fromarray(np.full((48, 48), 255, np.uint8)).save(tmp_path / "white.png")
    monkeypatch.chdir(tmp_path)
    change = {}
    for mask in ("grey16", "white"):
        assert main(["dream", "in.png", "-o", f"{mask}-out.png", "--mask", f"{mask}.png", "--seed", "1", *FAST]) == 0
        out = np.asarray(Image.open(f"{mask}-out.png"), dtype=np.float32)
        change[mask] = np.abs(out - np.asarray(Image.open("in.png"), dtype=np.float32)).mean()
    assert Image.open("grey16.png").mode.startswith("I")  # really a 16-bit picture
    assert 0.2 < change["grey16"] / change["white"] < 0.3, change


def test_loss_guard_in_the_epoch_loop():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    before = [p.detach().clone() for p in model.parameters()]

    def criterion(output, y):
        return output.sum() * float("nan"), output

    pre = Preprocessing(8, 8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    batch = [(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))]
    with pytest.raises(NonFiniteError, match="training loss"):
        train_one_epoch(model, batch, criterion, torch.optim.SGD(model.parameters(), lr=0.1), pre, lr_at=lambda s: 0.1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ---------------------------------------------------------------- locks


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_refuses_a_second_holder_and_takes_over_a_stale_one(tmp_path):
    target = tmp_path / "out.png"
    with locks.hold(target):
        assert locks.owner(locks.lock_path(target)) == os.getpid()
        with pytest.raises(OutputError, match="in use by another deepdream run"):
            locks.hold(target)
    assert not locks.lock_path(target).exists()
    locks.lock_path(target).write_text(f"{dead_pid()}\n")  # a killed job's lock
    with locks.hold(target):
        assert locks.owner(locks.lock_path(target)) == os.getpid()
    locks.lock_path(target).write_text("")  # killed between creating the lock and writing its pid
    with pytest.raises(OutputError, match="starting up"):
        locks.hold(target)
    old = time.time() - locks.EMPTY_GRACE_SECONDS - 1
    os.utime(locks.lock_path(target), (old, old))
    locks.hold(target).release()
    assert not list(tmp_path.iterdir())


def test_all_or_none(tmp_path):
    with locks.hold(tmp_path / "b"):
        with pytest.raises(OutputError):
            locks.hold(tmp_path / "a", tmp_path / "b")
        assert not locks.lock_path(tmp_path / "a").exists()


def test_dream_refuses_an_output_another_run_is_writing(world, capsys):
    with locks.hold(world / "busy.png"):
        line = refused(capsys, world, ["dream", "photo.png", "-o", "busy.png", *FAST])
    assert "busy.png is in use by another deepdream run" in line


def test_video_refuses_a_frame_folder_in_use(world, capsys):
    with locks.hold(world / "busy.mp4.frames"):
        line = refused(capsys, world, ["video", "a.mp4", "-o", "busy.mp4", *FAST])
    assert "busy.mp4.frames is in use" in line


def test_train_refuses_a_run_folder_in_use(world, capsys):
    with locks.hold(world / "busyrun"):
        line = refused(capsys, world, ["train", "data", "--out", "busyrun", "-q"])
    assert "busyrun is in use" in line


def test_a_stale_lock_of_a_killed_dream_is_taken_over(world, capsys, monkeypatch):
    (world / ".stale.png.lock").write_text(f"{dead_pid()}\n")
    monkeypatch.chdir(world)
    assert main(["dream", "photo.png", "-o", "stale.png", *FAST]) == 0, capsys.readouterr().err
    assert (world / "stale.png").is_file() and not (world / ".stale.png.lock").exists()
    (world / "stale.png").unlink()


def _deepdream(*argv: str, cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deepdream", *argv], cwd=cwd, env=ENV, text=True,
                            stderr=subprocess.PIPE, **kw)  # fmt: skip


def _one_wins(procs: list[subprocess.Popen]) -> str:
    """Exactly one run succeeds; the other refuses in one line. Returns that line."""
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    err = next(err for code, err in results if code == 1)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_two_dreams_at_once_on_one_output(tmp_path):
    synthetic_photo(32, 32).save(tmp_path / "photo.png")
    procs = [_deepdream("dream", "photo.png", "-o", "o.png", "--seed", str(s), *FAST, cwd=tmp_path) for s in (1, 2)]
    err = _one_wins(procs)
    assert "in use by another deepdream run" in err or "exists" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png", "photo.png"]  # no lock, no temporary left


def test_two_videos_at_once_sharing_a_frame_folder(world, tmp_path):
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes((world / name).read_bytes())
    procs = [
        _deepdream("video", name, "-o", "o.mp4", "--flow", "none", *FAST, cwd=tmp_path) for name in ("a.mp4", "b.mp4")
    ]
    err = _one_wins(procs)
    assert "in use by another deepdream run" in err or "exists" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "o.mp4"]  # frames and locks gone
    with av.open(str(tmp_path / "o.mp4")) as f:
        assert sum(1 for _ in f.decode(video=0)) == 3


# ---------------------------------------------------------------- standard output


def test_a_closed_standard_output(tmp_path):
    """`deepdream models >&-`: Python sets sys.stdout to None; the listing cannot be written, so one line and
    exit 1, as with a full disk. A command that writes nothing to stdout still works without one."""
    for command in ("models", "layers"):
        done = subprocess.run(f"exec '{sys.executable}' -m deepdream {command} >&-", shell=True, cwd=tmp_path, env=ENV,
                              text=True, stderr=subprocess.PIPE, timeout=120)  # fmt: skip
        assert done.returncode == 1 and done.stderr == "deepdream: error: cannot write: standard output is closed\n", (
            done
        )
    synthetic_photo(32, 32).save(tmp_path / "photo.png")
    command = f"exec '{sys.executable}' -m deepdream dream photo.png -o o.png {' '.join(FAST)} >&-"
    done = subprocess.run(command, shell=True, cwd=tmp_path, env=ENV, text=True, stderr=subprocess.PIPE, timeout=300)
    assert done.returncode == 0 and (tmp_path / "o.png").is_file(), done


def test_a_closed_pipe_and_a_full_disk(tmp_path):
    """`models | true` stops quietly like any Unix tool (141 = SIGPIPE); `> /dev/full` is one line."""
    pipe = _deepdream("models", cwd=tmp_path, stdout=subprocess.PIPE)
    pipe.stdout.close()  # the reader is gone before the first line is written
    with open("/dev/full", "w") as full:
        disk = _deepdream("models", cwd=tmp_path, stdout=full)
        code, err = disk.wait(timeout=120), disk.stderr.read()
    assert code == 1 and err.strip() == "deepdream: error: cannot write: No space left on device", err
    code, err = pipe.wait(timeout=120), pipe.stderr.read()
    assert code == 141 and err == "", err
