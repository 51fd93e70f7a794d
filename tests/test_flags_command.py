"""``rcsweep flags``: the committed FashionMNIST study (results.csv and verify.csv, no models or
records) brought up to date with the installed rules, as docs/results/fmnist_2000 was."""
import shutil
from pathlib import Path

import pandas as pd
import pytest

from rcsweep.cli import main
from rcsweep.results import load_results

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "results" / "fmnist_2000"
NEW_COLUMNS = ["flags", "degenerate", "degenerate_reason", "verified_robust_acc", "majority_pred_frac",
               "quant_scheme"]


def test_flags_of_the_committed_study_from_its_csvs(tmp_path, capsys):
    folder = shutil.copytree(COMMITTED, tmp_path / "fmnist_2000", ignore=shutil.ignore_patterns("report"))
    raw = pd.read_csv(folder / "results.csv", dtype=str)
    raw.drop(columns=[c for c in NEW_COLUMNS if c in raw], inplace=True)  # as the file was before these columns
    raw.loc[raw["trial_id"] == "2b0a0328", ["suspect", "suspect_reason"]] = ["False", ""]
    raw.to_csv(folder / "results.csv", index=False)

    assert main(["flags", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "112 from results.csv alone" in out and "112 weak_eval" in out
    df = load_results(folder).set_index("trial_id")
    # constant classifiers of the 90%-pruned cells: 9.4% on 500 images, within chance's interval
    for tid in ("5ab03997", "d6457b00", "e510beff", "cab76de1", "9bd7fd1d"):
        assert df.loc[tid, "degenerate"] and "chance 0.100" in df.loc[tid, "degenerate_reason"], tid
    assert not df.loc["3031154c", "degenerate"]  # 50.6% clean after clean fine-tuning
    # verify.csv's verdict reaches the row: torchattacks 0.370 against rcsweep's 0.385 on 200 images
    assert df.loc["2b0a0328", "suspect"] and df.loc["2b0a0328", "suspect_reason"].startswith("verify: ")
    assert df.loc["2b0a0328", "verified_robust_acc"] == pytest.approx(0.37)
    assert set(df.loc[df["compression"] == "quant", "quant_scheme"]) == {"mse_channel"}
    assert "weak_eval" in df.loc["5ab03997", "flags"].split(";")  # 1 restart: below the floor
    # a second run changes nothing
    assert main(["flags", str(folder)]) == 0
    assert "flags changed on 0 trials" in capsys.readouterr().out
