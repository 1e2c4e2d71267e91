"""Read MMEdit-format editing data (E-VQA, E-IC, VLKEB, the packaged benchmark).

All formats become a :class:`datasets.Dataset` with one uniform schema of string columns:
the eleven MMEdit fields (:data:`MMEDIT_FIELDS`) plus :data:`EXTRA_FIELDS` (empty where a file
does not have them). Image columns hold paths relative to an image root; :func:`with_images`
makes them open as PIL images on access, so building the dataset never touches an image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hf_liveedit.data.prompts import with_loc_prefix

MMEDIT_FIELDS: tuple[str, ...] = (
    "src",
    "rephrase",
    "pred",
    "alt",
    "image",
    "image_rephrase",
    "loc",
    "loc_ans",
    "m_loc",
    "m_loc_q",
    "m_loc_a",
)
# Fields the packaged benchmark adds; MMEdit files leave them empty except `task` and `source`.
EXTRA_FIELDS: tuple[str, ...] = (
    "task",
    "source",
    "split",
    "entity",
    "relation",
    "answer",
    "image_rephrase_source",  # where the M-Gen picture comes from (results by source)
)
IMAGE_FIELDS: tuple[str, ...] = ("image", "image_rephrase", "m_loc")
COLUMNS: tuple[str, ...] = MMEDIT_FIELDS + EXTRA_FIELDS


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON list of MMEdit records.

    Args:
        path: A ``.json`` file holding a list of objects.

    Returns:
        The records, as parsed.
    """
    with open(path, encoding="utf-8") as handle:
        records = json.load(handle)
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    return records


def guess_task(path: str | os.PathLike[str]) -> str:
    """Guess the prompt task of an annotation file from its name (E-IC files are captions).

    Args:
        path: The annotation file.

    Returns:
        ``"caption"`` for E-IC / caption files, else ``"vqa"``.
    """
    name = Path(path).name.lower()
    return "caption" if ("eic" in name or "caption" in name) else "vqa"


def normalize_record(
    record: dict[str, Any], *, task: str, source: str, split: str = ""
) -> dict[str, str]:
    """Map one raw record onto :data:`COLUMNS` (all strings).

    VLKEB writes its text-locality questions without MMEdit's ``"nq question: "`` prefix; it is
    added here so every format asks them the same way.

    Args:
        record: A raw MMEdit / VLKEB / benchmark record.
        task: The prompt task (see :func:`hf_liveedit.data.prompts.format_prompt`).
        source: Name of the data set the record comes from.
        split: The split name, if the file does not carry one.

    Returns:
        The normalized record.
    """
    missing = [key for key in ("src", "alt", "image") if key not in record]
    if missing:
        raise KeyError(f"record lacks required MMEdit field(s) {missing}: {record!r:.200}")
    out = {key: _as_text(record.get(key, "")) for key in COLUMNS}
    if out["loc"]:
        out["loc"] = with_loc_prefix(out["loc"])
    out["task"] = out["task"] or task
    out["source"] = out["source"] or source
    out["split"] = out["split"] or split
    return out


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # some dumps keep a list of acceptable answers: keep the first
        return str(value[0]) if value else ""
    return str(value)


def records_to_dataset(records: Iterable[dict[str, str]]):
    """Build a :class:`datasets.Dataset` with the uniform string schema.

    Args:
        records: Normalized records (see :func:`normalize_record`).

    Returns:
        The dataset, columns in :data:`COLUMNS` order.
    """
    from datasets import Dataset, Features, Value

    features = Features({key: Value("string") for key in COLUMNS})
    rows = list(records)
    return Dataset.from_dict(
        {key: [row[key] for row in rows] for key in COLUMNS}, features=features
    )


def load_mmedit(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    *,
    task: str | None = None,
    source: str | None = None,
    split: str = "",
):
    """Load an E-VQA, E-IC or VLKEB annotation file (or a benchmark split file).

    Args:
        path: The JSON annotation file.
        image_root: Folder the image paths are relative to. When given, image columns open as
            PIL images on access (see :func:`with_images`); otherwise they stay paths.
        task: Prompt task; guessed from the file name when None.
        source: Data set name stored in the ``source`` column; the file stem when None.
        split: Split name for records that do not carry one.

    Returns:
        A :class:`datasets.Dataset` with columns :data:`COLUMNS`.
    """
    task = task or guess_task(path)
    source = source or Path(path).stem
    rows = [normalize_record(r, task=task, source=source, split=split) for r in read_records(path)]
    dataset = records_to_dataset(rows)
    return with_images(dataset, image_root) if image_root is not None else dataset


def open_image(relative: str, image_root: str | os.PathLike[str]):
    """Open one image of a record.

    Args:
        relative: The image path stored in the record, relative to ``image_root``.
        image_root: The image folder.

    Returns:
        The image as an RGB ``PIL.Image.Image``.

    Raises:
        FileNotFoundError: naming the file and the image root when the image is absent.
    """
    from PIL import Image

    full = Path(image_root) / relative
    if not full.is_file():
        raise FileNotFoundError(
            f"image {relative!r} not found under image root {str(image_root)!r} "
            f"(no file at {full}); pass the folder that holds the data set's images"
        )
    with Image.open(full) as image:
        return image.convert("RGB")


class ImageOpener:
    """A ``datasets`` transform that replaces image paths by PIL images when rows are read.

    The original paths stay available as ``<field>_path``. Empty paths become ``None``.
    """

    def __init__(self, image_root: str | os.PathLike[str], fields: Sequence[str] = IMAGE_FIELDS):
        self.image_root = Path(image_root)
        self.fields = tuple(fields)

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out = dict(batch)
        for field in self.fields:
            if field not in batch:
                continue
            paths = batch[field]
            out[f"{field}_path"] = paths
            out[field] = [open_image(p, self.image_root) if p else None for p in paths]
        return out


def with_images(dataset, image_root: str | os.PathLike[str], fields: Sequence[str] = IMAGE_FIELDS):
    """Make the image columns of a dataset open lazily as PIL images.

    Args:
        dataset: A dataset from :func:`load_mmedit` or :func:`load_benchmark`.
        image_root: Folder the stored image paths are relative to.
        fields: Which columns hold image paths.

    Returns:
        The same rows with a ``with_transform`` that opens images on access; a missing image
        raises :class:`FileNotFoundError` at that moment.
    """
    return dataset.with_transform(ImageOpener(image_root, fields))


def load_benchmark(
    root: str | os.PathLike[str] | None = None, split: str = "test", *, images: bool = True
):
    """Load a split of the packaged benchmark built by ``hf-liveedit build-benchmark``.

    Args:
        root: The benchmark folder; the default cache folder when None.
        split: ``"train"`` or ``"test"``.
        images: Open images lazily (True) or keep the path columns.

    Returns:
        A :class:`datasets.Dataset` with columns :data:`COLUMNS`.
    """
    from hf_liveedit.data.benchmark.paths import default_benchmark_dir

    root = Path(root) if root is not None else default_benchmark_dir()
    path = root / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"benchmark split file {path} not found; build it with `hf-liveedit build-benchmark`"
        )
    return load_mmedit(
        path, root if images else None, task="vqa", source="hf-liveedit-benchmark", split=split
    )
