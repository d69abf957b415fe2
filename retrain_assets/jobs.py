"""Jobs."""

import dagster as dg

from retrain_assets.constants import DRIFT_REPORT, INGEST_JOB, RAW_DATA, VALIDATED_DATA
from retrain_assets.partitions import batch_partitions

ingest_job = dg.define_asset_job(
    name=INGEST_JOB,
    selection=dg.AssetSelection.assets(RAW_DATA, VALIDATED_DATA, DRIFT_REPORT),
    partitions_def=batch_partitions,
    description=(
        "Ingest one landed batch (raw_data), validate it (validated_data, blocking gate) and compare it with "
        "the reference (drift_report)."
    ),
)
