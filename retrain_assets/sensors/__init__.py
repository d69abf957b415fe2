"""Every sensor of retrain-assets, one module per concern: landing (new files, retries, late labels),
retrain (drift, performance, rollback), requests (a person's retrain request), alerts (failed runs, approvals)."""
