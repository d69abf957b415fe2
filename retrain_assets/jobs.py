"""Jobs."""

import dagster as dg

from retrain_assets.constants import INGEST_JOB, RAW_DATA, VALIDATED_DATA
from retrain_assets.partitions import batch_partitions

ingest_job = dg.define_asset_job(
    name=INGEST_JOB,
    selection=dg.AssetSelection.assets(RAW_DATA, VALIDATED_DATA),
    partitions_def=batch_partitions,
    description="Ingest one landed batch into raw_data and validate it into validated_data (blocking gate included).",
)
