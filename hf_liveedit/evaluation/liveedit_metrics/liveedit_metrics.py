"""LiveEdit editing metrics as an ``evaluate`` module (load it from this folder, offline).

``evaluate.load(path_to_this_folder)`` gives the ``token_accuracy`` configuration (the default):
predictions and references are token-id sequences, one pair per sample, and the result is the
mean per-sample fraction of matching positions. Pass the argmax tokens at the answer positions
and the target tokens for Rel / T-Gen / M-Gen, or the edited and the unedited model's argmax
tokens for T-Loc / M-Loc / N-Loc (N-Loc: the edited question asked on a neighbour's image, an
entity of the same relation whose edit was not applied). ``config_name="exact_match"`` scores
greedy answers (strings) against target strings; ``config_name="same_answer"`` scores the edited
model's greedy answers against the unedited model's (N-Loc same: string-identical or not). All
call the plain functions of :mod:`hf_liveedit.evaluation.metrics`.
"""

from __future__ import annotations

import datasets
import evaluate

from hf_liveedit.evaluation.metrics import exact_match, mean, same_answer, token_match

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: token_accuracy: a list of token-id lists (argmax at each answer position);
        exact_match, same_answer: a list of generated answers (same_answer: after the edits).
    references: token_accuracy: a list of token-id lists, each as long as its prediction (target
        tokens, or the unedited model's argmax tokens for T-Loc / M-Loc / N-Loc); exact_match:
        target strings; same_answer: the unedited model's generated answers.
Returns:
    token_accuracy: {"token_accuracy": mean per-sample fraction of matching tokens}
    exact_match: {"exact_match": fraction of answers that start with their whole target}
    same_answer: {"same_answer": fraction of answers identical to the unedited ones (N-Loc same)}
"""

_ANSWERS = datasets.Features(
    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
)
_FEATURES = {
    "token_accuracy": datasets.Features(
        {
            "predictions": datasets.Sequence(datasets.Value("int64")),
            "references": datasets.Sequence(datasets.Value("int64")),
        }
    ),
    "exact_match": _ANSWERS,
    "same_answer": _ANSWERS,
}


class LiveEditMetrics(evaluate.Metric):
    """Teacher-forced token accuracy / locality agreement, greedy exact match or same answer."""

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
        if self.config_name == "same_answer":
            return {
                "same_answer": mean([same_answer(p, r) for p, r in zip(predictions, references)])
            }
        return {"token_accuracy": mean(token_match(predictions, references))}
