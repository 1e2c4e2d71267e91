"""LiveEdit editing metrics as an ``evaluate`` module (load it from this folder, offline).

``evaluate.load(path_to_this_folder)`` gives the ``token_accuracy`` configuration (the default):
predictions and references are token-id sequences, one pair per sample, and the result is the
mean per-sample fraction of matching positions. Pass the argmax tokens at the answer positions
and the target tokens for Rel / T-Gen / M-Gen, or the edited and the unedited model's argmax
tokens for T-Loc / M-Loc. ``config_name="exact_match"`` scores greedy answers (strings) against
target strings. Both call the plain functions of :mod:`hf_liveedit.evaluation.metrics`.
"""

from __future__ import annotations

import datasets
import evaluate

from hf_liveedit.evaluation.metrics import exact_match, mean, token_match

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: token_accuracy: a list of token-id lists (argmax at each answer position);
        exact_match: a list of generated answers.
    references: token_accuracy: a list of token-id lists, each as long as its prediction (target
        tokens, or the unedited model's argmax tokens for locality); exact_match: target strings.
Returns:
    token_accuracy: {"token_accuracy": mean per-sample fraction of matching tokens}
    exact_match: {"exact_match": fraction of answers that start with their whole target}
"""

_FEATURES = {
    "token_accuracy": datasets.Features(
        {
            "predictions": datasets.Sequence(datasets.Value("int64")),
            "references": datasets.Sequence(datasets.Value("int64")),
        }
    ),
    "exact_match": datasets.Features(
        {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
    ),
}


class LiveEditMetrics(evaluate.Metric):
    """Teacher-forced token accuracy / locality agreement, or greedy exact match."""

    def _info(self) -> evaluate.MetricInfo:
        config = "token_accuracy" if self.config_name == "default" else self.config_name
        if config not in _FEATURES:
            raise ValueError(
                f"unknown configuration {config!r}; expected one of {sorted(_FEATURES)}"
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=_FEATURES[config],
        )

    def _compute(self, predictions, references):
        if self.config_name == "exact_match":
            return {
                "exact_match": mean([exact_match(p, r) for p, r in zip(predictions, references)])
            }
        return {"token_accuracy": mean(token_match(predictions, references))}
