import torch

from deepdream.engine.filters import GaussianBlur, gaussian_kernel1d


def test_kernel_is_normalised_and_symmetric():
    k = gaussian_kernel1d(1.0)
    assert k.numel() == 7 and torch.isclose(k.sum(), torch.tensor(1.0))
    assert torch.equal(k, k.flip(0))


def test_blur_spreads_an_impulse_and_keeps_flat_pictures_flat():
    x = torch.zeros(1, 3, 15, 15)
    x[..., 7, 7] = 1
    y = GaussianBlur(1.0)(x)
    assert torch.isclose(y.sum(), torch.tensor(3.0)) and y[0, 0, 7, 7] < 1 and y[0, 0, 7, 8] > 0
    flat = torch.full((1, 3, 8, 8), 0.7)
    assert torch.allclose(GaussianBlur(2.0, "replicate")(flat), flat)  # edges of pictures do not darken
    # gradients are averaged over the pixels inside: no faded band along the edges
    assert torch.allclose(GaussianBlur(2.0)(flat), flat)


def test_inplace_blur_equals_the_copying_one():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 20, 30)
    for border in ("normalized", "replicate"):
        blur = GaussianBlur(1.5, border)
        expected = blur(x)
        y = x.clone()
        assert blur(y, inplace=True) is y and torch.allclose(y, expected, atol=1e-6)


def _conv_reference(x, sigma, border):
    import torch.nn.functional as F

    k = gaussian_kernel1d(sigma)
    r, c = k.numel() // 2, x.shape[1]
    kx, ky = k.view(1, 1, 1, -1).expand(c, 1, 1, -1), k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    if border == "replicate":
        y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), kx, groups=c)
        return F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), ky, groups=c)
    y = F.conv2d(F.conv2d(x, kx, padding=(0, r), groups=c), ky, padding=(r, 0), groups=c)
    if border == "normalized":
        ones = torch.ones_like(x[:, :1])
        y = y / F.conv2d(F.conv2d(ones, kx[:1], padding=(0, r)), ky[:1], padding=(r, 0))
    return y


def test_slice_blur_matches_a_convolution_for_every_border():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 17, 23)
    for border in ("zeros", "replicate", "normalized"):
        for sigma in (0.7, 2.0, 5.0):  # 5.0: the kernel is wider than the image
            expected = _conv_reference(x, sigma, border)
            assert torch.allclose(GaussianBlur(sigma, border)(x), expected, atol=1e-5), (border, sigma)
