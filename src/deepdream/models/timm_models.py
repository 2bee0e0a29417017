"""Any timm image model as a Backbone (`--model timm:NAME`): weights from the Hugging Face hub.

Normalisation, input size and class names come from the model's own pretrained config (timm's
`resolve_data_config`, `ImageNetInfo`), never from a table of ours. Vision Transformers are built with
`dynamic_img_size=True` where timm has it, so their position embeddings follow any picture size.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import ModelError, WeightsUnavailable
from ..hints import did_you_mean
from .adapter import spatial_backbone
from .backbone import Backbone, freeze
from .weights import load_into, load_state_dict_file


def _check_name(name: str) -> None:
    """ModelError with timm's closest names when the architecture or its pretrained tag is unknown."""
    import timm

    arch, tag = timm.models.split_model_name_tag(name)
    if not timm.models.is_model(arch):
        hint = did_you_mean(arch, timm.list_models(), fallback="; see timm.list_models() for the names")
        raise ModelError(f"unknown timm model '{arch}'{hint}")
    if tag and name not in timm.list_pretrained(f"{arch}.*"):
        tags = timm.list_pretrained(f"{arch}.*")
        hint = did_you_mean(name, tags, fallback=f"; {arch} has {', '.join(tags) or 'no pretrained tags'}")
        raise ModelError(f"timm has no weights '{name}'{hint}")


# tried in order: position embeddings resampled to any size and the input padded to whole patches, then
# without padding (Swin pads inside), then neither (CNNs take any size as they are)
DYNAMIC = ({"dynamic_img_size": True, "dynamic_img_pad": True}, {"dynamic_img_size": True}, {})


def _create(name: str, pretrained: bool, **kwargs) -> nn.Module:
    """timm.create_model with dynamic image size (and padding) where the model takes them."""
    import timm
    from timm.layers import PatchEmbed

    for dynamic in DYNAMIC:
        try:
            model = timm.create_model(name, pretrained=pretrained, **dynamic, **kwargs)
            break
        except TypeError as exc:  # "unexpected keyword argument 'dynamic_img_pad'"
            if not any(key in str(exc) for key in dynamic):
                raise
    for module in model.modules():
        # a patch embedding that takes any size pads the picture to whole patches (octaves have any size)
        if isinstance(module, PatchEmbed) and not module.strict_img_size:
            module.dynamic_img_pad = True
    return model


def _download(name: str) -> nn.Module:
    """The model with its pretrained weights, from the hub cache or downloaded once into it."""
    import timm

    repo = getattr(timm.models.get_pretrained_cfg(name), "hf_hub_id", None) or name
    try:
        return _create(name, True)
    except Exception as exc:  # offline (HF_HUB_OFFLINE, no route), missing file, hub errors
        from huggingface_hub.constants import HF_HUB_CACHE

        raise WeightsUnavailable(
            f"weights for timm:{name} are not in the Hugging Face cache ({HF_HUB_CACHE}) and could not be downloaded "
            f"({exc.__class__.__name__}); on a machine with network access run 'huggingface-cli download {repo}' "
            f"and copy the cache, or pass --weights FILE with a local state dict"
        ) from None


def _categories(model: nn.Module, num_classes: int) -> tuple[str, ...]:
    """Class names from the model's pretrained config (ImageNet-1k/22k descriptions), else 'class i'."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    cfg = getattr(model, "pretrained_cfg", {}) or {}
    names = cfg.get("label_names")
    if not names:
        try:
            subset = infer_imagenet_subset(model)
            # "tench, Tinca tinca" -> "tench": the short name people type, as torchvision lists them
            names = [d.split(",")[0].strip() for d in ImageNetInfo(subset).label_descriptions()] if subset else []
        except (ValueError, KeyError, OSError):  # a subset timm ships no names for
            names = []
    if names and len(names) == num_classes:
        return tuple(names)
    return tuple(f"class {i}" for i in range(num_classes))


def timm_backbone(name: str, pretrained: bool, weights: Path | None) -> Backbone:
    """`timm:NAME`: random weights, the hub's pretrained weights, or a local state dict (`weights`)."""
    from timm.data import resolve_data_config

    _check_name(name)
    source = "random weights"
    if weights is not None:
        state = load_state_dict_file(weights)
        classifier = (_create(name, False).pretrained_cfg or {}).get("classifier")
        key = f"{classifier}.weight" if classifier else None
        num_classes = {"num_classes": state[key].shape[0]} if key in state else {}
        model = _create(name, False, **num_classes)
        load_into(model, state, f"timm:{name}")
        source = str(weights)
    elif pretrained:
        model = _download(name)
        source = f"timm {name} (Hugging Face hub)"
    else:
        model = _create(name, False)
    config = resolve_data_config({}, model=model)
    _, height, width = config["input_size"]
    categories = _categories(model, getattr(model, "num_classes", 0) or 0)
    return spatial_backbone(
        f"timm:{name}",
        freeze(model),
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        size=(height, width),
        categories=categories,
        source=source,
    )
