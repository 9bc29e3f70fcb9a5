"""PTB-XL reader and the SCP-statement -> label proxy mapping, on the shipped tables and records."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vlm_ecg.errors import EcgFormatError
from vlm_ecg.io import read_ecg
from vlm_ecg.ptbxl import (
    INFARCT_STATEMENTS,
    ISCHAEMIA_STATEMENTS,
    VESSEL_BY_STATEMENT,
    PtbxlMapping,
    iter_ptbxl,
    map_scp_codes,
    ptbxl_confounders,
    read_ptbxl,
    read_ptbxl_table,
)


@pytest.mark.parametrize(
    ("codes", "stadium", "mapping", "triage", "culprit", "subtype"),
    [
        ({"IMI": 35.0, "ABQRS": 0.0, "SR": 0.0}, (), None, 1, "RCA", "IMI"),  # PTB-XL ecg_id 8
        ({"ILMI": 80.0, "SR": 0.0}, (), None, 1, "RCA", "ILMI"),  # inferolateral -> the inferior wall's RCA
        ({"IPLMI": 100.0}, (), None, 1, "RCA", "IPLMI"),
        ({"ASMI": 100.0}, (), None, 1, "LAD", "ASMI"),
        ({"ALMI": 50.0}, (), None, 1, "LAD", "ALMI"),  # anterolateral -> LAD (diagonals)
        ({"LMI": 50.0}, (), None, 1, "LCx", "LMI"),
        ({"PMI": 100.0}, (), None, 1, "LCx", "PMI"),
        ({"INJAS": 100.0}, (), None, 1, "LAD", "INJAS"),  # subendocardial injury counts as acute
        ({"INJLA": 50.0}, (), None, 1, "LCx", "INJLA"),
        ({"INJIL": 50.0}, (), None, 1, "RCA", "INJIL"),
        ({"IMI": 35.0, "ASMI": 80.0}, (), None, 1, "LAD", "ASMI"),  # the more likely territory wins
        ({"IMI": 50.0, "AMI": 50.0}, (), None, 1, None, "IMI"),  # a tie between vessels: culprit unknown
        ({"IMI": 100.0, "ISCAL": 100.0}, (), None, 1, "RCA", "IMI"),  # infarct outranks ischaemia
        ({"ISCAL": 50.0, "SR": 0.0}, (), None, -1, None, "ISCAL"),  # ischaemia alone: unknown by default
        ({"ISCAL": 50.0}, (), PtbxlMapping(ischaemia_triage=1), 1, "LAD", "ISCAL"),
        ({"ISCIN": 50.0}, (), PtbxlMapping(ischaemia_triage=1), 1, "RCA", "ISCIN"),
        ({"ISCLA": 50.0}, (), PtbxlMapping(ischaemia_triage=0), 0, "none", "ISCLA"),
        ({"ISC_": 100.0}, (), PtbxlMapping(ischaemia_triage=1), 1, None, "ISC_"),  # no territory
        ({"IMI": 100.0}, ("Stadium III", float("nan")), None, 0, "none", "IMI (old)"),
        ({"IMI": 100.0}, ("Stadium III", "Stadium III"), PtbxlMapping(old_mi_triage=-1), -1, None, "IMI (old)"),
        ({"IMI": 100.0}, ("Stadium II-III", float("nan")), None, 1, "RCA", "IMI"),
        ({"IMI": 100.0}, ("unknown", float("nan")), None, 1, "RCA", "IMI"),
        ({"IMI": 35.0, "NORM": 50.0}, (), PtbxlMapping(min_likelihood=50), 0, "none", "NORM"),  # IMI below cut
        ({"IMI": 0.0}, (), PtbxlMapping(min_likelihood=50), 1, "RCA", "IMI"),  # 0 = stated without likelihood
        ({"NORM": 100.0, "SR": 0.0}, (), None, 0, "none", "NORM"),
        ({"NST_": 100.0, "SR": 0.0}, (), None, 0, "none", "NST_"),
        ({"LVH": 50.0, "STE_": 0.0}, (), None, 0, "none", "LVH"),
        ({"SR": 0.0}, (), None, 0, "none", "SR"),
        ({}, (), None, 0, "none", ""),
    ],
)
def test_map_scp_codes(
    codes: dict, stadium: tuple, mapping: PtbxlMapping | None, triage: int, culprit: str | None, subtype: str
) -> None:
    labels = map_scp_codes(codes, infarction_stadium=stadium, mapping=mapping)
    assert (labels.triage, labels.culprit, labels.subtype) == (triage, culprit, subtype)
    assert all(math.isnan(s) for s in labels.stenosis)  # no angiography in PTB-XL


def test_every_ptbxl_infarct_and_territorial_ischaemia_statement_is_mapped(shared_data: Path) -> None:
    statements = pd.read_csv(shared_data / "ptbxl" / "scp_statements.csv", index_col=0)
    mi = set(statements.index[statements["diagnostic_class"] == "MI"])
    assert mi == set(INFARCT_STATEMENTS)  # every PTB-XL MI-class statement is an infarct for us, and no other
    assert mi <= set(VESSEL_BY_STATEMENT)
    ischaemia = {c for c in statements.index if c.startswith("ISC")}
    assert ischaemia == set(ISCHAEMIA_STATEMENTS)
    assert ischaemia - {"ISC_"} <= set(VESSEL_BY_STATEMENT)
    assert set(VESSEL_BY_STATEMENT) <= set(statements.index)


def test_read_ptbxl_shipped_records(shared_data: Path) -> None:
    root = shared_data / "ptbxl"
    records = read_ptbxl(root)
    assert [r.ecg.meta["ecg_id"] for r in records] == list(range(1, 11))
    by_id = {r.ecg.meta["ecg_id"]: r for r in records}
    imi = by_id[8]
    assert (imi.labels.triage, imi.labels.culprit, imi.labels.subtype) == (1, "RCA", "IMI")
    assert imi.labels.culprit_index == 3 and imi.id == "ptbxl_00008"
    assert (imi.confounders.age_years, imi.confounders.sex) == (48.0, "M")
    for ecg_id, rec in by_id.items():
        if ecg_id != 8:
            assert (rec.labels.triage, rec.labels.culprit, rec.labels.subtype) == (0, "none", "NORM"), ecg_id
    assert (by_id[1].confounders.age_years, by_id[1].confounders.sex) == (56.0, "F")
    assert by_id[1].ecg.meta["scp_codes"] == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    direct = read_ecg(root / "records100" / "00000" / "00008_lr")
    np.testing.assert_array_equal(imi.ecg.signal, direct.signal)
    assert imi.ecg.fs == 100 and imi.ecg.meta["strat_fold"] == 9 and imi.ecg.meta["dataset"] == "ptbxl"


def test_read_ptbxl_filters(shared_data: Path) -> None:
    root = shared_data / "ptbxl"
    assert [r.ecg.meta["ecg_id"] for r in read_ptbxl(root, folds=[9, 10])] == [8, 9, 10]
    assert [r.ecg.meta["ecg_id"] for r in iter_ptbxl(root, ids=[10, 8])] == [10, 8]
    with pytest.raises(EcgFormatError, match=r"ptbxl_database\.csv: ecg_id \[99\] not in the table"):
        read_ptbxl(root, ids=[99])
    with pytest.raises(ValueError, match="100 and 500 Hz"):
        read_ptbxl(root, sampling_rate_hz=250)


def test_missing_record_files_are_named(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "ptbxl"
    with pytest.raises(EcgFormatError, match=r"records500/00000/00001_hr\.hea: PTB-XL record of ecg_id 1"):
        read_ptbxl(root, sampling_rate_hz=500)  # the 500 Hz files are not shipped
    copy = tmp_path / "ptbxl"
    copy.mkdir()
    for name in ("ptbxl_database.csv", "scp_statements.csv"):
        shutil.copy(root / name, copy / name)
    with pytest.raises(EcgFormatError, match=r"00001_lr\.hea: PTB-XL record of ecg_id 1 \(filename_lr\) not found"):
        read_ptbxl(copy)
    (copy / "scp_statements.csv").unlink()
    with pytest.raises(EcgFormatError, match=r"scp_statements\.csv: file not found"):
        read_ptbxl(copy)
    with pytest.raises(EcgFormatError, match=r"ptbxl_database\.csv: file not found"):
        read_ptbxl(tmp_path)


def test_malformed_table_is_refused(shared_data: Path, tmp_path: Path) -> None:
    table = pd.read_csv(shared_data / "ptbxl" / "ptbxl_database.csv")
    table.loc[2, "scp_codes"] = "__import__('os').system('echo no')"
    table.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(EcgFormatError, match=r"bad\.csv: ecg_id 3: scp_codes .* is not a \{code: likelihood\} dict"):
        read_ptbxl_table(tmp_path / "bad.csv")
    table.drop(columns=["strat_fold"]).to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(EcgFormatError, match="columns strat_fold missing"):
        read_ptbxl_table(tmp_path / "cols.csv")


def test_mapping_on_the_cinc2021_ptbxl_rows(shared_data: Path) -> None:
    """HR06000-HR06009 are PTB-XL ecg_id 6000-6009 at 500 Hz (Challenge format): labels from their rows."""
    table = read_ptbxl_table(shared_data / "cinc2021" / "ptbxl_database_rows_HR06000-HR06009.csv")
    diagnostic = set(
        pd.read_csv(shared_data / "ptbxl" / "scp_statements.csv", index_col=0).query("diagnostic == 1").index
    )
    subtypes = {}
    for ecg_id, row in table.iterrows():
        labels = map_scp_codes(row["scp_codes"], diagnostic_statements=diagnostic)
        assert (labels.triage, labels.culprit) == (0, "none"), ecg_id
        subtypes[ecg_id] = labels.subtype
        conf = ptbxl_confounders(row)
        ecg = read_ecg(shared_data / "cinc2021" / f"HR0{ecg_id}")  # the Challenge header states age and sex too
        assert (conf.age_years, conf.sex) == (ecg.meta["age_years"], ecg.meta["sex"]), ecg_id
    assert subtypes[6001] == "NST_"
    assert {k for k, v in subtypes.items() if v != "NORM"} == {6001}  # 6003 (NORM:80, STACH) and 6005 (NORM:15)


def test_confounders_age_over_89_and_prior_mi() -> None:
    conf = ptbxl_confounders({"age": 300.0, "sex": 1, "height": float("nan"), "weight": 60.0, "scp_codes": {}})
    assert (conf.age_years, conf.sex, conf.extra) == (90.0, "F", {"age_over_89": True, "weight_kg": 60.0})
    old = ptbxl_confounders({"age": 70, "sex": 0, "scp_codes": {"IMI": 100.0}, "infarction_stadium1": "Stadium III"})
    assert (old.sex, old.prior_mi) == ("M", 1)
    acute = ptbxl_confounders({"age": 70, "sex": 0, "scp_codes": {"IMI": 100.0}, "infarction_stadium1": "Stadium I"})
    assert acute.prior_mi == -1 and math.isnan(ptbxl_confounders({}).age_years) and ptbxl_confounders({}).sex == ""


@pytest.mark.parametrize("kwargs", [{"min_likelihood": 120}, {"ischaemia_triage": 2}, {"old_mi_triage": "no"}])
def test_mapping_config_is_validated(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PtbxlMapping(**kwargs)


def test_read_ptbxl_at_500_hz(shared_data: Path, tmp_path: Path) -> None:
    """PTB-XL's 500 Hz layout, built from the Challenge copies of ecg_id 6000-6009 (HR06000-HR06009)."""
    root = tmp_path / "ptbxl"
    folder = root / "records500" / "06000"
    folder.mkdir(parents=True)
    shutil.copy(shared_data / "cinc2021" / "ptbxl_database_rows_HR06000-HR06009.csv", root / "ptbxl_database.csv")
    shutil.copy(shared_data / "ptbxl" / "scp_statements.csv", root / "scp_statements.csv")
    for ecg_id in range(6000, 6010):
        shutil.copy(shared_data / "cinc2021" / f"HR0{ecg_id}.hea", folder / f"0{ecg_id}_hr.hea")
        shutil.copy(shared_data / "cinc2021" / f"HR0{ecg_id}.mat", folder / f"HR0{ecg_id}.mat")  # named by the header
    records = read_ptbxl(root, sampling_rate_hz=500, folds=[10])
    assert [r.ecg.meta["ecg_id"] for r in records] == [6000, 6004]
    records = read_ptbxl(root, sampling_rate_hz=500)
    assert len(records) == 10 and all(r.ecg.fs == 500 and r.ecg.n_samples == 5000 for r in records)
    assert {r.ecg.meta["ecg_id"]: r.labels.subtype for r in records}[6001] == "NST_"
    for rec in records:
        assert (rec.confounders.age_years, rec.confounders.sex) == (rec.ecg.meta["age_years"], rec.ecg.meta["sex"])
        direct = read_ecg(shared_data / "cinc2021" / f"HR0{rec.ecg.meta['ecg_id']}")
        np.testing.assert_array_equal(rec.ecg.signal, direct.signal)
