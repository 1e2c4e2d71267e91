"""The packaged editing benchmark: real images and facts from Debian and PyPI packages.

``build_benchmark()`` (or ``hf-liveedit build-benchmark``) writes ``train.json``/``test.json``
in the MMEdit format, the images, a data card and a picture sheet into a cache folder;
:func:`hf_liveedit.data.load_benchmark` reads it back.
"""

from __future__ import annotations

from hf_liveedit.data.benchmark.build import BuildReport, build_benchmark
from hf_liveedit.data.benchmark.paths import default_benchmark_dir
from hf_liveedit.data.benchmark.preds import fill_predictions

__all__ = ["BuildReport", "build_benchmark", "default_benchmark_dir", "fill_predictions"]
