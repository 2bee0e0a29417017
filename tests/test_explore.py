"""Exploring what a network learned: feature visualisation, layer sweeps, channel atlases, guided and
class dreams, and the `sweep` / `atlas` commands end to end."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import deepdream
from conftest import run_cli, synthetic_photo
from deepdream import explore
from deepdream.cli import main
from deepdream.engine.objectives import Channels, build_objective
from deepdream.engine.octaves import Dreamer, noise_image
from deepdream.engine.taps import OUTPUT, Taps
from deepdream.errors import ModelError, SettingsError
from deepdream.featurevis import FourierImage, Jitter, Pad, color_matrix, render, rotate, spectrum_scale
from deepdream.imagefiles import pil_to_tensor, read_metadata
from deepdream.models import registry as backbones

pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder:
    """A tqdm stand-in that keeps what the sheet reports."""

    def __init__(self):
        self.steps = 0
        self.descriptions: list[str] = []

    def update(self, n: int = 1) -> None:
        self.steps += n

    def set_description(self, desc: str) -> None:
        self.descriptions.append(desc)


def tiles_of(sheet: Image.Image, count: int, size: tuple[int, int], **layout) -> list[torch.Tensor]:
    grid = explore.grid_geometry(count, *size, **layout)
    assert sheet.size == grid.size
    out = []
    for i in range(count):
        x, y = grid.tile_origin(i)
        out.append(pil_to_tensor(sheet.crop((x, y, x + size[0], y + size[1])))[0])
    return out


def assert_all_differ(tiles: list[torch.Tensor], by: float = 0.01) -> None:
    for (i, a), (j, b) in itertools.combinations(enumerate(tiles), 2):
        assert (a - b).abs().mean() > by, f"tiles {i} and {j} are the same"


def channel_score(backbone, layer: str, channel: int, image: torch.Tensor) -> float:
    with Taps(backbone.model, [layer]) as taps, torch.no_grad():
        return taps(backbone.normalize(image))[layer][0, channel].mean().item()


# ---------------------------------------------------------------- geometry and labels


def test_grid_geometry_places_tiles_and_labels():
    g = explore.grid_geometry(5, 64, 48, label_height=18, gap=4)
    assert (g.columns, g.rows) == (3, 2)  # more than 4 tiles: a near-square grid
    assert g.size == (4 + 3 * (64 + 4), 4 + 2 * (48 + 18 + 4)) == (208, 144)
    assert g.tile_origin(0) == (4, 4)
    assert g.tile_origin(2) == (4 + 2 * 68, 4)
    assert g.tile_origin(4) == (4 + 68, 4 + 70)
    assert g.label_box(4) == (72, 74 + 48, 72 + 64, 74 + 48 + 18)
    assert (explore.grid_geometry(3, 10, 10).columns, explore.grid_geometry(3, 10, 10).rows) == (3, 1)
    assert (explore.grid_geometry(36, 10, 10).columns, explore.grid_geometry(36, 10, 10).rows) == (6, 6)
    assert (explore.grid_geometry(5, 10, 10, columns=2).rows, explore.grid_geometry(2, 10, 10, columns=9).columns) == (
        3,
        2,
    )
    with pytest.raises(IndexError):
        g.tile_origin(5)
    with pytest.raises(SettingsError):
        explore.grid_geometry(0, 10, 10)


def test_sheet_pastes_tiles_and_writes_each_label_under_its_tile():
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]
    tiles = [Image.new("RGB", (64, 48), c) for c in colours]
    labels = ["blocks.2", "blocks.3", "blocks.4", "x", "a.very.long.layer.name.that.cannot.fit"]
    sheet = explore.make_sheet(tiles, labels)
    grid = explore.grid_geometry(5, 64, 48)
    assert sheet.size == grid.size and sheet.mode == "RGB"
    strips = []
    for i, colour in enumerate(colours):
        x, y = grid.tile_origin(i)
        assert sheet.getpixel((x + 32, y + 24)) == colour
        strip = pil_to_tensor(sheet.crop(grid.label_box(i)))[0]
        assert strip.max() > 0.8, f"no text under tile {i}"  # light text on the dark strip
        strips.append(strip)
    assert_all_differ(strips, by=0.001)  # each strip holds its own label
    # the long label is shortened to its tile's width instead of spilling into the next one
    x0, _, x1, _ = grid.label_box(4)
    right_of_label = pil_to_tensor(sheet.crop((x1, grid.label_box(4)[1], sheet.width, grid.label_box(4)[3])))[0]
    assert right_of_label.max() < 0.1
    with pytest.raises(ValueError):
        explore.make_sheet(tiles, labels[:2])


# ---------------------------------------------------------------- feature visualisation


def test_fourier_parameterisation_parts():
    s = spectrum_scale(4, 6)
    assert s.shape == (4, 4)  # H x (W//2 + 1)
    assert s[0, 0] == 6 and s[0, 1] == 6  # DC clamped to the lowest frequency, 1/6
    assert torch.allclose(s[0, 3], torch.tensor(2.0)) and torch.allclose(s[2, 0], torch.tensor(2.0))
    assert torch.allclose(color_matrix().norm(dim=0).max(), torch.tensor(1.0))
    image = FourierImage(20, 30, generator=torch.Generator().manual_seed(0))
    x = image()
    assert x.shape == (1, 3, 20, 30) and 0 < x.min() and x.max() < 1
    assert abs(x.mean().item() - 0.5) < 0.05  # starts near grey


def test_transforms_on_tiny_tensors():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(Pad(1, 0.5)(x)[0, 0, 0], torch.full((6,), 0.5))
    assert torch.equal(Pad(1, 0.5)(x)[..., 1:-1, 1:-1], x)
    crops = {tuple(Jitter(2, torch.Generator().manual_seed(s))(x)[0, 0, 0].tolist()) for s in range(20)}
    assert crops == {(0.0, 1.0, 2.0), (1.0, 2.0, 3.0), (4.0, 5.0, 6.0), (5.0, 6.0, 7.0)}  # shifts 0 or 1 each way
    assert torch.allclose(rotate(x, 90), torch.rot90(x, 1, (2, 3)), atol=1e-5)
    y = torch.arange(15.0).view(1, 1, 3, 5)
    assert torch.allclose(rotate(y, 180), y.flip(2, 3), atol=1e-5)
    assert rotate(y, 0) is y


def test_render_grows_a_channel_from_noise_reproducibly(lite0):
    obj = Channels("blocks.4", (5,))
    bar = Recorder()
    a = render(lite0, obj, width=48, height=48, steps=16, generator=torch.Generator().manual_seed(3), progress=bar)
    b = render(lite0, obj, width=48, height=48, steps=16, generator=torch.Generator().manual_seed(3))
    assert a.shape == (1, 3, 48, 48) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and bar.steps == 16
    noise = noise_image(48, 48, torch.Generator().manual_seed(0))
    assert channel_score(lite0, "blocks.4", 5, a) > channel_score(lite0, "blocks.4", 5, noise) + 5
    with pytest.raises(SettingsError):
        render(lite0, obj, width=16, height=64, steps=1, generator=torch.Generator())


# ---------------------------------------------------------------- sheets


def test_layer_sweep_one_tile_per_layer_each_different(lite0):
    photo = synthetic_photo(96, 64)
    settings = deepdream.Settings(iterations=3, octaves=1, seed=1, precision="fp32")
    bar = Recorder()
    index = str(lite0.layer_names().index("blocks.4"))
    sheet = explore.layer_sweep(photo, lite0, settings, ["blocks.2", index], with_input=True, progress=bar)
    tiles = tiles_of(sheet, 3, (96, 64))
    assert_all_differ(tiles)
    assert torch.allclose(tiles[0], pil_to_tensor(photo)[0], atol=1 / 255)  # the input tile is the photo
    assert bar.steps == 2 * 3
    assert any(d.startswith("blocks.2 (1/2)") for d in bar.descriptions)
    assert any(d.startswith("blocks.4 (2/2)") for d in bar.descriptions)  # the index was resolved to a name
    meta = json.loads(sheet.info["deepdream"])
    assert meta["sheet"]["tiles"] == ["input", "blocks.2", "blocks.4"]
    assert meta["deepdream"]["layers"] == "blocks.2,blocks.4" and meta["deepdream"]["seed"] == 1
    with pytest.raises(ModelError):
        explore.layer_sweep(photo, lite0, settings, ["blocks.2", "no.such.layer"])


def test_layer_sweep_applies_the_mask_to_every_tile(lite0, tmp_path):
    photo = synthetic_photo(96, 64)
    mask = np.zeros((64, 96), np.uint8)
    mask[:, 48:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    settings = deepdream.Settings(iterations=3, octaves=1, seed=1, mask=str(tmp_path / "mask.png"))
    tiles = tiles_of(explore.layer_sweep(photo, lite0, settings, ["blocks.2", "blocks.4"]), 2, (96, 64))
    source = pil_to_tensor(photo)[0]
    for tile in tiles:
        assert torch.allclose(tile[..., :48], source[..., :48], atol=1 / 255)  # black keeps the photo
        assert (tile[..., 48:] - source[..., 48:]).abs().mean() > 0.01


def test_channel_atlas_one_tile_per_channel_each_different(lite0):
    settings = deepdream.Settings(iterations=12, seed=0, precision="fp32")
    bar = Recorder()
    sheet = explore.channel_atlas(lite0, "blocks.4", (0, 7, 30), settings, 48, progress=bar)
    tiles = tiles_of(sheet, 3, (48, 48))
    assert_all_differ(tiles)
    assert bar.steps == 3 * 12
    assert [d for d in bar.descriptions if "(" in d] == ["blocks.4:0 (1/3)", "blocks.4:7 (2/3)", "blocks.4:30 (3/3)"]
    meta = json.loads(sheet.info["deepdream"])
    assert meta["sheet"]["kind"] == "channel_atlas" and meta["sheet"]["tiles"] == [
        "blocks.4:0",
        "blocks.4:7",
        "blocks.4:30",
    ]
    assert meta["deepdream"]["channels"] == [0, 7, 30] and meta["deepdream"]["init"] == "fourier"
    with pytest.raises(ModelError, match="out of range"):
        explore.channel_atlas(lite0, "blocks.4", (0, 999), settings, 48)


def test_sweep_layers_every_other_recommended_in_forward_order(lite0):
    ordered = explore.sweep_layers(lite0)
    names = lite0.layer_names()
    assert sorted(ordered, key=names.index) == ordered and set(ordered) == set(lite0.recommended_layers)
    assert explore.sweep_layers(lite0, every=2) == ordered[::2]
    assert explore.sweep_layers(lite0, ["blocks.1", "blocks.2", "blocks.3"], every=2) == ["blocks.1", "blocks.3"]


def test_one_network_load_per_sheet(monkeypatch, tmp_path, lite0):
    loads = []

    def counting_factory(pretrained, weights):
        loads.append(pretrained)
        return lite0

    monkeypatch.setitem(backbones.BACKBONES, "efficientnet_lite0", counting_factory)
    photo = tmp_path / "photo.png"
    synthetic_photo(64, 48).save(photo)
    common = ["--seed", "0", "--precision", "fp32", "-q"]
    assert (
        main(
            [
                "sweep",
                str(photo),
                "-o",
                str(tmp_path / "s.png"),
                "--layers",
                "blocks.2,blocks.3,blocks.4",
                "--iterations",
                "1",
                "--octaves",
                "1",
                *common,
            ]
        )
        == 0
    )
    assert len(loads) == 1
    # the sheet's metadata repeats the sweep
    assert main(["sweep", str(photo), "--config", str(tmp_path / "s.png"), "-o", str(tmp_path / "s2.png"), "-q"]) == 0
    assert len(loads) == 2
    assert torch.equal(
        pil_to_tensor(Image.open(tmp_path / "s.png"))[0], pil_to_tensor(Image.open(tmp_path / "s2.png"))[0]
    )
    assert (
        main(
            [
                "atlas",
                "--layer",
                "blocks.3",
                "--channels",
                "0-3",
                "--tile",
                "32",
                "--steps",
                "2",
                "-o",
                str(tmp_path / "a.png"),
                *common,
            ]
        )
        == 0
    )
    assert len(loads) == 3
    # the library loads the settings' network itself when given none: still once for the whole sheet
    explore.layer_sweep(
        synthetic_photo(64, 48), None, deepdream.Settings(iterations=1, octaves=1), ["blocks.2", "blocks.3"]
    )
    assert len(loads) == 4


def test_sheets_work_with_another_backbone():
    resnet = deepdream.load_backbone("resnet50", pretrained=False)
    settings = deepdream.Settings(model="resnet50", iterations=6, octaves=1, seed=0, precision="fp32")
    sheet = explore.layer_sweep(synthetic_photo(64, 64), resnet, settings, ["layer1", "layer2"])
    assert_all_differ(tiles_of(sheet, 2, (64, 64)))
    atlas = explore.channel_atlas(resnet, "layer2", (0, 1), settings.replace(iterations=4), 40)
    assert_all_differ(tiles_of(atlas, 2, (40, 40)), by=0.001)


# ---------------------------------------------------------------- guided and class dreams


def _features(backbone, image: torch.Tensor, layer: str) -> torch.Tensor:
    with Taps(backbone.model, [layer]) as taps, torch.no_grad():
        return taps(backbone.normalize(image))[layer][0].flatten(1)  # C x HW


def test_guided_dream_rises_and_pulls_features_toward_the_guide(lite0):
    photo = pil_to_tensor(synthetic_photo(128, 96))[0]
    y, x = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    guide = torch.stack(
        [0.5 + 0.5 * torch.sin(40 * x), 0.5 + 0.5 * torch.sin(40 * x + 2), 0.5 + 0.5 * torch.cos(25 * y)]
    )[None]
    layer = "blocks.3"
    settings = deepdream.Settings(seed=0, iterations=10, octaves=2, guide_layer=layer, precision="fp32")
    with Dreamer(lite0, build_objective(lite0, settings, guide=guide), settings) as dreamer:
        guided = dreamer.dream(photo)
        assert dreamer.score(guided).item() > 1.1 * dreamer.score(photo).item()
    plain_settings = settings.replace(layers=layer, guide_layer=None)
    with Dreamer(lite0, build_objective(lite0, plain_settings), plain_settings) as dreamer:
        plain = dreamer.dream(photo)

    target = _features(lite0, guide, layer).mean(1)

    def similarity(image: torch.Tensor) -> float:
        return F.cosine_similarity(_features(lite0, image, layer).mean(1), target, dim=0).item()

    before, after, control = similarity(photo), similarity(guided), similarity(plain)
    assert after > before + 0.05, (before, after)
    assert after > control + 0.05, (control, after)  # the guide, not dreaming as such, moved the features


def test_class_visualisation_from_noise_reaches_90_percent(lite0):
    # jitter 0: the probability is judged on the unshifted image, so it is what the ascent must optimise
    target = "golden retriever"
    img = deepdream.dream(
        None, init="noise", target_class=target, size=(128, 128), jitter=0, seed=0, precision="fp32", backbone=lite0
    )
    assert img.size == (128, 128)
    with Taps(lite0.model, [OUTPUT]) as taps, torch.no_grad():
        logits = taps(lite0.normalize(pil_to_tensor(img)[0]))[OUTPUT]  # the saved 8-bit picture
    p = torch.softmax(logits, 1)[0, lite0.resolve_class(target)].item()
    assert p > 0.9, p


# ---------------------------------------------------------------- the commands


def test_sweep_and_atlas_commands_end_to_end(tmp_path, photo_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    sweep = tmp_path / "sweep.png"
    r = run_cli(
        "sweep",
        photo_path,
        "-o",
        sweep,
        "--every",
        "2",
        "--with-input",
        "--iterations",
        "2",
        "--octaves",
        "1",
        "--max-size",
        "96",
        "--seed",
        "0",
        "--precision",
        "fp32",
    )
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stderr and "blocks.2, blocks.3, blocks.4" in r.stderr
    meta = read_metadata(sweep)
    assert meta["layers"] == "blocks.2,blocks.3,blocks.4" and meta["max_size"] == 96
    assert Image.open(sweep).size == explore.grid_geometry(4, 96, 72).size

    atlas = tmp_path / "atlas.jpg"
    r = run_cli("atlas", "--layer", "blocks.4", "--channels", "0-5", "--tile", "40", "--steps", "4", "-o", atlas, "-q")
    assert r.returncode == 0, r.stderr
    assert Image.open(atlas).size == explore.grid_geometry(6, 40, 40).size
    assert read_metadata(atlas)["channels"] == [0, 1, 2, 3, 4, 5]


def test_command_refusals_are_one_line_and_write_nothing(tmp_path, photo_path, capsys, monkeypatch, lite0):
    monkeypatch.setitem(backbones.BACKBONES, "efficientnet_lite0", lambda pretrained, weights: lite0)
    existing = tmp_path / "atlas.png"
    existing.write_bytes(b"keep me")
    for args, message in [
        (("atlas", "--channels", "0-2", "--tile", "40", "-o", existing), "exists"),
        (
            ("atlas", "--layer", "blocks.4", "--channels", "0,500", "--tile", "40", "-o", tmp_path / "x.png"),
            "out of range",
        ),
        (("atlas", "--layer", "blocks.44", "--channels", "0", "-o", tmp_path / "x.png"), "unknown layer"),
        (("atlas", "--channels", "0", "--tile", "16", "--steps", "1", "-o", tmp_path / "x.png"), "too small"),
        (("sweep", photo_path, "--layers", "blocks.2,nope", "-o", tmp_path / "x.png"), "unknown layer"),
        (("sweep", tmp_path / "missing.jpg", "-o", tmp_path / "x.png"), "no such file"),
        (("sweep", photo_path, "-o", tmp_path / "x.gif"), "unknown output format"),
        (("sweep", photo_path, "-o", photo_path, "--force"), "refusing to overwrite the input"),
    ]:
        assert main([str(a) for a in args] + ["-q"]) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("deepdream: error:") and message in err and len(err.splitlines()) == 1, (args, err)
    assert existing.read_bytes() == b"keep me" and not list(tmp_path.glob("x.*"))


def test_atlas_of_a_trained_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from deepdream.models.architectures import build_model
    from deepdream.models.checkpoint import CheckpointInfo, save_checkpoint
    from deepdream.models.preprocessing import Preprocessing

    torch.manual_seed(0)
    net = build_model("simple_cnn", 2, options={"width": 8})
    info = CheckpointInfo("simple_cnn", ("cat", "dog"), Preprocessing(40, 46, net.mean, net.std), {"width": 8})
    checkpoint = save_checkpoint(tmp_path / "ck.pt", net.model, info)
    out = tmp_path / "atlas.png"
    r = run_cli(
        "atlas", "--checkpoint", checkpoint, "--channels", "0-1", "--tile", "48", "--steps", "3", "-o", out, "-q"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(Image.open(out).info["deepdream"])["sheet"]["model"] == "simple_cnn"
