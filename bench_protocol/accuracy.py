"""The accuracy a cell must keep against its fp32 eager reference to be VALID, declared once.

MLPerf holds every submission to 99% of the fp32 reference's accuracy; with no labels at hand,
benchctl holds a cell to agreeing with the reference on 99% of its answers: top-1 labels for a
classifier, greedy tokens over the first ``TOKENS_COMPARED`` new tokens for a generator.
``--accuracy-tolerance`` sets the share.
"""

from .spec import DEFAULT_AGREEMENT  # noqa: F401 (declared with the rules it is one of)

TOKENS_COMPARED = 32


def accuracy_problem(accuracy: dict | None, required: float | None) -> str | None:
    """Why a cell's accuracy makes it INVALID, or None."""
    if not accuracy or not accuracy.get("available"):
        return None
    required = DEFAULT_AGREEMENT if required is None else required
    for key, what in (("top1_agreement", "top-1 labels"), ("token_agreement", "greedy tokens")):
        value = accuracy.get(key)
        if value is not None and value < required:
            return f"accuracy: {value:.1%} of {what} agree with the fp32 eager reference (needs {required:.0%})"
    return None
