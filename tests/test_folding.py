import torch
from torch import nn

from deepdream.engine.ascent import gradient, scorer
from deepdream.engine.folding import FoldedNorm, fold_batchnorm
from deepdream.engine.objectives import Energy
from deepdream.engine.taps import Taps
from deepdream.models.backbone import list_layer_names


def _grad(backbone, model, layer, image):
    objective = Energy(layer)
    with Taps(model, objective.layers) as taps:
        return gradient(scorer(backbone, taps, objective))(image)


def test_folded_network_has_the_same_gradient_and_layer_names(lite0, photo_tensor):
    folded = fold_batchnorm(lite0.model, keep=["blocks.4"])
    assert folded is not lite0.model
    assert sum(isinstance(m, FoldedNorm) for m in folded.modules()) == 49  # every norm of the network
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert list_layer_names(folded) == list_layer_names(lite0.model)
    assert any(isinstance(m, nn.BatchNorm2d) for m in lite0.model.modules())  # the backbone is untouched
    before = _grad(lite0, lite0.model, "blocks.4", photo_tensor)
    after = _grad(lite0, folded, "blocks.4", photo_tensor)
    # fp32 rounding moves a few ReLU6 units across their clip points: 0.5% measured
    assert ((after - before).norm() / before.norm()).item() < 1e-2


def test_a_tapped_convolution_keeps_its_own_output(lite0, photo_tensor):
    conv = "blocks.4.0.conv_pw"
    folded = fold_batchnorm(lite0.model, keep=[conv])
    assert isinstance(dict(folded.named_modules())["blocks.4.0.bn1"], nn.BatchNorm2d)
    with Taps(lite0.model, [conv]) as a, Taps(folded, [conv]) as b, torch.no_grad():
        x = lite0.normalize(photo_tensor).contiguous(memory_format=torch.channels_last)
        assert torch.allclose(a(x)[conv], b(x)[conv], rtol=1e-4, atol=1e-4)


class _SharedConvOutput(nn.Module):
    """The conv's output feeds the norm and a skip connection: folding would change the skip."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_folding_that_would_change_the_function_is_refused():
    model = _SharedConvOutput().eval()
    assert fold_batchnorm(model) is model


def test_the_copy_runs_activations_out_of_place_except_relu(lite0):
    folded = fold_batchnorm(lite0.model, keep=["blocks.4"])
    relu6 = [m for m in folded.modules() if isinstance(m, nn.ReLU6)]
    assert relu6 and not any(m.inplace for m in relu6)
    assert any(m.inplace for m in lite0.model.modules() if isinstance(m, nn.ReLU6))  # the original keeps its own
