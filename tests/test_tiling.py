import pytest
import torch

import deepdream
from deepdream.engine.ascent import gradient, scorer, wrapped_index
from deepdream.engine.objectives import Energy, build_objective
from deepdream.engine.octaves import Dreamer
from deepdream.engine.taps import Taps
from deepdream.engine.tiling import layer_strides, margin_for, tile_layout, tiled_gradient


@pytest.mark.parametrize("offset", [(0, 0), (32, 64), (96, 0)])
def test_tile_cores_partition_the_image(offset):
    covered = torch.zeros(300, 410, dtype=torch.int32)
    for t in tile_layout(300, 410, 128, 64, offset):
        y0, y1, x0, x1 = t.core
        covered[y0:y1, x0:x1] += 1
        py0, py1, px0, px1 = t.pad
        assert py0 <= y0 and y1 <= py1 and py1 - py0 <= 128 + 2 * 64
    assert (covered == 1).all()


def _smooth_image(h, w):
    torch.manual_seed(0)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 3, h, w), 5, 1, 2)


@pytest.mark.parametrize("shift", [(2, -3), (-2, 0), (0, 11)])
def test_tile_windows_cut_from_the_rolled_image(shift):
    image = torch.arange(2 * 6 * 9, dtype=torch.float32).view(1, 2, 6, 9)
    rows, cols = wrapped_index(1, 5, shift[0], 6, image.device), wrapped_index(2, 9, shift[1], 9, image.device)
    window = image.index_select(-2, rows).index_select(-1, cols)
    assert torch.equal(window, torch.roll(image, shift, (2, 3))[..., 1:5, 2:9])


@pytest.mark.parametrize(
    "layer, tolerance, shift", [("blocks.2", 1e-3, (0, 0)), ("blocks.4", 0.03, (0, 0)), ("blocks.2", 1e-3, (-13, 29))]
)
def test_tiled_gradient_matches_untiled(lite0, layer, tolerance, shift):
    image = _smooth_image(384, 512)
    objective = Energy(layer)
    with Taps(lite0.model, objective.layers) as taps:
        score = scorer(lite0, taps, objective)
        calls = []

        def counted(x, weights_fn=None):
            calls.append(tuple(x.shape[-2:]))
            return score(x, weights_fn)

        whole = gradient(score)(image, shift)
        strides = layer_strides(taps, lite0.device)
        margin = margin_for(strides)
        tiled = tiled_gradient(counted, strides, 96, margin, torch.Generator().manual_seed(0))(image, shift)
    assert len(calls) > 4  # tiling really happened
    assert all(h <= 96 + 2 * margin and w <= 96 + 2 * margin for h, w in calls)
    error = ((tiled - whole).norm() / whole.norm()).item()
    assert error < tolerance


def test_small_images_are_not_tiled(lite0):
    objective = Energy("blocks.4")
    with Taps(lite0.model, objective.layers) as taps:
        score = scorer(lite0, taps, objective)
        calls = []
        grad = tiled_gradient(
            lambda x, w=None: calls.append(1) or score(x, w),
            layer_strides(taps, lite0.device),
            256,
            128,
            torch.Generator(),
        )
        grad(torch.rand(1, 3, 200, 240))
    assert len(calls) == 1


def test_tiled_dream_matches_the_untiled_dream(lite0):
    image = _smooth_image(384, 512)
    settings = deepdream.Settings(octaves=1, iterations=2, tile_size=128, seed=0, precision="fp32", layers="blocks.2")
    objective = build_objective(lite0, settings)
    with (
        Dreamer(lite0, objective, settings) as tiled,
        Dreamer(lite0, objective, settings.replace(tile_size=4096)) as whole,
    ):
        before = whole.score(image).item()
        out, reference = tiled.dream(image), whole.dream(image)
        gain, reference_gain = whole.score(out).item() / before, whole.score(reference).item() / before
    assert out.shape == image.shape
    assert reference_gain > 1.05  # the dream does something measurable
    # tiles see every pixel with its receptive field: the same dream up to float noise at tile seams
    assert gain == pytest.approx(reference_gain, rel=1e-3)
    assert (out - reference).abs().mean().item() < 1e-3 * (reference - image).abs().mean().item()


def test_tile_budget_counts_saved_activations_not_weights(lite0):
    from deepdream.engine.tiling import auto_tile_size, bytes_per_pixel

    with Taps(lite0.model, ["blocks.4"]) as taps:
        small, large = bytes_per_pixel(taps, lite0.device, 64), bytes_per_pixel(taps, lite0.device, 192)
    # per pixel it does not depend on the probe size: the 19 MB of weights are not counted
    assert small == pytest.approx(large, rel=0.05) and 500 < large < 2000
    budget = int(2.5 * 2**30)
    tile = auto_tile_size(large, budget, 128)
    # the largest aligned core whose padded tile fits the budget
    assert tile % 32 == 0 and (tile + 256) ** 2 * 1.2 * large <= budget < (tile + 32 + 256) ** 2 * 1.2 * large
    assert auto_tile_size(large, 0, 128) == 128  # never below 4 x 32
