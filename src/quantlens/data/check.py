"""`check_data_spec`: is a data spec loadable? Answered without decoding an image or writing a file
(for a `--check` dry run).

Each kind's check calls the rules its loader uses (`imagefolder.scan`, `medmnist.inspect_npz`,
`idx.find_files` + `idx.check_files`, `synthetic`'s option parser) on what is cheap to read: file names,
array and IDX headers, label arrays. A registered kind without such a check (digits, which is in
memory) is loaded, which is its check. `inspect_data_spec` also gives the class names and the official
split sizes, so a dry run can check what depends on them (the positive class, the evaluation split).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from quantlens.data import idx, imagefolder, medmnist, synthetic
from quantlens.data.paths import existing_path
from quantlens.data.registry import load_source, loader_for, parse_spec
from quantlens.data.source import check_class_count


@dataclass(frozen=True)
class DataCheck:
    """What the check found: a one-line summary, the class names, and the official splits' sizes
    (split name -> samples; empty when the data defines no split)."""

    summary: str
    class_names: list[str]
    splits: dict[str, int]


def _splits(counts: dict[str, int]) -> str:
    """' (train 6, test 4)', or '' without official splits."""
    parts = [f"{split} {n}" for split, n in counts.items() if split]
    return f" ({', '.join(parts)})" if parts else ""


def _imagefolder(argument: str | None) -> DataCheck:
    root = existing_path(argument, "imagefolder", want_dir=True)
    found = imagefolder.scan(root)
    counts = {split: sum(map(len, classes.values())) for split, classes in found.files.items()}
    return DataCheck(f"imagefolder:{root}: {len(found.class_names)} classes, {found.n_files} image files"
                     f"{_splits(counts)}", found.class_names, {s: n for s, n in counts.items() if s})


def _medmnist(argument: str | None) -> DataCheck:
    path = existing_path(argument, "medmnist", want_dir=False)
    summary = medmnist.inspect_npz(path)
    counts = {split: len(labels) for split, labels in summary.labels.items()}
    h, w, c = summary.sample_shape
    return DataCheck(f"medmnist:{path}: {len(summary.class_names)} classes, {sum(counts.values())} images of "
                     f"{h}x{w}x{c}{_splits(counts)}", summary.class_names, counts)


def _idx(argument: str | None) -> DataCheck:
    folder = idx.idx_folder(argument)
    files = idx.find_files(folder)  # the splits present: train, test or both
    shapes = {split: idx.read_idx_shape(images) for split, (images, _) in files.items()}
    labels = {split: idx.read_idx(labels) for split, (_, labels) in files.items()}  # one byte a sample
    summary = idx.check_files(folder, files, shapes, labels)
    counts = {split: len(a) for split, a in summary.labels.items()}
    h, w = summary.image_size
    return DataCheck(f"idx:{folder}: {len(summary.class_names)} classes, {sum(counts.values())} images of "
                     f"{h}x{w}{_splits(counts)}", summary.class_names, counts)


def _synthetic(argument: str | None) -> DataCheck:
    o = synthetic.parse_options(argument)  # the loader's own parser and its rules
    check_class_count(o["classes"], "synthetic")
    return DataCheck(f"synthetic:{argument or ''}: {o['classes']} classes, {o['count']} images of "
                     f"{o['size']}x{o['size']}x{o['channels']}", [str(c) for c in range(o["classes"])], {})


_CHECKS: dict[str, Callable[[str | None], DataCheck]] = {
    "imagefolder": _imagefolder, "medmnist": _medmnist, "idx": _idx, "synthetic": _synthetic}


def inspect_data_spec(spec: str) -> DataCheck:
    """The summary, class names and official split sizes of a data spec, or a DataError naming the
    file or folder at fault."""
    loader_for(spec)  # an unknown kind: the known ones, and how to write a bare path
    kind, argument = parse_spec(spec)
    check = _CHECKS.get(kind)
    if check is not None:
        return check(argument)
    source = load_source(spec)
    return DataCheck(f"{source.spec}: {source.num_classes} classes, {len(source)} images", source.class_names,
                     {split: len(indices) for split, indices in source.official_splits.items()})


def check_data_spec(spec: str) -> str:
    """A one-line summary, e.g. 'imagefolder:/x: 10 classes, 10000 image files', or a DataError
    naming the file or folder at fault."""
    return inspect_data_spec(spec).summary
