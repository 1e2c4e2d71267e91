"""Write stand-in images for the first records of an MMEdit annotation file.

E-VQA, E-IC and VLKEB annotation files ship without their COCO / web images. For a smoke run of
the evaluation pipeline on the real annotations, this writes a generated 224x224 picture (a
colour derived from the file name, with the name drawn on it) at every image path that the
first ``--limit`` records reference. Scores on such images mean nothing.

    python scripts/standin_images.py ../shared/data/real-annotations/evqa_eval.json \\
        /tmp/standin/evqa_eval --limit 6
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from PIL import Image, ImageDraw

from hf_liveedit.data.mmedit import IMAGE_FIELDS


def standin_image(name: str) -> Image.Image:
    """A 224x224 picture whose colour and text depend only on ``name``."""
    red, green, blue = hashlib.sha256(name.encode()).digest()[:3]
    image = Image.new("RGB", (224, 224), (red, green, blue))
    ImageDraw.Draw(image).text((8, 100), Path(name).name[:36], fill=(255 - red, 255 - green, 255))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("annotations", type=Path, help="MMEdit-format JSON file")
    parser.add_argument("image_root", type=Path, help="folder to write the images into")
    parser.add_argument("--limit", type=int, default=6, help="records to cover")
    args = parser.parse_args()
    records = json.loads(args.annotations.read_text(encoding="utf-8"))[: args.limit]
    names = {record[field] for record in records for field in IMAGE_FIELDS if record.get(field)}
    for name in sorted(names):
        path = args.image_root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        standin_image(name).save(path, format="PNG")  # the suffix may say .jpg: PIL reads either
    print(f"{len(names)} stand-in images for {len(records)} records under {args.image_root}")


if __name__ == "__main__":
    main()
