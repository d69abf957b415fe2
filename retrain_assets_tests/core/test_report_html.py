"""The HTML drift report fits a laptop screen: the "why" columns first, drifted features first, every
column behind a fold."""

import re

import numpy as np
import pandas as pd

from retrain_assets.core.report import write_html_report


def test_the_report_shows_why_first_and_folds_the_rest(tmp_path):
    table = pd.DataFrame({
        "feature": ["age", "charges", "region"], "kind": ["numeric", "numeric", "categorical"],
        "statistic": [0.01, 0.3, 0.02], "p_adjusted": [0.9, 1e-9, 0.5], "drifted": [False, True, False],
        "reason": ["no change", "1.0σ shift (Wasserstein 0.98 ≥ 0.25), p_adj 1e-09", "no change"],
        **{f"extra_{i}": np.arange(3) for i in range(30)},
    })
    path = write_html_report(tmp_path / "r.html", title="Drift report", summary="drift in 1 of 3 features",
                             table=table, columns=("feature", "drifted", "reason", "p_adjusted"))
    text = path.read_text()
    main = text[text.index("<h2>Per feature"):text.index("<details>")]
    assert re.findall(r"<th>([^<]+)</th>", main) == ["feature", "drifted", "reason", "p_adjusted"]
    rows = re.findall(r"<td class='feature'>([^<]+)</td>", main)
    assert rows == ["charges", "age", "region"]  # drifted first
    assert "1 of 3 drifted, listed first" in main and "class='drifted'" in main
    fold = text[text.index("<details>"):]
    assert "All 36 columns" in fold and "<th>extra_29</th>" in fold
    assert "max-width:1200px" in text and "td.reason{max-width:36em" in text
