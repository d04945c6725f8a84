"""The cross-device speedup report, in the seed's form, with more after its Conclusion.

``sections.py`` lists the sections in order, each one function over the report's context
(``context.py``); the Interpretation's sentences are in ``interpretation.py``, the System
Information in ``system.py``."""

from .context import MD_ROWS, model_info, run_baseline, run_budget, run_pools
from .sections import SECTIONS, build, method_lines

__all__ = ["MD_ROWS", "SECTIONS", "build", "method_lines", "model_info", "run_baseline", "run_budget", "run_pools"]
