"""Any timm / torchvision network as a backbone: every claimed family dreams, ViTs like CNNs, clear refusals.

Every network is built with random weights (pretrained=False): the hub cannot be reached here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from deepdream.cli import main
from deepdream.engine.objectives import Energy
from deepdream.engine.octaves import Dreamer
from deepdream.engine.taps import Taps
from deepdream.errors import ModelError, SettingsError
from deepdream.models.adapter import spatial_backbone
from deepdream.models.load import load_backbone
from deepdream.settings import Settings

# the smallest variant of every family the docs claim (docs/networks.md), and one torchvision network
FAMILIES = {
    "ResNet": "timm:resnet10t",
    "ConvNeXt": "timm:convnext_atto",
    "EfficientNet": "timm:efficientnet_b0",
    "RegNet": "timm:regnetx_002",
    "ViT": "timm:vit_tiny_patch16_224",
    "DeiT": "timm:deit_tiny_patch16_224",
    "Swin": "timm:swin_tiny_patch4_window7_224",
    "torchvision RegNet": "torchvision:regnet_x_400mf",
}
SIZES = ((48, 64), (32, 96))  # H x W: two aspect ratios, neither the networks' own 224 x 224


@pytest.fixture(scope="module")
def built(one_thread):
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = load_backbone(name, pretrained=False)
        return cache[name]

    return get


def _energy(backbone, layer: str, image: torch.Tensor) -> float:
    with Taps(backbone.model, [layer]) as taps, torch.no_grad():
        return Energy(layer)(taps(backbone.normalize(image))).item()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_gets_a_gradient_and_dreams_at_two_aspect_ratios(built, family):
    backbone = built(FAMILIES[family])
    layer = backbone.recommended_layers[0]
    names = backbone.layer_names()
    # taps resolve by dotted name and by index
    assert backbone.resolve_layer(layer) == layer
    spatial = [n for n in names if n.split(".")[0] == layer.split(".")[0]]
    index = names.index(spatial[0])
    assert backbone.resolve_layer(str(index)) == spatial[0]
    settings = Settings(layers=layer, octaves=1, iterations=4, precision="fp32", seed=0, jitter=0)
    generator = torch.Generator().manual_seed(0)
    for height, width in SIZES:
        x = torch.rand(1, 3, height, width, generator=generator, requires_grad=True)
        with Taps(backbone.model, [layer]) as taps:
            acts = taps(backbone.normalize(x))
            assert acts[layer].dim() == 4  # B x C x H x W, whatever the network's own layout
            (grad,) = torch.autograd.grad(Energy(layer)(acts).sum(), x)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
        start = x.detach()
        with Dreamer(backbone, Energy(layer), settings) as dreamer:
            out = dreamer.dream(start, torch.Generator().manual_seed(0))
        assert out.shape == start.shape
        before, after = _energy(backbone, layer, start), _energy(backbone, layer, out)
        assert after > before * 1.02, (family, (height, width), before, after)


def test_vit_taps_are_patch_grids_of_mlp_neurons(built):
    vit = built("timm:vit_tiny_patch16_224")
    assert vit.recommended_layers[0].endswith(".mlp.act")  # Ghiasi et al.: MLP neurons, not q/k/v
    assert not any("qkv" in name for name in vit.recommended_layers)
    with Taps(vit.model, ["blocks.3.mlp.act", "blocks.3"]) as taps, torch.no_grad():
        acts = taps(torch.rand(1, 3, 48, 80))
    assert acts["blocks.3.mlp.act"].shape == (1, 768, 3, 5)  # hidden neurons x 3 x 5 patches, class token dropped
    assert acts["blocks.3"].shape == (1, 192, 3, 5)
    swin = built("timm:swin_tiny_patch4_window7_224")
    with Taps(swin.model, ["layers.1"]) as taps, torch.no_grad():
        assert taps(torch.rand(1, 3, 64, 96))["layers.1"].shape == (1, 192, 8, 12)  # NHWC -> NCHW


def test_vit_dream_with_a_mask_keeps_black_pixels_exactly(built):
    vit = built("timm:vit_tiny_patch16_224")
    layer = vit.recommended_layers[0]
    image = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(1, 1, 48, 64)
    mask[..., :, :32] = 0  # keep the left half
    settings = Settings(layers=layer, octaves=2, iterations=3, precision="fp32", seed=0)
    with Dreamer(vit, Energy(layer), settings) as dreamer:
        out = dreamer.dream(image, torch.Generator().manual_seed(0), mask=mask)
    assert torch.equal(out[..., :32], image[..., :32])
    assert (out[..., 32:] - image[..., 32:]).abs().max() > 1e-3


def test_layers_lists_recommended_taps_first_then_every_block(built, capsys, tmp_path):
    torch.save(built("timm:vit_tiny_patch16_224").model.state_dict(), tmp_path / "vit.pth")  # no hub here
    assert main(["layers", "--model", "timm:vit_tiny_patch16_224", "--weights", str(tmp_path / "vit.pth")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "recommended" in lines[0]
    first = lines[1].split()
    assert first[:3] == ["-", "*", "blocks.7.mlp.act"] and first[3] == "768x14x14"
    listed = [line.split() for line in lines[7:]]
    assert [row[0] for row in listed] == [str(i) for i in range(len(listed))]
    assert any(row[1:3] == ["blocks.11", "192x14x14"] for row in listed)


def test_unknown_timm_name_suggests_timm_names():
    with pytest.raises(ModelError, match="did you mean.*resnet18"):
        load_backbone("timm:resnet18x", pretrained=False)
    with pytest.raises(ModelError, match="convnext_atto.d2_in1k"):
        load_backbone("timm:convnext_atto.nope", pretrained=False)
    with pytest.raises(ModelError, match="unknown torchvision"):
        load_backbone("torchvision:resnet5O", pretrained=False)
    with pytest.raises(ModelError, match="did you mean timm:resnet18"):
        load_backbone("tim:resnet18", pretrained=False)


def test_cli_refuses_an_unknown_model_family_in_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["dream", "--init", "noise", "-o", str(tmp_path / "out.png"), "--model", "timmm:resnet18"])
    err = capsys.readouterr().err
    assert "invalid choice: 'timmm:resnet18'; did you mean timm:resnet18?" in err and "Traceback" not in err


def test_offline_pretrained_request_is_one_clear_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run(
        [sys.executable, "-m", "deepdream", "layers", "--model", "timm:resnet10t.c3_in1k", "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "huggingface-cli download timm/resnet10t.c3_in1k" in lines[0] and "--weights FILE" in lines[0]


def test_local_weights_load_and_weights_of_another_network_are_refused(built, tmp_path):
    regnet = built("timm:regnetx_002")
    torch.save(regnet.model.state_dict(), tmp_path / "regnet.pth")
    again = load_backbone("timm:regnetx_002", weights=tmp_path / "regnet.pth")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again.model(x), regnet.model(x))
    assert again.source == str(tmp_path / "regnet.pth")
    with pytest.raises(ModelError, match="do not fit timm:resnet10t"):
        load_backbone("timm:resnet10t", weights=tmp_path / "regnet.pth")


def test_a_network_without_spatial_features_is_refused():
    text_like = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))  # a vector in, a vector out
    with pytest.raises(ModelError, match="no spatial features"):
        spatial_backbone("mlp", text_like, mean=(0.5,), std=(0.5,), size=(32, 32), categories=(), source="")


def test_a_fixed_size_network_refuses_another_size_in_one_line():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64).eval()  # no dynamic_img_size
    backbone = spatial_backbone("fixed-vit", vit, mean=(0.5,), std=(0.5,), size=(64, 64), categories=(), source="")
    assert backbone.fixed_size == (64, 64)
    with Taps(backbone.model, ["blocks.2"]) as taps, torch.no_grad():
        assert taps(torch.rand(1, 3, 64, 64))["blocks.2"].shape == (1, 192, 4, 4)
        with pytest.raises(SettingsError, match="fixed-vit takes only 64x64 pictures"):
            taps(torch.rand(1, 3, 48, 64))


def test_train_a_timm_vit_and_dream_with_its_checkpoint(tmp_path):
    from PIL import Image

    from deepdream.models.layouts import layouts_of

    rng = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for label, shade in (("dark", 0.2), ("light", 0.8)):
            folder = tmp_path / "data" / split / label
            folder.mkdir(parents=True)
            for i in range(6):
                pixels = (shade + 0.1 * torch.rand(40, 40, 3, generator=rng)).clamp(0, 1) * 255
                Image.fromarray(pixels.byte().numpy()).save(folder / f"{i}.png")
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(tmp_path / "data"),
                "--arch",
                "timm:vit_tiny_patch16_224",
                "--epochs",
                "1",
                "--size",
                "32",
                "--batch-size",
                "6",
                "--out",
                str(run),
                "--threads",
                "1",
                "-q",
            ]
        )
        == 0
    )
    backbone = load_backbone(checkpoint=run / "best.pt")
    assert backbone.categories == ("dark", "light") and backbone.name == "timm:vit_tiny_patch16_224"
    assert "blocks.7.mlp.act" in layouts_of(backbone.model)  # the checkpoint's ViT is read as a patch grid too
    with Taps(backbone.model, ["blocks.7.mlp.act"]) as taps, torch.no_grad():
        assert taps(torch.rand(1, 3, 48, 32))["blocks.7.mlp.act"].shape == (1, 768, 3, 2)


def test_studio_model_list_offers_timm_models_in_the_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from deepdream.studio.backbones import Backbones

    (tmp_path / "models--timm--convnext_atto.d2_in1k").mkdir()
    (tmp_path / "models--someone--bert").mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    choices = Backbones(runs=None).choices()
    assert ("timm:convnext_atto.d2_in1k (cached)", "timm:convnext_atto.d2_in1k") in choices
    assert not any("bert" in value for _, value in choices)
