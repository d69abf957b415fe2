"""The promotion gates' default thresholds, each with why. A leaf module: the gates
(:mod:`~retrain_assets.core.gates`, :mod:`~retrain_assets.core.slice_gate`,
:mod:`~retrain_assets.core.stability_gates`) and the settings (``gates.*``) read them here."""

from __future__ import annotations


DEFAULT_FLOORS: dict[str, float | None] = {"roc_auc": 0.6, "accuracy": 0.6, "f1": 0.3, "rmse": None, "mae": None}
"""Smallest acceptable value per metric. roc_auc 0.6: clearly better than ranking at random (0.5).
accuracy 0.6 and f1 0.3: a sanity floor only — with imbalanced classes the majority-class accuracy
is higher than 0.6, so set a floor from your data. rmse/mae: none, their scale is the target's."""


DEFAULT_COMPARISON_TOLERANCE = 0.02
"""How much worse than the champion the candidate may be (lower 95% bound of the paired
difference): two points of roc_auc/accuracy/f1, or 2 % of the champion's rmse/mae. The interval
has to fit the holdout: on the demo's 800-row holdout two equally good models give a difference
of ±0.005 with an interval ±0.01 wide, so a 0.005 tolerance blocked about half of all equally
good retrains (measured); 0.02 blocks ~2.5% of them and every candidate worse by ≥0.03."""


DEFAULT_BOOTSTRAP_RESAMPLES = 1000
"""Paired bootstrap resamples: the 2.5 % quantile of 1000 draws moves by ~0.1 SE between seeds."""


DEFAULT_CONFIDENCE = 0.95
"""Two-sided coverage of the difference's interval; the gate uses its lower bound."""


DEFAULT_SLICE_TOLERANCE = 0.02
"""How much worse than the champion the candidate may be on one slice, when significantly worse."""


DEFAULT_SLICE_MIN_ROWS = 50
"""Slices with fewer holdout rows are listed as skipped, not judged."""


DEFAULT_SLICE_MIN_CLASS_ROWS = 20
"""Classification slices need this many rows of each class to be judged: an AUC over 3 positives
(the demo's two_year contracts: 203 rows, 3 churners) moved by 0.18 between two equally good
models, and a bootstrap of those 3 rows cannot show how unstable that is."""


DEFAULT_SLICE_BOOTSTRAP_RESAMPLES = 300
"""Paired bootstrap resamples per slice (only the sign of the interval's upper end is used)."""


DEFAULT_MAX_SLICES = 2
"""How many categorical columns :func:`default_slice_columns` picks."""


DEFAULT_MAX_SLICE_LEVELS = 20
"""Columns with more levels are not picked as default slices (their slices would be tiny)."""


DEFAULT_MAX_FLIP_RATE = 0.15
"""Largest share of holdout predictions that may differ from the champion's. Two equally good
gradient-boosted models retrained a batch apart on the demo data flip 7–10% of 800 holdout
predictions (rows near the 0.5 threshold); 0.15 lets such retrains through and stops a model
that changes its mind on one customer in six or more."""


DEFAULT_REGRESSION_CHANGE = 0.1
"""A regression prediction "flips" when it moves by more than 10 % of the champion's prediction
(or of the champion's median absolute prediction, when that is larger: near-zero predictions
would otherwise count every tiny change)."""


DEFAULT_MIN_HOLDOUT_ROWS = 100
"""Fewest holdout rows: the paired interval of a difference of AUCs on fewer rows is too wide to
tell a better candidate from a worse one."""


DEFAULT_LATENCY_BUDGET_MS_PER_1000 = 500.0
"""Milliseconds to score 1000 rows in a fresh process; the demo's models take 5–60 ms."""


DEFAULT_MIN_ROWS = 200
"""Fewest labelled training rows: below this a holdout-based comparison is mostly noise."""


DEFAULT_MIN_ROWS_PER_CLASS = 20
"""Fewest rows of each class: a classifier cannot learn (nor be judged on) a class it barely saw."""
