"""The estimators a config may name (``model.estimator``) and how one is built with its seed and
parameters. A leaf module: the settings check a config against it without loading the pipeline code.
Pure Python (scikit-learn)."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

from retrain_assets.core.schema import Task


ESTIMATORS: dict[str, dict[str, Callable[..., BaseEstimator]]] = {
    "classification": {
        "hist_gradient_boosting": HistGradientBoostingClassifier,
        "random_forest": RandomForestClassifier,
        # lbfgs stops at 100 iterations by default and warns on one-hot + scaled inputs now and then.
        "logistic_regression": partial(LogisticRegression, max_iter=1000),
    },
    "regression": {
        "hist_gradient_boosting": HistGradientBoostingRegressor,
        "random_forest": RandomForestRegressor,
        "ridge": Ridge,
        "linear": LinearRegression,
    },
}
"""Estimator names per task → builders of an unfitted estimator with our defaults."""


def _check_task(task: str) -> None:
    if task not in ESTIMATORS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(ESTIMATORS)}")


def make_estimator(task: Task, estimator: str, params: Mapping[str, Any] | None = None, seed: int = 0) -> BaseEstimator:
    """One unfitted estimator with ``random_state=seed`` (where it has one) and ``params`` applied.

    Args:
        task: classification or regression.
        estimator: A name from ``ESTIMATORS[task]``.
        params: Constructor parameters (e.g. ``{"max_depth": 6}``); the seed is given by ``seed``.
        seed: Random seed.

    Returns:
        The estimator.

    Raises:
        ValueError: For an unknown task or estimator name (listing the valid ones), an unknown
            parameter (listing the estimator's parameters), or ``random_state`` in ``params``.
    """
    _check_task(task)
    builders = ESTIMATORS[task]
    if estimator not in builders:
        other = "regression" if task == "classification" else "classification"
        hint = f" ({estimator!r} is a {other} estimator)" if estimator in ESTIMATORS[other] else ""
        raise ValueError(
            f"unknown {task} estimator {estimator!r}{hint}; choose one of {sorted(builders)}"
        )
    model = builders[estimator]()
    valid = model.get_params(deep=False)
    params = dict(params or {})
    if "random_state" in params:
        raise ValueError(f"pass the seed as seed={params['random_state']!r}, not as params['random_state']")
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for {estimator} ({type(model).__name__}); "
            f"valid parameters: {sorted(valid)}"
        )
    if "random_state" in valid:
        params["random_state"] = seed
    return model.set_params(**params)
