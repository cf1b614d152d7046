"""Image folders too large to decode up front: their files are decoded as a run reads them, and give the
same images, the same runs and the same results as an eager load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quantlens.data import imagefolder, lazy_images, load_source
from quantlens.data.decode import read_header
from quantlens.data.lazy_images import LazyImages
from quantlens.errors import DataError
from quantlens.experiments.runner import run_experiment
from quantlens.experiments.spec import spec_from_dict


def _folder(root: Path) -> Path:
    """Two classes of 12 images, mixed sizes, grayscale and colour, PNG and JPEG, one EXIF-rotated photo."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            size = (20 + 2 * i, 16 + i)  # (W, H)
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            image = Image.fromarray(arr).convert("L") if (i + c) % 3 == 0 else Image.fromarray(arr)
            if i == 5:  # stored landscape, shown portrait (EXIF orientation 6: 90 degrees clockwise)
                exif = Image.Exif()
                exif[0x0112] = 6
                image.save(root / name / f"{i:02d}.jpg", exif=exif.tobytes())
            else:
                image.save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture
def lazily(monkeypatch):
    monkeypatch.setattr(imagefolder, "EAGER_BYTES", 0)  # every folder counts as too large to decode up front


def test_headers_give_the_shapes_decoding_gives(tmp_path):
    from quantlens.data.decode import decode_image

    for path in sorted(_folder(tmp_path).rglob("*.*")):
        assert read_header(path) == decode_image(path).shape, path


def test_a_lazy_folder_holds_the_images_an_eager_load_decodes(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    eager = load_source(f"imagefolder:{root}")
    monkeypatch.setattr(imagefolder, "EAGER_BYTES", 0)
    lazy = load_source(f"imagefolder:{root}")
    assert isinstance(lazy.images, LazyImages) and not isinstance(eager.images, LazyImages)
    assert (lazy.ids, lazy.labels.tolist(), lazy.channels) == (eager.ids, eager.labels.tolist(), eager.channels)
    assert lazy.channels == 3 and lazy.uniform_size is None and lazy.fingerprint() == eager.fingerprint()
    assert [tuple(s) for s in lazy.images.shapes] == [img.shape for img in eager.images]
    for a, b in zip(lazy.images, eager.images, strict=True):  # iteration decodes in threads, in order
        np.testing.assert_array_equal(a, b)
    subset = lazy.images[np.array([3, 17])]
    assert isinstance(subset, LazyImages) and len(subset) == 2
    np.testing.assert_array_equal(subset[1], eager.images[17])


def test_a_run_on_a_lazy_folder_decodes_only_what_it_reads_and_gives_the_same_figures(tmp_path, monkeypatch):
    root = _folder(tmp_path / "data")

    def run(name):
        spec = spec_from_dict({"name": name, "device": "cpu", "data": {"source": f"imagefolder:{root}",
                                                                       "image_size": 16},
                               "model": {"name": "compact_cnn", "options": {"widths": [8, 16, 16]}},
                               "eval": {"split": "all", "max_samples": 8},
                               "analysis": {"layerwise_samples": 0, "compliance_samples": 0},
                               "quantization": [{"format": "int8", "calibration_samples": 6,
                                                 "calibration_batch_size": 3}],
                               "output": {"root": str(tmp_path / "runs")}})
        return run_experiment(spec).run_dir

    eager = run("eager")
    monkeypatch.setattr(imagefolder, "EAGER_BYTES", 0)
    decoded: list[Path] = []
    original = lazy_images.decode_image
    monkeypatch.setattr(lazy_images, "decode_image", lambda path: decoded.append(path) or original(path))
    lazy = run("lazy")
    assert len(decoded) == len(set(decoded)) == 8 + 6  # the evaluated and calibration files, each once, of 24
    for name in ("predictions.npz", "quantization/01-w_int8_channel_in_int8_tensor/predictions.npz"):
        with np.load(eager / name) as a, np.load(lazy / name) as b:
            np.testing.assert_array_equal(a["indices"], b["indices"])
            np.testing.assert_allclose(a["probs"], b["probs"], rtol=0, atol=1e-6)
    assert json.loads((lazy / "data.json").read_text())["limit"]["n"] == 8


def test_a_file_whose_pixels_are_damaged_is_skipped_eagerly_and_named_when_read_lazily(tmp_path, monkeypatch):
    root = _folder(tmp_path)
    damaged = root / "dog" / "99.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(damaged)
    damaged.write_bytes(damaged.read_bytes()[:1000])  # the header reads; the pixel data ends early
    assert read_header(damaged)
    eager = load_source(f"imagefolder:{root}")
    assert [f for f, _ in eager.skipped] == ["dog/99.jpg"]
    monkeypatch.setattr(imagefolder, "EAGER_BYTES", 0)
    lazy = load_source(f"imagefolder:{root}")
    index = lazy.ids.index("dog/99.jpg")
    with pytest.raises(DataError, match=f"imagefolder: {damaged} could not be decoded .*remove or replace"):
        lazy.images[index]
    assert lazy.images[index - 1].shape == lazy.images.shapes[index - 1]  # the others read
