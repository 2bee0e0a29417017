"""Distributed training: `torchrun --nproc-per-node 2 -m deepdream train` on loopback trains the same
network as one process (same global batch), and rank 0 alone writes the run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import free_port
from deepdream.models.architectures import build_model
from deepdream.models.checkpoint import read_checkpoint
from deepdream.training import fit, load_config

TORCHRUN = Path(sys.executable).with_name("torchrun")

# loaded into every worker through PYTHONPATH: records each file a rank writes into the run folder
SPY = """
import builtins, io, os
if "RANK" in os.environ and os.environ.get("SPY_RUN"):
    _log = os.path.join(os.environ["SPY_DIR"], "writes-rank%s.txt" % os.environ["RANK"])
    _run = os.path.abspath(os.environ["SPY_RUN"])
    _open, _replace = io.open, os.replace

    def _note(path):
        path = os.path.abspath(os.fspath(path))
        if path.startswith(_run):
            with _open(_log, "a") as f:
                f.write(path + "\\n")

    def spy_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            _note(file)
        return _open(file, mode, *args, **kwargs)

    def spy_replace(src, dst, *args, **kwargs):
        _note(dst)
        return _replace(src, dst, *args, **kwargs)

    builtins.open = io.open = spy_open
    os.replace = spy_replace
"""


def tiny_folder(root: Path) -> Path:
    """2 classes (red-ish, blue-ish) x 8 training and 4 test images of 40 px."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 4)):
        for channel, name in ((0, "red"), (2, "blue")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                img = rng.uniform(0, 0.3, (40, 40, 3))
                img[..., channel] += 0.6
                Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to this Python")
def test_two_process_ddp_matches_one_process_and_only_rank_0_writes(tmp_path):
    data, run, spy = tiny_folder(tmp_path / "data"), tmp_path / "ddp", tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(SPY)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",  # gloo's own connections on loopback too
        "PYTHONPATH": os.pathsep.join([str(spy), os.environ.get("PYTHONPATH", "")]),
        "SPY_DIR": str(spy),
        "SPY_RUN": str(run),
    }
    # no dropout and frozen batch-norm statistics: every image's gradient is then independent of its
    # batch-mates, so 2 processes x 4 images must give the 8-image step of one process
    command = [
        str(TORCHRUN), "--nnodes", "1", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--local-addr", "127.0.0.1",
        "-m", "deepdream", "train", str(data), "--out", str(run), "--width", "4", "--dropout", "0", "--freeze-bn",
        "--size", "32", "--epochs", "1", "--batch-size", "8", "--precision", "fp32", "--seed", "3",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    # one process logged; it wrote the run folder, the other wrote nothing
    assert result.stderr.count("epoch 1/1:") == 1 and "cpu x 2 processes" in result.stderr
    assert not (spy / "writes-rank1.txt").exists()
    written = {Path(line).name for line in (spy / "writes-rank0.txt").read_text().split()}
    assert {"best.pt", "last.pt", "metrics.json", "config.json", "curves.png", "confusion_matrix.png"} <= written
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["data"]["images"]["train"] == 16
    assert metrics["epochs"][0]["train_images"] == 16  # each image trained once, by one of the two processes

    # the same run in this one process: the same loss and, to float rounding, the same weights
    torch.set_num_threads(1)
    single = fit(data, tmp_path / "single", load_config(run), progress=False, log=lambda m: None)
    assert single["epochs"][0]["train_loss"] == pytest.approx(metrics["epochs"][0]["train_loss"], abs=1e-5)
    assert single["epochs"][0]["val_loss"] == pytest.approx(metrics["epochs"][0]["val_loss"], abs=1e-5)
    ddp_weights = read_checkpoint(run / "last.pt")["state_dict"]
    one_weights = read_checkpoint(tmp_path / "single" / "last.pt")["state_dict"]
    # 1e-4: Adam's first step divides by the gradient's own size, so the rounding of 4 + 4 against 8 summed
    # images reached 2e-5 on 1 of 9216 elements on an AMX CPU
    for name, value in one_weights.items():
        torch.testing.assert_close(ddp_weights[name], value, atol=1e-4, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
    # and the steps really moved them: the match is not two untouched initialisations
    torch.manual_seed(3)
    initial = build_model("simple_cnn", 2, options={"width": 4, "dropout": 0.0}).model.state_dict()
    assert max(float((one_weights[k] - initial[k]).abs().max()) for k in initial if k.endswith("weight")) > 1e-3


def test_shares_of_a_global_batch_are_what_one_process_would_train_on():
    """Each of N processes gets rows rank::N of every global batch, augmented exactly as one process would."""
    from deepdream.training.data import Decoded, PhotoAugment, batches

    images = torch.randint(0, 256, (5, 3, 12, 12), dtype=torch.uint8)
    data = Decoded(images, torch.arange(5), ("a", "b", "c", "d", "e"))
    augment = PhotoAugment(8)

    def run(rank: int, world: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(7)
        view = lambda u8, rows: augment(u8, generator, rows)  # noqa: E731
        return list(batches(data, 4, view, shuffle=generator, rank=rank, world=world))

    one = run(0, 1)
    shares = [run(rank, 2) for rank in (0, 1)]
    order = torch.cat([labels for _, labels in one])
    assert sorted(order.tolist()) == [0, 1, 2, 3, 4]
    # 5 images over 2 processes: padded to 6 with the first of the epoch's order, batches of 2 + 2 and 1 + 1
    assert [len(labels) for _, labels in shares[0]] == [2, 1] == [len(labels) for _, labels in shares[1]]
    assert torch.equal(shares[0][0][1], one[0][1][0::2]) and torch.equal(shares[1][0][1], one[0][1][1::2])
    assert torch.equal(shares[0][1][1], one[1][1]) and torch.equal(shares[1][1][1], order[:1])
    # the crops, flips and colours of a share are those rows of the one-process batch
    torch.testing.assert_close(shares[0][0][0], one[0][0][0::2])
    torch.testing.assert_close(shares[1][0][0], one[0][0][1::2])
