"""Partitions: one dynamic partition per landed batch (added by the landing sensor)."""

import dagster as dg

from retrain_assets.constants import BATCH_PARTITIONS

batch_partitions = dg.DynamicPartitionsDefinition(name=BATCH_PARTITIONS)
"""Keys are batch ids. A key added by hand in the UI is not trusted: raw_data checks it with the landing
rule for file names (core.paths.check_batch_id) before it reads or moves anything."""
