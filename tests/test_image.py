import numpy as np
import pytest
import torch
from PIL import Image

from deepdream import imagefiles
from deepdream.errors import ImageError, OutputError


@pytest.mark.parametrize("orientation, top, bottom", [(6, "red", "blue"), (8, "blue", "red"), (1, None, None)])
def test_exif_orientation_is_applied(tmp_path, orientation, top, bottom):
    # left half red, right half blue: a rotation in the wrong direction swaps top and bottom
    img = Image.new("RGB", (40, 20), "red")
    img.paste((0, 0, 255), (20, 0, 40, 20))
    exif = img.getexif()
    exif[0x0112] = orientation  # 6: rotate 90 CW on display, 8: 90 CCW, 1: as stored
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    rgb, _ = imagefiles.load_image(tmp_path / "rot.jpg")
    if top is None:
        assert rgb.shape == (1, 3, 20, 40)
        return
    assert rgb.shape == (1, 3, 40, 20)
    colour = {"red": torch.tensor([1.0, 0, 0]), "blue": torch.tensor([0, 0, 1.0])}
    assert torch.allclose(rgb[0, :, 5, 10], colour[top], atol=0.1)
    assert torch.allclose(rgb[0, :, 34, 10], colour[bottom], atol=0.1)


@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("L", 128, 128 / 255),
        ("CMYK", (0, 255, 255, 0), (1.0, 0.0, 0.0)),  # pure red in CMYK
        ("I;16", 32768, 32768 / 65535),  # 16-bit grey scaled by its range, not clipped at 255
        ("P", 1, None),
    ],
)
def test_colour_modes_convert_to_rgb(tmp_path, mode, value, expected):
    img = Image.new(mode, (8, 8), value)
    if mode == "P":
        img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
        expected = (0.0, 1.0, 0.0)
    ext = ".tif" if mode == "CMYK" else ".png"
    img.save(tmp_path / f"x{ext}")
    rgb, alpha = imagefiles.load_image(tmp_path / f"x{ext}")
    assert rgb.shape == (1, 3, 8, 8) and alpha is None
    want = torch.tensor(expected if isinstance(expected, tuple) else (expected,) * 3)
    assert torch.allclose(rgb[0, :, 4, 4], want, atol=1 / 255)


def test_alpha_is_kept_on_output(tmp_path):
    a = np.zeros((16, 16, 4), np.uint8)
    a[..., 0] = 200
    a[:, :8, 3] = 255
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    rgb, alpha = imagefiles.load_image(tmp_path / "a.png")
    out = imagefiles.tensor_to_pil(rgb, alpha)
    imagefiles.save_image(out, tmp_path / "b.png")
    back = np.asarray(Image.open(tmp_path / "b.png"))
    assert back.shape == (16, 16, 4) and back[0, 0, 3] == 255 and back[0, 15, 3] == 0


def test_max_size_caps_the_long_side(tmp_path):
    Image.new("RGB", (400, 100)).save(tmp_path / "w.png")
    rgb, _ = imagefiles.load_image(tmp_path / "w.png", max_size=200)
    assert rgb.shape[-2:] == (50, 200)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp"])
def test_settings_metadata_round_trips(tmp_path, ext):
    img = Image.new("RGB", (8, 8), "blue")
    meta = '{"deepdream": {"seed": 5}}'
    imagefiles.save_image(img, tmp_path / f"m{ext}", metadata=meta)
    assert imagefiles.read_metadata(tmp_path / f"m{ext}") == {"seed": 5}


def test_outputs_are_guarded(tmp_path):
    src = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(src)
    with pytest.raises(OutputError, match="input"):
        imagefiles.check_output(src, force=True, inputs=(src,))
    with pytest.raises(OutputError, match="exists"):
        imagefiles.check_output(src)
    with pytest.raises(OutputError, match="format"):
        imagefiles.check_output(tmp_path / "x.xyz")
    with pytest.raises(OutputError, match="does not exist"):
        imagefiles.check_output(tmp_path / "nope" / "x.png")


def test_failed_write_leaves_no_file(tmp_path):
    def boom(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        imagefiles.atomic_write(tmp_path / "out.png", boom)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["missing", "dir", "text", "truncated"])
def test_bad_inputs_are_image_errors(tmp_path, kind):
    path = tmp_path / "bad.jpg"
    if kind == "dir":
        path.mkdir()
    elif kind == "text":
        path.write_text("hello")
    elif kind == "truncated":
        Image.new("RGB", (64, 64), "red").save(tmp_path / "ok.jpg")
        path.write_bytes((tmp_path / "ok.jpg").read_bytes()[:300])
    with pytest.raises(ImageError):
        imagefiles.load_image(path)


@pytest.mark.parametrize("mode", ["I;16", "F"])
def test_deep_masks_are_scaled_by_their_range_not_clipped(tmp_path, mode):
    """Issue 23: a 16-bit mask went through convert('L'), which clips: 25% grey dreamed as white."""
    if mode == "I;16":
        Image.fromarray(np.full((6, 8), 65535 // 4, np.uint16)).save(tmp_path / "m.png")
        path = tmp_path / "m.png"
    else:
        Image.fromarray(np.full((6, 8), 0.25, np.float32)).save(tmp_path / "m.tif")
        path = tmp_path / "m.tif"
    for size in ((6, 8), (3, 5)):
        mask = imagefiles.load_mask(path, size)
        assert mask.shape == (1, 1, *size) and torch.allclose(mask, torch.tensor(0.25), atol=1e-3)
