"""Data sets: building from records, seeded stratified splits, save/load, the `vlm-ecg synth` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from vlm_ecg.data import (
    COLUMNS,
    build_dataset,
    load_dataset_dir,
    row_to_record,
    save_dataset,
    split_dataset,
    write_synthetic_dataset,
)
from vlm_ecg.ecg import Ecg
from vlm_ecg.errors import EcgFormatError
from vlm_ecg.labels import CULPRITS, Confounders, Labels, Record
from vlm_ecg.synth import make_cohort


@pytest.fixture(scope="module")
def cohort() -> list[Record]:
    return make_cohort(n=120, prevalence=0.3, seed=3)


def test_rows_round_trip_records(cohort):
    ds = build_dataset(cohort[:10], chunk_size=4)
    assert ds.column_names == list(COLUMNS)
    assert len(ds) == 10
    for record, row in zip(cohort[:10], ds):
        back = row_to_record(row)
        assert back.id == record.id
        np.testing.assert_array_equal(back.ecg.signal, record.ecg.signal)
        assert back.labels.triage == record.labels.triage
        assert back.labels.culprit == record.labels.culprit
        np.testing.assert_allclose(back.labels.stenosis, record.labels.stenosis, rtol=1e-6)
        assert back.confounders.sex == record.confounders.sex
        assert back.confounders.age_years == pytest.approx(record.confounders.age_years, rel=1e-6)


def test_records_are_standardised_to_500_hz_10_s():
    x = np.sin(np.linspace(0, 60, 2000))[None].repeat(12, 0) * 0.5 + np.arange(12)[:, None] * 0.01
    rec = Record(Ecg(x, 200.0, {"id": "r200", "source": "test"}), Labels(triage=0, culprit="none"), Confounders())
    ds = build_dataset([rec])
    assert np.asarray(ds[0]["signal"]).shape == (12, 5000)
    assert ds[0]["fs"] == 500
    assert ds[0]["culprit"] == CULPRITS.index("none")


def test_duplicate_ids_and_empty_input_are_refused(cohort):
    with pytest.raises(ValueError, match="duplicate record id"):
        build_dataset([cohort[0], cohort[0]])
    with pytest.raises(ValueError, match="no records"):
        build_dataset([])


def test_split_is_seeded_disjoint_and_stratified(cohort):
    ds = build_dataset(cohort)
    a = split_dataset(ds, 0.2, 0.2, seed=1)
    b = split_dataset(ds, 0.2, 0.2, seed=1)
    c = split_dataset(ds, 0.2, 0.2, seed=2)
    ids = {name: list(split["id"]) for name, split in a.items()}
    assert ids == {name: list(split["id"]) for name, split in b.items()}
    assert ids != {name: list(split["id"]) for name, split in c.items()}
    assert sum(map(len, ids.values())) == len(ds) == len(set().union(*map(set, ids.values())))
    overall = np.mean(ds["triage"])
    for split in a.values():  # prevalence kept within one record of the overall rate
        assert abs(np.mean(split["triage"]) - overall) <= 1.0 / len(split) + 1e-9
        assert set(split["culprit"]) >= {0}


def test_save_load_and_bad_folders(tmp_path, cohort):
    splits = split_dataset(build_dataset(cohort[:40]), seed=0)
    save_dataset(splits, tmp_path / "ds")
    back = load_dataset_dir(tmp_path / "ds")
    assert {k: len(v) for k, v in back.items()} == {k: len(v) for k, v in splits.items()}
    with pytest.raises(EcgFormatError, match="does not exist"):
        load_dataset_dir(tmp_path / "nope")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("not a data set")
    with pytest.raises(EcgFormatError, match="junk"):
        load_dataset_dir(tmp_path / "junk")
    splits["train"].remove_columns(["age"]).save_to_disk(str(tmp_path / "noage"))
    with pytest.raises(EcgFormatError, match="age"):
        load_dataset_dir(tmp_path / "noage")


def test_synth_writes_same_data_for_same_seed(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", n=30, seed=5, progress=False)
    b = write_synthetic_dataset(tmp_path / "b", n=30, seed=5, progress=False)
    for name in a:
        assert a[name]["id"] == b[name]["id"]
        np.testing.assert_array_equal(np.asarray(a[name]["signal"]), np.asarray(b[name]["signal"]))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_synth_command_writes_dataset_and_wfdb(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlm_ecg",
            "synth",
            "--n",
            "12",
            "--out",
            str(tmp_path / "ds"),
            "--wfdb",
            str(tmp_path / "wfdb"),
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    splits = load_dataset_dir(tmp_path / "ds")
    assert sum(len(s) for s in splits.values()) == 12
    assert len(list((tmp_path / "wfdb").glob("*.hea"))) == 12
    info = subprocess.run(
        [sys.executable, "-m", "vlm_ecg", "info", str(next((tmp_path / "wfdb").glob("*.hea")))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert info.returncode == 0, info.stderr
    assert "500 Hz" in info.stdout and "V6" in info.stdout
