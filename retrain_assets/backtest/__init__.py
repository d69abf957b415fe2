"""Policy backtester: replay a stream of batches under several retrain policies and compare them.

``python -m retrain_assets.backtest`` replays batches in arrival order — a seeded synthetic demo
stream by default, or the files of a landing folder with ``--landing`` — with the same ``core/``
functions the platform runs (no Dagster, no daemon, no MLflow), under five policies by default
(``--policies`` picks others):

* ``never`` — keep the first model for ever;
* ``every_batch`` — retrain after every batch;
* ``every_batch_newest`` — retrain after every batch on the newest batch only (not run by default);
* ``every_k`` — retrain after every ``k``-th batch (a cron job);
* ``textbook`` — retrain when any feature's two-sample KS / chi-square test against the deployed
  model's training data gives an uncorrected p < 0.05, or when the deployed model's accuracy on
  the labelled batch is below 0.85 (classification);
* ``platform`` — the platform as its sensors, schedule and gates act: per batch, what
  ``drift_report`` (:func:`~retrain_assets.core.monitoring.monitor_batch`) and
  ``production_metrics`` (:func:`~retrain_assets.core.watch.measure_batch`, with the
  post-promotion watch and its rollback) compute, merged into a
  :class:`~retrain_assets.core.policy.BatchSignal`; then
  :func:`~retrain_assets.core.policy.next_action` (the sensors' own decision), the safety-net schedule
  (``automation.schedule_cron`` ticks, :func:`~retrain_assets.core.policy.schedule_due`) and
  :func:`~retrain_assets.core.policy.decide` with the configured ``automation.*`` controls. A
  candidate replaces the deployed model only if it passes
  :func:`~retrain_assets.core.gates.champion_comparison` against it on the newest labelled batch
  (the holdout), as in production (the other five gates are not replayed). The other policies
  replace the model unconditionally, as a cron script does.

For each batch ``i`` the deployed model is first scored on it (the metric the policy *earned* on
that batch), then the policy decides whether to retrain having seen it. A retrain trains, like the
product, on every labelled batch so far except the newest, which is the holdout
(:func:`~retrain_assets.core.training_window.select_training_window` with the configured window); the
platform's retrains choose their window among variants by evidence, as ``candidate_model`` does
(:func:`~retrain_assets.core.retrain.fit_candidate`), and are charged every variant's fit. The first
model is trained on the first ``--initial`` batches for every policy and is not counted as a
retrain. Replayed batches have no wall-clock time: the clock advances one day per batch, so the
cooldown and budget of the policy work as they would with daily batches.

A **false retrain** is a retrain whose candidate was not better than the model deployed when it
started by at least :data:`FALSE_RETRAIN_MARGIN` on the next labelled batch (both scored on the
same rows) — compute spent for nothing. For the platform, candidates blocked by the gate are also
counted separately (a blocked candidate is a false retrain when it would not have helped either).

The output is a Markdown table per policy (mean and final-third metric, retrains, training
seconds, false retrains), the verdict on the platform's targets, a PNG of the metric per batch
per policy and a CSV of the same numbers. Example::

    python -m retrain_assets.backtest                       # 30 demo batches x 2000 rows
    python -m retrain_assets.backtest --batches 8 --rows 400 --out /tmp/bt.png
    python -m retrain_assets.backtest --landing data/landing
"""

from retrain_assets.backtest.policies import policy_settings, run_policy
from retrain_assets.backtest.replay import FALSE_RETRAIN_MARGIN, PolicyRun, Replay
from retrain_assets.backtest.report import DEFAULT_POLICIES, POLICIES, BacktestResult, format_report, run_backtest
from retrain_assets.backtest.stream import DEFAULT_BATCHES, DEFAULT_INITIAL, DEFAULT_ROWS, Batch, demo_stream, landing_stream

__all__ = [
    "DEFAULT_BATCHES", "DEFAULT_INITIAL", "DEFAULT_POLICIES", "DEFAULT_ROWS", "FALSE_RETRAIN_MARGIN", "POLICIES", "BacktestResult", "Batch",
    "PolicyRun", "Replay", "demo_stream", "format_report", "landing_stream", "policy_settings", "run_backtest",
    "run_policy",
]
