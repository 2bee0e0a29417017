"""The real CLI in a subprocess: end to end runs and every documented error path."""

import json
import struct
import zlib

import pytest
from PIL import Image

from conftest import run_cli

FAST = ["--octaves", "2", "--iterations", "3", "--seed", "1", "-q"]


def test_dream_end_to_end_and_reproduce_from_the_output(tmp_path, photo_path):
    out = tmp_path / "out.png"
    r = run_cli("dream", photo_path, "-o", out, *FAST)
    assert r.returncode == 0, r.stderr
    settings = json.loads(Image.open(out).info["deepdream"])["deepdream"]
    assert settings["seed"] == 1 and settings["model"] == "efficientnet_lite0"
    again = tmp_path / "again.png"
    r = run_cli("dream", photo_path, "-o", again, "--config", out, "-q")
    assert r.returncode == 0, r.stderr
    assert Image.open(out).tobytes() == Image.open(again).tobytes()
    assert Image.open(out).tobytes() != Image.open(photo_path).convert("RGB").tobytes()


def test_tiled_bf16_dream_from_the_cli(tmp_path):
    from conftest import synthetic_photo

    photo = tmp_path / "big.png"
    synthetic_photo(480, 360).save(photo)
    out = tmp_path / "tiled.png"
    r = run_cli(
        "dream",
        photo,
        "-o",
        out,
        "--tile-size",
        "128",
        "--precision",
        "bf16",
        "--octaves",
        "1",
        "--iterations",
        "2",
        "--seed",
        "0",
        "-q",
    )
    assert r.returncode == 0, r.stderr
    settings = json.loads(Image.open(out).info["deepdream"])["deepdream"]
    assert settings["tile_size"] == 128 and settings["precision"] == "bf16"
    assert Image.open(out).size == (480, 360)
    assert Image.open(out).tobytes() != Image.open(photo).convert("RGB").tobytes()


def test_toml_config_and_preset(tmp_path, photo_path):
    (tmp_path / "c.toml").write_text('[deepdream]\nlayers = "blocks.3"\noctaves = 1\niterations = 2\n')
    out = tmp_path / "out.jpg"
    r = run_cli("dream", photo_path, "-o", out, "--config", tmp_path / "c.toml", "--seed", "2", "-q")
    assert r.returncode == 0, r.stderr
    from deepdream.imagefiles import read_metadata

    meta = read_metadata(out)
    assert meta["layers"] == "blocks.3" and meta["iterations"] == 2 and meta["seed"] == 2


def test_noise_dream_with_progress_on_stderr(tmp_path):
    out = tmp_path / "n.png"
    r = run_cli("dream", "--init", "noise", "--size", "96x64", "-o", out, "--octaves", "1", "--iterations", "2")
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (96, 64)
    assert "octave 1/1" in r.stderr and "wrote" in r.stderr
    # stderr is a pipe here, not a terminal: plain lines, no carriage-return bar updates
    assert "\r" not in r.stderr
    assert all(line.strip() for line in r.stderr.splitlines())


def test_layers_and_models_listings():
    r = run_cli("layers", "--model", "efficientnet_lite0")
    assert r.returncode == 0, r.stderr
    assert any("blocks.4" in line and "*" in line and "112x14x14" in line for line in r.stdout.splitlines())
    r = run_cli("models")
    assert r.returncode == 0 and "efficientnet_lite0" in r.stdout and "vgg19" in r.stdout


def _bomb_png(path):
    """A valid-looking PNG header claiming 40000 x 40000 pixels."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


def _case(tmp_path, photo_path, name):
    """(args, expected words in the message) for each error path."""
    out = tmp_path / "out.png"
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    truncated = tmp_path / "cut.jpg"
    Image.open(photo_path).convert("RGB").save(tmp_path / "full.jpg")
    truncated.write_bytes((tmp_path / "full.jpg").read_bytes()[:400])
    bomb = tmp_path / "bomb.png"
    _bomb_png(bomb)
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"keep me")
    return {
        "missing file": (["dream", tmp_path / "nope.jpg", "-o", out], "no such file"),
        "directory": (["dream", tmp_path, "-o", out], "directory"),
        "not an image": (["dream", text, "-o", out], "not an image"),
        "truncated": (["dream", truncated, "-o", out], "truncated"),
        "bomb": (["dream", bomb, "-o", out], "too large"),
        "unknown model": (["dream", photo_path, "-o", out, "--model", "alexnet"], "invalid choice"),
        "unknown layer": (["dream", photo_path, "-o", out, "--layers", "blocks.44"], "unknown layer"),
        "unknown class": (["dream", photo_path, "-o", out, "--target-class", "unicorn"], "unknown class"),
        "zero size": (["dream", "--init", "noise", "--size", "0x10", "-o", out], "positive"),
        "negative size": (["dream", "--init", "noise", "--size=-5x10", "-o", out], "positive"),
        "nan step": (["dream", photo_path, "-o", out, "--step-size", "nan"], "positive number"),
        "negative step": (["dream", photo_path, "-o", out, "--step-size", "-0.1"], "positive number"),
        "unwritable": (["dream", photo_path, "-o", tmp_path / "no" / "dir" / "o.png"], "does not exist"),
        "existing": (["dream", photo_path, "-o", existing], "exists"),
        "input as output": (["dream", photo_path, "-o", photo_path, "--force"], "input"),
        "bad format": (["dream", photo_path, "-o", tmp_path / "o.xyz"], "format"),
        "no input": (["dream", "-o", out], "input image"),
        "bad config": (["dream", photo_path, "-o", out, "--config", text], "no deepdream settings"),
    }[name]


ERRORS = [
    "missing file",
    "directory",
    "not an image",
    "truncated",
    "bomb",
    "unknown model",
    "unknown layer",
    "unknown class",
    "zero size",
    "negative size",
    "nan step",
    "negative step",
    "unwritable",
    "existing",
    "input as output",
    "bad format",
    "no input",
    "bad config",
]


@pytest.mark.parametrize("name", ERRORS)
def test_error_paths_give_one_clear_line_and_no_output(tmp_path, photo_path, name):
    args, words = _case(tmp_path, photo_path, name)
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    r = run_cli(*args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert words in lines[0], lines[0]
    after = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # nothing written, nothing overwritten


# ---------------------------------------------------------------- issue 23: names with one meaning, logging


def _tiny_photo(tmp_path):
    from conftest import synthetic_photo

    synthetic_photo(48, 40).save(tmp_path / "in.png")
    return tmp_path / "in.png"


def test_octave_blend_and_its_old_spelling_for_one_release(tmp_path, capsys, monkeypatch):
    """`--octave-blend` sets Settings.octave_blend; `--blend` still does, with one warning line; a config saved
    with the old key `blend` still loads."""
    from deepdream.cli import main

    _tiny_photo(tmp_path)
    monkeypatch.chdir(tmp_path)
    blend = ["--octave-mode", "blend", "--octaves", "2", "--iterations", "2", "--seed", "1", "-q"]
    assert main(["dream", "in.png", "-o", "new.png", "--octave-blend", "0.3", *blend]) == 0
    assert capsys.readouterr().err == ""
    assert main(["dream", "in.png", "-o", "old.png", "--blend", "0.3", *blend]) == 0
    assert capsys.readouterr().err.strip() == (
        "deepdream: warning: --blend is deprecated, use --octave-blend (the old spelling goes in the next release)"
    )
    assert Image.open("new.png").tobytes() == Image.open("old.png").tobytes()
    saved = json.loads(Image.open("new.png").info["deepdream"])["deepdream"]
    assert saved["octave_blend"] == 0.3 and "blend" not in saved
    (tmp_path / "old.toml").write_text(
        '[deepdream]\noctave_mode = "blend"\nblend = 0.3\noctaves = 2\niterations = 2\nseed = 1\n'
    )
    assert main(["dream", "in.png", "-o", "toml.png", "--config", "old.toml", "-q"]) == 0
    assert Image.open("toml.png").tobytes() == Image.open("new.png").tobytes()


def test_verbose_shows_the_library_debug_lines(tmp_path, capsys, monkeypatch):
    """Training logs through logging.getLogger(__name__); the CLI shows INFO lines, and DEBUG with --verbose
    (before or after the command)."""
    from deepdream.cli import main

    for split, n in (("train", 2), ("test", 1)):
        for cls in ("a", "b"):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i in range(n):
                _tiny_photo(tmp_path).rename(tmp_path / "data" / split / cls / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    tiny = ["data", "--size", "32", "--width", "4", "--epochs", "1", "--batch-size", "2", "--threads", "1", "-q"]
    assert main(["train", *tiny, "--out", "quiet"]) == 0
    err = capsys.readouterr().err
    assert "epoch 1/1: train loss" in err and "DEBUG" not in err
    for argv in (["--verbose", "train", *tiny, "--out", "v1"], ["train", *tiny, "--out", "v2", "--verbose"]):
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert "DEBUG deepdream.training.run: epoch 1: training 4 images" in err, err
