"""to_model_layout's resize rules: the default squash, torchvision's shorter-side resize + centre crop, timm's
squash + centre crop; checked against direct torch computations and, for bilinear, against Pillow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_sample_image

from quantlens.data.source import Normalization
from quantlens.data.transforms import Preprocessing, ResizeRule, to_model_layout

RGB = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photograph, 427 x 640 x 3 uint8 (scikit-learn's sample 'china.jpg'), shrunk 4x to keep it fast."""
    image = load_sample_image("china.jpg")
    return np.array(Image.fromarray(image).resize((160, 107), Image.BILINEAR))  # (107, 160, 3)


def _direct(image: np.ndarray, resized: tuple[int, int], top: int, left: int, size: tuple[int, int],
            mode: str = "bilinear") -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    kwargs = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
    x = F.interpolate(x, size=resized, mode=mode, **kwargs)
    return x[0, :, top:top + size[0], left:left + size[1]].round().clamp(0, 255).to(torch.uint8)


def test_default_rule_is_the_plain_squash(photo):
    prep = Preprocessing(3, (24, 24), RGB)
    assert prep.resize == ResizeRule() and prep.resize.describe((24, 24)) == "squash to 24x24 (bilinear, antialiased)"
    assert torch.equal(to_model_layout([photo], prep)[0], _direct(photo, (24, 24), 0, 0, (24, 24)))


@pytest.mark.parametrize("portrait", [False, True])
def test_shorter_side_then_centre_crop(photo, portrait):
    image = np.ascontiguousarray(photo.transpose(1, 0, 2)) if portrait else photo  # (160, 107) or (107, 160)
    prep = Preprocessing(3, (48, 48), RGB, ResizeRule("shorter_side", (56, 56)))
    out = to_model_layout([image], prep)[0]
    # shorter side 107 -> 56, longer 160 -> int(56 * 160 / 107) = 83 (truncated, as torchvision); centre 48x48
    # starts at round((56 - 48) / 2) = 4 and round((83 - 48) / 2) = round(17.5) = 18 (round half to even)
    resized, top, left = ((83, 56), 18, 4) if portrait else ((56, 83), 4, 18)
    assert torch.equal(out, _direct(image, resized, top, left, (48, 48)))
    # Pillow's antialiased bilinear resize of the same image, cropped the same way, within one grey level
    h, w = resized
    pil = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))[top:top + 48, left:left + 48]
    assert np.abs(out.permute(1, 2, 0).numpy().astype(int) - pil.astype(int)).max() <= 1


def test_squash_then_centre_crop_and_arrays_match_lists(photo):
    rule = ResizeRule("squash", (25, 27), "bicubic")
    prep = Preprocessing(3, (20, 20), RGB, rule)
    batch = np.stack([photo, photo[::-1]])  # (2, 107, 160, 3): the array path, chunked
    out = to_model_layout(batch, prep, chunk=1)
    # crop offsets round(5 / 2) = 2 and round(7 / 2) = 4; bicubic overshoot is clamped to [0, 255]
    assert torch.equal(out[0], _direct(photo, (25, 27), 2, 4, (20, 20), "bicubic"))
    assert torch.equal(out, to_model_layout(list(batch), prep))
    assert rule.describe((20, 20)) == "squash to 25x27 (bicubic, antialiased), centre crop 20x20"


def test_nearest_is_not_antialiased(photo):
    prep = Preprocessing(3, (30, 30), RGB, ResizeRule("shorter_side", (32, 32), "nearest"))
    # 107 x 160 -> 32 x int(32 * 160 / 107) = 32 x 47; offsets round(2 / 2) = 1 and round(17 / 2) = 8
    assert torch.equal(to_model_layout([photo], prep)[0], _direct(photo, (32, 47), 1, 8, (30, 30), "nearest"))
    assert prep.resize.describe((30, 30)) == "shorter side to 32 (nearest), centre crop 30x30"


@pytest.mark.parametrize("rule, size, message", [
    (dict(mode="shorter_side", scale=(20, 20)), (24, 24), r"scale \(20, 20\) is smaller than the crop \(24, 24\)"),
    (dict(mode="squash", scale=(30, 20)), (24, 24), "smaller than the crop"),
    (dict(mode="border", scale=(30, 30)), (24, 24), "resize mode must be one of squash, shorter_side"),
    (dict(mode="squash", interpolation="lanczos"), (24, 24), "interpolation must be one of"),
    (dict(mode="shorter_side", scale=(30, 28)), (24, 24), "needs one length"),
])
def test_rules_that_cannot_work_are_refused(rule, size, message):
    with pytest.raises(ValueError, match=message):
        Preprocessing(3, size, RGB, ResizeRule(**rule))
