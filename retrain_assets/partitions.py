"""Partitions: one dynamic partition per landed batch (added by the landing sensor)."""

import dagster as dg

from retrain_assets.constants import BATCH_PARTITIONS

batch_partitions = dg.DynamicPartitionsDefinition(name=BATCH_PARTITIONS)
