"""``python -m retrain_assets.backtest``."""

import sys

from retrain_assets.backtest.cli import main

sys.exit(main())
