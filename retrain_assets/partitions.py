"""Partitions: one dynamic partition per landed batch (added by the landing sensor)."""

import functools

import dagster as dg

from retrain_assets.names import SINGLE, ModelNames


@functools.lru_cache(maxsize=None)
def batch_partitions_for(names: ModelNames) -> dg.DynamicPartitionsDefinition:
    """The model's batch partitions (``batches``, or ``<model>__batches`` in a fleet)."""
    return dg.DynamicPartitionsDefinition(name=names.partitions_name)


batch_partitions = batch_partitions_for(SINGLE)
"""Keys are batch ids. A key added by hand in the UI is not trusted: raw_data checks it with the landing
rule for file names (core.paths.check_batch_id) before it reads or moves anything."""
