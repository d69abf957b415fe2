from setuptools import find_packages, setup

# The Dagster family is pinned together: dagster-mlflow 0.29.27 requires dagster==1.13.27 and
# pandas<3; without these pins pip silently falls back to dagster-mlflow 0.19.
DAGSTER = "1.13.27"
DAGSTER_LIBS = "0.29.27"

setup(
    name="retrain_assets",
    version="0.1.0",
    description="Keeps machine-learning models accurate: validated data, drift, gated retraining on Dagster.",
    packages=find_packages(exclude=["retrain_assets_tests*"]),
    package_data={"retrain_assets.core": ["warehouse.sql"]},
    python_requires=">=3.11,<3.12",
    install_requires=[
        f"dagster=={DAGSTER}",
        f"dagster-webserver=={DAGSTER}",
        f"dagster-graphql=={DAGSTER}",
        f"dagster-dg-cli=={DAGSTER}",  # the `dg` CLI Dagster now recommends (dg dev, dg check defs, dg launch)
        f"dagster-mlflow=={DAGSTER_LIBS}",
        f"dagster-duckdb=={DAGSTER_LIBS}",
        f"dagster-postgres=={DAGSTER_LIBS}",  # Dagster storage on PostgreSQL (deploy/postgres)
        "mlflow>=3.17,<3.18",
        "great-expectations==1.24.1",
        "pandas>=2.3,<3",
        "numpy>=2.0,<3",
        "scikit-learn>=1.9,<1.10",
        "scipy>=1.14,<2",
        "duckdb>=2.0,<2.1",
        "pyarrow>=17",
        "pydantic>=2.7,<3",
        "pyyaml>=6",
        "matplotlib>=3.8",  # drift plots saved under storage.root and linked from the UI
        "river>=0.26,<0.27",  # ADWIN, DDM, Page-Hinkley: maintained streaming drift detectors
    ],
    extras_require={
        # A Kubernetes Job per step (automation.executor: k8s) or a Celery task per step on workers
        # reached through a Redis broker (automation.executor: celery). dagster-dask 0.29.27 is not
        # offered: distributed cannot serialize Dagster 1.13's run records (see retrain_assets/executors.py).
        "scale": [f"dagster-k8s=={DAGSTER_LIBS}", f"dagster-celery[redis]=={DAGSTER_LIBS}"],
        "dev": [
            f"dagster-k8s=={DAGSTER_LIBS}",
            f"dagster-celery[redis]=={DAGSTER_LIBS}",  # test_celery runs real Celery workers on a real Redis
            "jsonschema",  # test_deploy_k8s checks deploy/k8s/values.yaml against its schema (pinned in constraints.txt)
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "pytest-xdist>=3.8",  # the suite is mostly waiting on subprocesses: two workers halve it
            # Drives Debian's Chromium (/usr/bin/chromium) in the UI test; no browser download.
            "playwright>=1.65,<1.66",
        ],
    },
)
