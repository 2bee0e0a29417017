import json

import pytest
import torch

import deepdream
from deepdream.engine.objectives import build_objective
from deepdream.engine.octaves import Dreamer, octave_plan, octave_sizes
from deepdream.engine.taps import OUTPUT, Taps
from deepdream.errors import ModelError, SettingsError
from deepdream.settings import from_mapping

FAST = dict(octaves=2, iterations=6, seed=3, precision="fp32")


def test_default_dream_raises_the_layer_energy(lite0, photo_tensor):
    settings = deepdream.Settings(seed=0, precision="fp32", octaves=3)
    with Dreamer(lite0, build_objective(lite0, settings), settings) as dreamer:
        before = dreamer.score(photo_tensor).item()
        out = dreamer.dream(photo_tensor)
        after = dreamer.score(out).item()
    assert out.shape == photo_tensor.shape and 0 <= out.min() and out.max() <= 1
    assert after > 1.5 * before  # real photos: >= 2x, see benchmarks/quality.py
    assert (out - photo_tensor).abs().mean() > 0.02  # the picture really changed


@pytest.mark.parametrize(
    "overrides",
    [
        dict(layers="blocks.3:0.5,blocks.4"),
        dict(layers="blocks.4", channels=(3, 7)),
        dict(optimizer="adam", step_size=0.01),
        dict(octave_mode="blend", octave_scale=2.0),
        dict(precision="bf16"),
    ],
)
def test_each_objective_and_option_raises_its_objective(lite0, photo_tensor, overrides):
    settings = deepdream.Settings(**{**FAST, **overrides})
    with Dreamer(lite0, build_objective(lite0, settings), settings) as dreamer:
        before = dreamer.score(photo_tensor).item()
        after = dreamer.score(dreamer.dream(photo_tensor)).item()
    assert after > before + 0.1 * abs(before)


def test_seed_makes_runs_exactly_repeatable(lite0, photo_path):
    a = deepdream.dream(photo_path, backbone=lite0, **FAST)
    b = deepdream.dream(photo_path, backbone=lite0, **FAST)
    c = deepdream.dream(photo_path, backbone=lite0, **{**FAST, "seed": 4})
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    recorded = json.loads(a.info["deepdream"])["deepdream"]
    assert recorded["seed"] == 3 and recorded["octaves"] == 2


def test_unseeded_run_records_the_seed_it_drew(lite0, photo_path):
    first = deepdream.dream(photo_path, backbone=lite0, octaves=1, iterations=2)
    seed = json.loads(first.info["deepdream"])["deepdream"]["seed"]
    again = deepdream.dream(photo_path, backbone=lite0, octaves=1, iterations=2, seed=seed)
    assert isinstance(seed, int) and first.tobytes() == again.tobytes()


def test_target_class_takes_a_photo_of_something_else_past_50_percent(lite0, photo_tensor):
    index = lite0.resolve_class("golden retriever")

    def prob(x):
        with Taps(lite0.model, [OUTPUT]) as taps, torch.no_grad():
            return torch.softmax(taps(lite0.normalize(x))[OUTPUT], 1)[0, index].item()

    settings = deepdream.Settings(target_class="golden retriever", seed=0, precision="fp32", octaves=3)
    objective = build_objective(lite0, settings)
    assert objective.layers == {OUTPUT} and settings.steps == 30
    before = prob(photo_tensor)
    with Dreamer(lite0, objective, settings) as dreamer:
        after = prob(dreamer.dream(photo_tensor))
    assert before < 0.05 and after > 0.5


def test_noise_init_dreams_from_nothing(lite0):
    out = deepdream.dream(None, backbone=lite0, init="noise", size=(96, 64), **FAST)
    assert out.size == (96, 64)
    assert json.loads(out.info["deepdream"])["deepdream"]["init"] == "noise"


def test_octave_pyramid_sizes():
    assert octave_sizes(400, 300, 4, 1.4, 32) == [(146, 109), (204, 153), (286, 214), (400, 300)]
    # octaves below the network's minimum size are dropped, never the full size
    assert octave_sizes(80, 80, 4, 2.0, 75) == [(80, 80)]


def test_small_pictures_get_the_steps_of_the_octaves_they_lose():
    settings = deepdream.Settings()
    small = octave_plan(settings, 48, 64, 32)
    assert len(small.sizes) == 2 and small.total >= settings.steps * settings.octaves * 16 - len(small.sizes)
    large = octave_plan(settings, 400, 500, 32)
    assert (len(large.sizes), large.steps, large.roll) == (4, 10, 0.25)  # large pictures: unchanged
    assert small.roll < large.roll  # a shorter roll keeps a small picture's seam off most of it
    assert octave_plan(settings.replace(iterations=7), 48, 64, 32).steps == 7  # an explicit count is kept


def test_default_dream_takes_hold_on_a_thumbnail(lite0):
    from conftest import synthetic_photo
    from deepdream.imagefiles import pil_to_tensor

    thumb = pil_to_tensor(synthetic_photo(64, 48, seed=5))[0]
    settings = deepdream.Settings(seed=0, precision="fp32")
    with Dreamer(lite0, build_objective(lite0, settings), settings) as dreamer:
        gain = dreamer.score(dreamer.dream(thumb)).item() / dreamer.score(thumb).item()
    assert gain >= 2.0  # 10 steps on 2 octaves with a 32 px roll: about 1.2x (benchmarks/sizes.py)


def test_presets_resolve_for_their_networks():
    inception = deepdream.load_backbone("inception_v3", pretrained=False)
    settings = deepdream.preset("inception-adam")
    assert settings.optimizer == "adam" and settings.steps == 20 and settings.step_size == 0.01
    assert build_objective(inception, settings).layers == {"Mixed_6a"}
    vgg = deepdream.preset("vgg19-blend")
    assert (vgg.octave_mode, vgg.octave_blend, vgg.octave_scale, vgg.steps) == ("blend", 0.6, 2.0, 6)


@pytest.mark.parametrize(
    "bad",
    [dict(step_size=float("nan")), dict(step_size=-1.0), dict(octaves=0), dict(octave_scale=1.0), dict(size=(0, 10))],
)
def test_invalid_settings_are_rejected(bad):
    with pytest.raises(SettingsError):
        deepdream.Settings(**bad)


def test_bad_channel_and_class_are_model_errors(lite0):
    with pytest.raises(ModelError, match="112 channels"):
        build_objective(lite0, deepdream.Settings(layers="blocks.4", channels=(200,)))
    with pytest.raises(ModelError, match="unknown class"):
        build_objective(lite0, deepdream.Settings(target_class="unicorn"))


def test_auto_precision_keeps_depthwise_networks_in_fp32_on_the_cpu(lite0):
    from deepdream.runtime import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, lite0.model) == "fp32"  # memory-bound: bf16 measured 0.70x
    dense = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    assert resolve_precision("auto", cpu, dense) == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_precision("bf16", cpu, lite0.model) == "bf16"  # an explicit choice is kept


def test_working_size_lifts_the_short_side_to_the_network_minimum():
    from deepdream.engine.octaves import working_size

    assert working_size(300, 400, 32) == (300, 400)  # large enough: itself
    assert working_size(20, 1024, 32) == (32, 1638)  # a panorama strip keeps its aspect ratio
    assert working_size(1, 1, 32) == (32, 32)
    assert working_size(1, 1024, 32) == (32, 3200)  # a 1 px line: stretched across, its length capped
    assert working_size(2000, 3, 75) == (2000, 75)  # ... never shrunk along


def test_a_strip_below_the_minimum_is_dreamed_and_its_mask_kept(lite0):
    """Issue 23: a 20 px strip was refused ('needs at least 32 px a side'); now it is dreamed through a copy
    32 px high, its objective rises there, and mask-0 pixels come back exactly."""
    from conftest import synthetic_photo
    from deepdream.engine.octaves import resize, working_size
    from deepdream.imagefiles import pil_to_tensor

    strip = pil_to_tensor(synthetic_photo(160, 20, seed=2))[0]
    settings = deepdream.Settings(seed=0, precision="fp32", octaves=1, iterations=30)
    mask = torch.ones(20, 160)
    mask[:, :40] = 0
    with Dreamer.from_settings(settings, lite0) as dreamer:
        out = dreamer.dream(strip)
        kept = dreamer.dream(strip, mask=mask)
        size = working_size(20, 160, lite0.min_size)
        gain = dreamer.score(resize(out, size)).item() / dreamer.score(resize(strip, size)).item()
    assert out.shape == strip.shape and 0 <= out.min() and out.max() <= 1
    assert gain > 1.5
    assert torch.equal(kept[..., :40], strip[..., :40]) and (kept[..., 60:] - strip[..., 60:]).abs().mean() > 0.01


def test_the_octave_blend_field_and_its_old_key():
    s = deepdream.Settings(octave_blend=0.3)
    assert from_mapping({"blend": 0.3}) == s  # configs and images saved before the rename still load
    assert from_mapping({**deepdream.Settings().to_dict(), "blend": 0.3}) == s  # an old-key override wins
    with pytest.raises(SettingsError, match="octave blend must be in"):
        deepdream.Settings(octave_blend=2)


def test_log_sinks_nest_and_put_the_package_logger_back():
    import logging

    from deepdream.runtime import package_log

    package, child = logging.getLogger("deepdream"), logging.getLogger("deepdream.engine.test")
    before = package.level
    outer, inner = logging.Handler(logging.INFO), logging.Handler(logging.DEBUG)
    seen = []
    outer.emit = inner.emit = lambda record: seen.append(record.getMessage())
    with package_log(outer):
        child.debug("not for the info sink")
        with package_log(inner):
            child.debug("for the debug sink")
        child.debug("dropped again")
        child.info("info")
    assert seen == ["for the debug sink", "info"]
    assert package.level == before and outer not in package.handlers and inner not in package.handlers
