"""Image folders: `root/<class>/<image>` or `root/{train,val,test}/<class>/<image>`.

Extensions .jpg .jpeg .png .bmp are matched case-insensitively; other files are ignored. Sizes and
colour modes may be mixed: if any image is in colour the set is RGB and grayscale images are
replicated to three channels. Classes are the sorted folder names (the order torchvision uses).

A file that cannot be decoded is skipped, counted and named in `ImageSource.skipped` (the run
record lists it and the CLI warns); a class folder with no images is refused.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from quantlens.data.decode import IMAGE_EXTENSIONS, DecodeError, decode_image
from quantlens.data.paths import existing_path
from quantlens.data.registry import DATASETS
from quantlens.data.source import SPLIT_NAMES, ImageSource, default_normalization
from quantlens.errors import DataError


def _class_dirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)


def _image_files(class_dir: Path) -> list[Path]:
    files = sorted(f for f in class_dir.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"imagefolder: class folder {class_dir} holds no images ({' '.join(IMAGE_EXTENSIONS)})")
    return files


def _layout(root: Path) -> dict[str, Path]:
    """Split name -> folder of class folders; {'': root} when the root holds classes directly."""
    subdirs = {d.name.lower(): d for d in _class_dirs(root)}
    split_dirs = {s: subdirs[s] for s in SPLIT_NAMES if s in subdirs}
    if split_dirs and set(subdirs) <= set(SPLIT_NAMES):
        return split_dirs
    if not subdirs:
        raise DataError(f"imagefolder: {root} has no class sub-folders")
    return {"": root}


def _decode_all(files: list[Path]) -> list[np.ndarray | str]:
    def decode(path: Path) -> np.ndarray | str:
        try:
            return decode_image(path)
        except DecodeError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=4) as pool:  # Pillow releases the GIL while decoding
        return list(pool.map(decode, files))


@DATASETS.register("imagefolder")
def load_imagefolder(argument: str | None) -> ImageSource:
    root = existing_path(argument, "imagefolder", want_dir=True)
    layout = _layout(root)
    per_split = {split: {d.name: _image_files(d) for d in _class_dirs(folder)} for split, folder in layout.items()}
    class_names = sorted({name for classes in per_split.values() for name in classes})
    if not class_names:
        raise DataError(f"imagefolder: {root} has no class sub-folders")
    entries = [(split, class_names.index(name), f)
               for split, classes in per_split.items() for name, files in classes.items() for f in files]
    decoded = _decode_all([f for _, _, f in entries])

    images, labels, ids, split_of, skipped = [], [], [], [], []
    for (split, label, path), result in zip(entries, decoded, strict=False):
        rel = path.relative_to(root).as_posix()
        if isinstance(result, str):
            skipped.append((rel, result))
            continue
        images.append(result)
        labels.append(label)
        ids.append(rel)
        split_of.append(split)
    labels_arr = np.asarray(labels, dtype=np.int64)
    splits_arr = np.asarray(split_of)
    for split, classes in per_split.items():
        present = set(labels_arr[splits_arr == split].tolist())
        for name in classes:
            if class_names.index(name) not in present:
                where = (layout[split] / name) if split else (root / name)
                raise DataError(f"imagefolder: no image in class folder {where} could be decoded")
    channels = 3 if any(img.shape[2] == 3 for img in images) else 1
    if channels == 3:
        images = [np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img for img in images]
    sizes = {img.shape for img in images}
    stacked = np.stack(images) if len(sizes) == 1 else images
    official = {s: np.flatnonzero(splits_arr == s).astype(np.int64) for s in layout if s}
    return ImageSource(
        name=root.name,
        spec=f"imagefolder:{root}",
        images=stacked,
        labels=labels_arr,
        ids=ids,
        class_names=class_names,
        channels=channels,
        normalization=default_normalization(channels),
        official_splits=official,
        skipped=skipped,
        root=root,
    )
