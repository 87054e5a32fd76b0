"""Features: the one row normalization and the fitted transformations, recorded with the model.

Training, evaluation, the pyfunc model and serving all use this package, and nothing else
cleans a row:

- ``normalize``: ``RowSpec``, how a raw value becomes a model input (numbers, canonical
  category texts, missing markers), with the problems it finds;
- ``pii``: the PII policy (drop, keyed hash, generalize), applied at ingest and to raw
  requests with the same code;
- ``stats``: one-pass partial statistics with an exact merge;
- ``fitted``: ``FittedFeatures``, what the training split taught (means, scales,
  vocabularies) and ``encode``, the one function from rows to model inputs.

No stage owns it, so stages share it without importing each other.
"""

from raymlops.features.fitted import UNKNOWN, FittedFeatures, fit_frames, merge_partials
from raymlops.features.normalize import Normalized, Problem, RowSpec, canonical_text
from raymlops.features.stats import MISSING, PartialStats, category_strings

__all__ = ["MISSING", "UNKNOWN", "FittedFeatures", "Normalized", "PartialStats", "Problem",
           "RowSpec", "canonical_text", "category_strings", "fit_frames", "merge_partials"]
