"""Image folders: `root/<class>/<image>` or `root/{train,val,test}/<class>/<image>`.

Extensions .jpg .jpeg .png .bmp are matched case-insensitively; other files are ignored. Sizes and
colour modes may be mixed: if any image is in colour the set is RGB and grayscale images are
replicated to three channels. Classes are the sorted folder names (the order torchvision uses).

A file that cannot be decoded (or is over Pillow's pixel limit) is skipped, counted and named in
`ImageSource.skipped` (the run record lists it and the CLI warns); a class folder with no images,
a split folder with no class folders, and split folders mixed with other folders are refused.

A few files' headers (size and colour mode, without the pixels) estimate what the folder takes decoded.
A folder over EAGER_BYTES is not decoded up front: every header is read, and its images are
`LazyImages`, decoded when a run reads them, so a subset (`--limit`, calibration) of a large folder of
photos decodes only itself. Smaller folders are decoded at once, as before.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantlens import events
from quantlens.data.decode import (
    IMAGE_EXTENSIONS,
    DecodeError,
    decode_image,
    oversize_warnings_as_errors,
    read_header,
)
from quantlens.data.lazy_images import LazyImages
from quantlens.data.paths import existing_path
from quantlens.data.registry import DATASETS
from quantlens.data.source import SPLIT_NAMES, ImageSource, check_class_count, default_normalization
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
    if not subdirs:
        raise DataError(f"imagefolder: {root} has no class sub-folders")
    splits = [s for s in SPLIT_NAMES if s in subdirs]
    if not splits:
        return {"": root}
    others = sorted(d.name for name, d in subdirs.items() if name not in SPLIT_NAMES)
    if others:  # 'train/ test/ misc/': three classes, or two splits and a stray folder?
        raise DataError(f"imagefolder: {root} mixes split folders ({', '.join(subdirs[s].name for s in splits)}) "
                        f"with other folders ({', '.join(others)}); use only {'/, '.join(SPLIT_NAMES)}/ "
                        f"or only class folders")
    return {s: subdirs[s] for s in splits}


@dataclass(frozen=True)
class FolderScan:
    """What the file system says, before any decoding: split -> class -> image files."""

    root: Path
    layout: dict[str, Path]  # split name -> folder of class folders ('' for a flat folder)
    files: dict[str, dict[str, list[Path]]]
    class_names: list[str]

    @property
    def n_files(self) -> int:
        return sum(len(f) for classes in self.files.values() for f in classes.values())


def scan(root: Path) -> FolderScan:
    """The layout rules: class folders (or split folders of class folders), each holding an image
    file, at least two classes in all."""
    layout = _layout(root)
    files = {}
    for split, folder in layout.items():
        class_dirs = _class_dirs(folder)
        if not class_dirs:
            raise DataError(f"imagefolder: split folder {folder} has no class sub-folders")
        files[split] = {d.name: _image_files(d) for d in class_dirs}
    class_names = sorted({name for classes in files.values() for name in classes})
    check_class_count(len(class_names), f"imagefolder: {root}")
    return FolderScan(root, layout, files, class_names)


# Decoded images (uint8, H x W x C) up to this many bytes are decoded when the folder is read; a larger
# folder is decoded as a run reads it (10,000 CIFAR images take 31 MB, 50,000 ImageNet photos ~28 GB).
EAGER_BYTES = 2 << 30
HEADER_SAMPLE = 256


def _decoded_bytes(files: list[Path]) -> float:
    """The bytes the files would take decoded, estimated from the headers of up to HEADER_SAMPLE of them
    spread over the list (reading every header costs a fifth of decoding small images)."""
    chosen = np.unique(np.linspace(0, len(files) - 1, min(len(files), HEADER_SAMPLE)).round().astype(np.int64))
    shapes = [shape for shape in _each(read_header, [files[i] for i in chosen], "sizing images")
              if not isinstance(shape, str)]
    return float(np.mean([np.prod(shape) for shape in shapes])) * len(files) if shapes else 0.0


def _each(function, files: list[Path], what: str) -> list:
    """function(file) for every file, in order, in threads (Pillow releases the GIL); a DecodeError
    becomes its message."""
    def run(path: Path):
        try:
            return function(path)
        except DecodeError as exc:
            return str(exc)

    # Set in this thread around the whole pool: the warnings filter is shared by the workers.
    results = []
    with oversize_warnings_as_errors(), ThreadPoolExecutor(max_workers=4) as pool, \
            events.task(what, total=len(files), unit="images") as progress:
        for result in pool.map(run, files):  # in order, collected here: events are emitted from this thread
            results.append(result)
            progress.advance()
    return results


@DATASETS.register("imagefolder")
def load_imagefolder(argument: str | None) -> ImageSource:
    root = existing_path(argument, "imagefolder", want_dir=True)
    found = scan(root)
    class_names, layout = found.class_names, found.layout
    entries = [(split, class_names.index(name), f)
               for split, classes in found.files.items() for name, files in classes.items() for f in files]
    paths = [f for _, _, f in entries]
    lazy = _decoded_bytes(paths) > EAGER_BYTES
    decoded = _each(read_header if lazy else decode_image, paths, "reading image headers" if lazy else
                    "decoding images")

    images, labels, ids, split_of, skipped, kept = [], [], [], [], [], []
    for (split, label, path), result in zip(entries, decoded, strict=True):
        rel = path.relative_to(root).as_posix()
        if isinstance(result, str):
            skipped.append((rel, result))
            continue
        images.append(result)  # the decoded image, or (lazy) its header's (H, W, C)
        kept.append(path)
        labels.append(label)
        ids.append(rel)
        split_of.append(split)
    labels_arr = np.asarray(labels, dtype=np.int64)
    splits_arr = np.asarray(split_of)
    for split, classes in found.files.items():
        present = set(labels_arr[splits_arr == split].tolist())
        for name in classes:
            if class_names.index(name) not in present:
                raise DataError(f"imagefolder: no image in class folder {layout[split] / name} could be decoded")
    if lazy:
        channels = 3 if any(shape[2] == 3 for shape in images) else 1
        stacked = LazyImages(kept, images, channels)
    else:
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
