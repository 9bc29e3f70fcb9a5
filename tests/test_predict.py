"""Batch prediction: `Predictor.predict_files` and `vlm-ecg predict` over files and folders, errors as rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from vlm_ecg.cli import main
from vlm_ecg.io import write_ecg
from vlm_ecg.labels import CULPRITS, Confounders
from vlm_ecg.predict import ROW_FIELDS, Predictor, ecg_inputs
from vlm_ecg.synth import make_examples


@pytest.fixture(scope="module")
def predictor(smoke_run) -> Predictor:
    return Predictor.from_pretrained(smoke_run)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """Three good ECGs in three formats (one WFDB record in a sub-folder) and four bad files, plus a README."""
    root = tmp_path_factory.mktemp("mixed")
    examples = make_examples(1)
    write_ecg(examples["LAD"].ecg, root / "lad.npz")
    (root / "sub").mkdir()
    write_ecg(examples["RCA"].ecg, root / "sub" / "rca.hea")
    write_ecg(examples["none"].ecg, root / "none.csv")
    (root / "no_rate.csv").write_text("I,II,V1\n0.1,0.2,0.3\n0.1,0.2,0.3\n")
    (root / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    (root / "orphan.dat").write_bytes(bytes(240))
    (root / "truncated.npz").write_bytes((root / "lad.npz").read_bytes()[:100])
    (root / "README.md").write_text("not an ECG")
    return root


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_folder_with_good_and_bad_files_gets_one_row_per_ecg(mixed_folder, predictor, smoke_run, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    status = main(["predict", str(mixed_folder), "--run", str(smoke_run), "--out", str(out), "--no-progress"])
    assert status == 1  # some files failed, but every file has its row
    rows = _read_csv(out)
    assert list(rows[0]) == list(ROW_FIELDS)
    by_name = {Path(r["path"]).name: r for r in rows}
    good, bad = ("lad.npz", "rca.hea", "none.csv"), ("no_rate.csv", "broken.npz", "orphan.dat", "truncated.npz")
    assert set(by_name) == {*good, *bad}
    for name in bad:
        assert name in by_name[name]["error"] and by_name[name]["triage_prob"] == ""
    for name in good:
        row = by_name[name]
        assert row["error"] == ""
        single = predictor.predict(row["path"])
        assert float(row["triage_prob"]) == pytest.approx(single.triage_prob, abs=1e-5)
        assert float(row["triage_prob_adjusted"]) == pytest.approx(single.triage_prob_adjusted, abs=1e-5)
        assert int(row["decision"]) == int(single.decision)
        assert sum(float(row[f"p_{c}"]) for c in CULPRITS) == pytest.approx(1.0, abs=1e-4)
        assert row["culprit"] == single.culprit
    assert by_name["rca.hea"]["id"] == "rca"
    err = capsys.readouterr().err
    assert "predicted 3 of 7 ECGs" in err and all(f"{name}:" in err for name in bad)


def test_ecg_inputs_lists_each_wfdb_record_once(mixed_folder):
    found = {p.name for p in ecg_inputs([mixed_folder])}
    assert "rca.dat" not in found and "rca.hea" in found and "README.md" not in found
    record = mixed_folder / "sub" / "rca"
    named = ecg_inputs([record.with_suffix(".hea"), record.with_suffix(".dat"), mixed_folder / "README.md"])
    assert [p.name for p in named] == ["rca.hea", "README.md"]  # a file named explicitly is always predicted


def test_file_demographics_set_the_stratum(predictor, tmp_path):
    ecg = make_examples(2)["LCx"].ecg
    ecg.meta.update(age_years=71.0, sex="F")
    path = write_ecg(ecg, tmp_path / "patient.npz")
    expected = predictor.stratum_of(Confounders(age_years=71.0, sex="F"))
    [with_meta] = predictor.predict_files([path], progress=False)
    [without] = predictor.predict_files([path], use_file_confounders=False, progress=False)
    assert int(with_meta["stratum"]) == expected != -1 and int(without["stratum"]) == -1
    # the adjusted probability marginalises the stratum, so it does not depend on who the patient is
    assert float(with_meta["triage_prob_adjusted"]) == pytest.approx(float(without["triage_prob_adjusted"]), abs=1e-5)


def test_predict_prints_the_table_without_out(mixed_folder, smoke_run, capsys):
    assert main(["predict", str(mixed_folder / "lad.npz"), "--run", str(smoke_run), "--no-progress"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["triage_prob"]) <= 1.0 and np.isfinite(float(rows[0]["p_LAD"]))


def test_missing_run_and_missing_default_run_say_what_to_do(tmp_path, monkeypatch, capsys):
    ecg = tmp_path / "x.npz"
    assert main(["predict", str(ecg), "--run", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(ecg)]) == 2
    assert "accelerate launch finetune" in capsys.readouterr().err
