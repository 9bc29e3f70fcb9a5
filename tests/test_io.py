"""Readers and writers: every real record under ../shared/data against wfdb, a bad-input corpus, round trips."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import wfdb

from vlm_ecg.ecg import LEADS, Ecg, normalize_lead_name
from vlm_ecg.errors import EcgError, EcgFormatError, EcgLeadError, EcgSignalError
from vlm_ecg.io import detect_format, inspect_ecg, read_ecg, read_raw, unit_to_mv, write_ecg

# Chapman-Shaoxing records whose V2, V4 and V6 are recorded as constant zero: read_ecg refuses them as flat.
FLAT_IN_SHARED_DATA = {"cinc2021/JS20004": "V2, V4, V6", "cinc2021/JS20008": "V2, V4, V6"}


def _ecg(fs: float = 500.0, duration_s: float = 10.0, seed: int = 0, source: str = "synthetic") -> Ecg:
    """A consistent 12-lead `Ecg` of sines (limb leads obey Einthoven/Goldberger)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(fs * duration_s))) / fs

    def wave() -> np.ndarray:
        return sum(rng.uniform(0.1, 0.6) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (1.2, 3.1, 9.0))

    i, ii = wave(), wave()
    limb = [i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2]
    return Ecg(np.stack(limb + [wave() for _ in range(6)]), fs, {"id": "syn", "source": source})


def _write_csv(path: Path, header: list[str], rows: list[list[object]], comments: tuple[str, ...] = ()) -> Path:
    with open(path, "w", newline="") as fh:
        fh.writelines(f"# {c}\n" for c in comments)
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _csv_of(ecg: Ecg, path: Path, time: bool = True, names: list[str] | None = None) -> Path:
    names = names or list(LEADS)
    header = (["time_s"] if time else []) + names
    rows = [([f"{k / ecg.fs:.6f}"] if time else []) + [f"{v:.6f}" for v in col] for k, col in enumerate(ecg.signal.T)]
    return _write_csv(path, header, rows)


def _records(shared_data: Path) -> list[str]:
    with open(shared_data / "manifest.csv", newline="") as fh:
        names = [row["record_path"] for row in csv.DictReader(fh)]
    images = sorted(p.relative_to(shared_data).with_suffix("").as_posix() for p in shared_data.glob("images/**/*.hea"))
    return names + images


def _sha256_tree(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ real data
def test_every_shared_record_matches_wfdb(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(shared_data)  # relative paths, as a user types them
    records = _records(shared_data)
    assert len(records) >= 98  # 88 in the manifest + 10 Challenge-2024 headers in images/
    before = _sha256_tree(shared_data)
    max_diff, n_read = 0.0, 0
    for name in records:
        direct = wfdb.rdrecord(name)
        raw = read_raw(name)
        assert raw.leads == direct.sig_name and raw.fs == direct.fs, name
        np.testing.assert_array_equal(raw.signal, direct.p_signal.T, err_msg=name)  # units are mV throughout
        if name in FLAT_IN_SHARED_DATA:
            with pytest.raises(EcgSignalError, match=rf"lead\(s\) {FLAT_IN_SHARED_DATA[name]} are flat") as info:
                read_ecg(name)
            assert str(info.value).startswith(f"{name}: ")
            assert not inspect_ecg(name).ok
            continue
        ecg = read_ecg(name)
        n_read += 1
        assert ecg.fs == direct.fs and ecg.n_samples == direct.sig_len, name
        assert ecg.meta["source"] == name and ecg.meta["format"] == "wfdb"
        normalised = any("normalised per lead" in note for note in ecg.meta["notes"])
        assert normalised == name.startswith("ludb/"), name  # LUDB 1.0.1 scales every lead to 1 mV p-p
        for col, lead in enumerate(direct.sig_name):
            if lead.lower() in ("vx", "vy", "vz"):
                continue  # Frank leads of the PTB database are dropped
            ours = ecg.signal[LEADS.index(normalize_lead_name(lead))]
            diff = float(np.abs(ours - direct.p_signal[:, col]).max())
            max_diff = max(max_diff, diff)
            assert diff < 1e-5, f"{name} lead {lead}: {diff} mV"
    assert n_read == len(records) - len(FLAT_IN_SHARED_DATA)
    assert max_diff < 1e-5
    assert _sha256_tree(shared_data) == before  # reading never modifies, adds or deletes a file


def test_record_path_forms_and_header_facts(shared_data: Path) -> None:
    base = shared_data / "cinc2021" / "JS00001"
    ref = read_ecg(f"{base}.hea")
    for form in (base, f"{base}.mat", Path(f"{base}.hea")):
        np.testing.assert_array_equal(read_ecg(form).signal, ref.signal)
    assert ref.meta["id"] == "JS00001" and ref.meta["age_years"] == 85 and ref.meta["sex"] == "M"
    assert ref.meta["header"]["dx"] == "164889003,59118001,164934002"
    ptb = read_ecg(shared_data / "ptbdb" / "patient001" / "s0010_re.dat")
    assert ptb.fs == 1000 and ptb.n_samples == 38400 and ptb.meta["sex"] == "F" and ptb.meta["age_years"] == 81
    assert [n for n in ptb.meta["notes"] if "vx" in n or "vy" in n or "vz" in n] != []
    assert ptb.standardize().signal.shape == (12, 5000)
    ludb = read_ecg(shared_data / "ludb" / "data" / "7")
    assert (
        ludb.meta["sex"] == "M" and ludb.meta["age_years"] == 50 and "STEMI: anterior wall." in ludb.meta["comments"]
    )
    c24 = read_ecg(shared_data / "images" / "ptbxl_challenge2024_ecg_image_kit" / "00001_lr.hea")
    assert c24.meta["header"]["dx"] == "NORM" and c24.meta["base_datetime"] == "1984-11-09T09:17:34"
    np.testing.assert_array_equal(c24.signal, read_ecg(shared_data / "ptbxl/records100/00000/00001_lr").signal)


def test_original_challenge_2021_header_syntax_is_read(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "cinc2021" / "JS00001"
    shutil.copy(f"{src}.mat", tmp_path / "JS00001.mat")
    text = Path(f"{src}.hea").read_text().splitlines()
    text[0] = "JS00001.mat 12 500 5000 05-May-2020 14:50:55"  # as PhysioNet distributed it in 2020/21
    header = tmp_path / "JS00001.hea"
    header.write_text("\n".join(text) + "\n")
    with pytest.raises(Exception, match="record line"):
        wfdb.rdrecord(str(tmp_path / "JS00001"))  # what wfdb alone does
    before = _sha256_tree(tmp_path)
    ecg = read_ecg(header)
    np.testing.assert_array_equal(ecg.signal, read_ecg(f"{src}.hea").signal)
    assert any("Challenge-2020/21 record line" in n for n in ecg.meta["notes"])
    assert ecg.meta["id"] == "JS00001"
    assert _sha256_tree(tmp_path) == before


def test_io_does_not_import_torch() -> None:
    code = "import sys, vlm_ecg.io, vlm_ecg.ptbxl; print([m for m in ('torch', 'transformers') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------ bad inputs
def _wfdb_record(tmp: Path, name: str = "rec", ecg: Ecg | None = None) -> Path:
    return write_ecg(ecg or _ecg(), tmp / f"{name}.hea")


def _truncated_dat(tmp: Path) -> Path:
    hea = _wfdb_record(tmp)
    dat = hea.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:-5000])
    return hea


def _header_says_fewer_samples(tmp: Path) -> Path:
    hea = _wfdb_record(tmp)
    lines = hea.read_text().splitlines()
    lines[0] = lines[0].replace(" 5000", " 4000")
    hea.write_text("\n".join(lines) + "\n")
    return hea


def _header_says_fewer_signals(tmp: Path) -> Path:
    hea = _wfdb_record(tmp)
    lines = hea.read_text().splitlines()
    lines[0] = lines[0].replace("rec 12 ", "rec 11 ")
    hea.write_text("\n".join(lines) + "\n")
    return hea


def _corrupted_dat(tmp: Path) -> Path:
    hea = _wfdb_record(tmp)
    dat = hea.with_suffix(".dat")
    dat.write_bytes(np.random.default_rng(0).bytes(dat.stat().st_size))
    return hea


def _missing_dat(tmp: Path) -> Path:
    hea = _wfdb_record(tmp)
    hea.with_suffix(".dat").unlink()
    return hea


def _garbage_header(tmp: Path) -> Path:
    hea = tmp / "rec.hea"
    hea.write_text("this is not a header\nat all\n")
    return hea


def _wfdb_unit(unit: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        ecg = _ecg()
        wfdb.wrsamp("rec", fs=500, units=[unit] * 12, sig_name=list(LEADS), p_signal=ecg.signal.T.astype(float) * 1000,
                    fmt=["16"] * 12, write_dir=str(tmp))  # fmt: skip
        return tmp / "rec.hea"

    return build


def _csv_leads(names: list[str]) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        sig = _ecg().signal
        rows = [[f"{k / 500:.4f}"] + [f"{sig[i % 12, k]:.5f}" for i in range(len(names))] for k in range(5000)]
        return _write_csv(tmp / "leads.csv", ["time", *names], rows)

    return build


def _csv_with_nan(gap_samples: int) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = _csv_of(_ecg(), tmp / "nan.csv")
        lines = p.read_text().splitlines()
        for k in range(2000, 2000 + gap_samples):
            cells = lines[k + 1].split(",")
            cells[8] = ""  # V2
            lines[k + 1] = ",".join(cells)
        p.write_text("\n".join(lines) + "\n")
        return p

    return build


def _csv_with_inf(tmp: Path) -> Path:
    p = _csv_of(_ecg(), tmp / "inf.csv")
    lines = p.read_text().splitlines()
    cells = lines[51].split(",")
    cells[3] = "inf"
    lines[51] = ",".join(cells)
    p.write_text("\n".join(lines) + "\n")
    return p


def _text_file(name: str, text: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        p.write_text(text)
        return p

    return build


def _non_numeric_csv(tmp: Path) -> Path:
    p = _csv_of(_ecg(duration_s=1.0), tmp / "words.csv")
    lines = p.read_text().splitlines()
    cells = lines[4].split(",")
    cells[5] = "abc"  # aVL (column 0 is time) on file line 5
    lines[4] = ",".join(cells)
    p.write_text("\n".join(lines) + "\n")
    return p


def _ragged_csv(tmp: Path) -> Path:
    p = _csv_of(_ecg(duration_s=1.0), tmp / "ragged.csv")
    lines = p.read_text().splitlines()
    lines[7] = lines[7].rsplit(",", 2)[0]
    p.write_text("\n".join(lines) + "\n")
    return p


def _random_bytes(name: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / name
        p.write_bytes(np.random.default_rng(1).bytes(4096))
        return p

    return build


def _npy_named_npz(tmp: Path) -> Path:
    with open(tmp / "y.npz", "wb") as fh:
        np.save(fh, _ecg().signal)
    return tmp / "y.npz"


def _npz(**arrays: object) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        p = tmp / "arr.npz"
        np.savez(p, **{k: (v() if callable(v) else v) for k, v in arrays.items()})
        return p

    return build


def _record_of(duration_s: float, fmt: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        return write_ecg(_ecg(duration_s=duration_s), tmp / f"len{int(duration_s)}.{fmt}")

    return build


def _flat_or_absurd(kind: str) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        ecg = _ecg()
        sig = ecg.signal.copy()
        if kind == "flat":
            sig[6] = 0.0
        else:
            sig *= 1000  # uV written as if mV
        np.savez(tmp / f"{kind}.npz", signal=sig, fs=500.0, leads=np.array(LEADS))
        return tmp / f"{kind}.npz"

    return build


BAD_INPUTS = [
    # (id, builder, read kwargs, standardize crop or None, error class, message pattern)
    ("truncated-dat", _truncated_dat, {}, None, EcgFormatError, r"rec\.dat: truncated"),
    ("hea-fewer-samples", _header_says_fewer_samples, {}, None, EcgFormatError, r"rec\.dat: .*do not match"),
    ("hea-fewer-signals", _header_says_fewer_signals, {}, None, EcgFormatError, r"rec\.hea: .*announces 11 signals"),
    ("corrupted-dat", _corrupted_dat, {}, None, EcgFormatError, r"rec\.hea: .*checksums"),
    ("missing-dat", _missing_dat, {}, None, EcgFormatError, r"rec\.dat: data file missing"),
    ("garbage-hea", _garbage_header, {}, None, EcgFormatError, r"rec\.hea: not a valid WFDB header"),
    ("wfdb-unit-mmHg", _wfdb_unit("mmHg"), {}, None, EcgFormatError, r"rec\.hea: lead I has unit 'mmHg'"),
    ("8-leads-no-V3-V6", _csv_leads(list(LEADS[:8])), {}, None, EcgLeadError, r"leads\.csv: precordial leads V3"),
    ("lead-V7", _csv_leads([*LEADS, "V7"]), {}, None, EcgLeadError, r"leads\.csv: lead 'V7' is not one of"),
    ("duplicate-lead", _csv_leads([*LEADS[:11], "v1"]), {}, None, EcgLeadError, r"leads\.csv: lead V1 appears twice"),
    ("nan-long-gap", _csv_with_nan(40), {}, None, EcgSignalError, r"nan\.csv: 40 NaN samples in lead V2, .* 80 ms"),
    ("inf", _csv_with_inf, {}, None, EcgSignalError, r"inf\.csv: 1 infinite samples in lead\(s\) III"),
    ("flat-lead", _flat_or_absurd("flat"), {}, None, EcgSignalError, r"flat\.npz: lead\(s\) V1 are flat"),
    ("absurd-amplitude", _flat_or_absurd("absurd"), {}, None, EcgSignalError, r"absurd\.npz: lead .* mV"),
    ("empty-csv", _text_file("empty.csv", ""), {}, None, EcgFormatError, r"empty\.csv: empty CSV"),
    ("header-only-csv", _text_file("head.csv", "I,II\n"), {}, None, EcgFormatError, r"head\.csv: no data rows"),
    ("non-numeric-csv", _non_numeric_csv, {}, None, EcgFormatError, r"words\.csv: line 5, column 'aVL': 'abc'"),
    ("ragged-csv", _ragged_csv, {}, None, EcgFormatError, r"ragged\.csv: line 8: 11 fields, but the header has 13"),
    ("csv-unit-unknown", _csv_leads(["I (mmHg)"]), {}, None, EcgFormatError, r"leads\.csv: lead I has unit 'mmHg'"),
    ("fs-disagrees", _csv_leads(list(LEADS)), {"fs": 250}, None, EcgSignalError, r"fs=250 Hz .* says 500 Hz"),
    ("fs-zero", _csv_leads(list(LEADS)), {"fs": 0}, None, EcgSignalError, r"leads\.csv: fs=0 is not a positive"),
    (
        "fs-missing",
        lambda t: _csv_of(_ecg(), t / "nofs.csv", time=False),
        {},
        None,
        EcgSignalError,
        r"nofs\.csv: no sampling rate",
    ),  # fmt: skip
    (
        "fs-negative-npz",
        _npz(signal=lambda: _ecg().signal, fs=-5.0, leads=np.array(LEADS)),
        {},
        None,
        EcgSignalError,
        r"arr\.npz: fs=-5\.0 is not a positive",
    ),  # fmt: skip
    (
        "npz-no-fs",
        _npz(signal=lambda: _ecg().signal, leads=np.array(LEADS)),
        {},
        None,
        EcgSignalError,
        r"arr\.npz: no sampling rate",
    ),  # fmt: skip
    (
        "npz-pickled",
        _npz(signal=lambda: _ecg().signal, fs=500.0, leads=np.array(LEADS, dtype=object)),
        {},
        None,
        EcgFormatError,
        r"arr\.npz: array 'leads' cannot be loaded without unpickling",
    ),  # fmt: skip
    ("npz-no-signal", _npz(fs=500.0, leads=np.array(LEADS)), {}, None, EcgFormatError, r"arr\.npz: no 'signal'"),
    (
        "npz-shape",
        _npz(signal=np.zeros((5, 7)), fs=500.0, leads=np.array(LEADS)),
        {},
        None,
        EcgLeadError,
        r"arr\.npz: 'signal' has shape \(5, 7\)",
    ),  # fmt: skip
    ("2s-record", _record_of(2.0, "npz"), {}, "error", EcgSignalError, r"len2\.npz: record is 2\.00 s, shorter"),
    ("60s-record", _record_of(60.0, "hea"), {}, "error", EcgSignalError, r"len60\.hea: record is 60\.0 s, longer"),
    ("binary-dat", _random_bytes("x.dat"), {}, None, EcgFormatError, r"x\.dat: no WFDB header x\.hea beside it"),
    (
        "binary-npz",
        _random_bytes("x.npz"),
        {},
        None,
        EcgFormatError,
        r"x\.npz: not an NPZ archive \(no zip signature\)",
    ),
    ("binary-hea", _random_bytes("x.hea"), {}, None, EcgFormatError, r"x\.hea: is a binary file"),
    ("binary-csv", _random_bytes("x.csv"), {}, None, EcgFormatError, r"x\.csv: is a binary file"),
    ("npy-as-npz", _npy_named_npz, {}, None, EcgFormatError, r"y\.npz: holds a single \.npy array"),
    ("unknown-suffix", _random_bytes("x.edf"), {}, None, EcgFormatError, r"x\.edf: unknown ECG format \.edf"),
    ("no-such-file", lambda t: t / "missing.hea", {}, None, EcgFormatError, r"missing\.hea: file not found"),
    ("no-such-record", lambda t: t / "missing", {}, None, EcgFormatError, r"missing: file not found"),
    ("folder", lambda t: t, {}, None, EcgFormatError, r"is a folder"),
]


@pytest.mark.parametrize(
    ("build", "kwargs", "crop", "error", "pattern"), [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS]
)
def test_bad_input_gets_its_typed_error_naming_the_file(
    tmp_path: Path, build: Callable, kwargs: dict, crop: str | None, error: type, pattern: str
) -> None:
    path = build(tmp_path)
    with pytest.raises(EcgError) as info:
        ecg = read_ecg(path, **kwargs)
        if crop is not None:
            ecg.standardize(crop=crop)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert str(info.value).startswith(str(tmp_path)), str(info.value)  # the full path of the file at fault
    assert re.search(pattern, str(info.value)), str(info.value)
    if crop is None and "fs" not in kwargs:  # inspect_ecg reports the same file without raising
        assert not inspect_ecg(path).ok


# ------------------------------------------------------------------------------------------ good variants
def test_short_nan_gap_is_interpolated_with_a_note(tmp_path: Path) -> None:
    ecg = read_ecg(_csv_with_nan(20)(tmp_path))  # 40 ms at 500 Hz
    assert not np.isnan(ecg.signal).any()
    assert "interpolated 20 NaN samples in lead V2 (1 gaps)" in ecg.meta["notes"]
    report = inspect_ecg(tmp_path / "nan.csv")
    assert report.ok and any("will be interpolated" in w for w in report.warnings)


def test_eight_independent_leads_give_twelve(tmp_path: Path) -> None:
    ref = _ecg()
    names = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    rows = [[f"{ref.signal[LEADS.index(n), k]:.6f}" for n in names] for k in range(ref.n_samples)]
    path = _write_csv(tmp_path / "eight.csv", names, rows, comments=("fs: 500", "id: patient-7"))
    ecg = read_ecg(path)
    np.testing.assert_allclose(ecg.signal, ref.signal, atol=2e-6)
    assert ecg.meta["id"] == "patient-7" and ecg.fs == 500
    assert any("derived III, aVR, aVL, aVF" in n for n in ecg.meta["notes"])


def test_units_are_converted(tmp_path: Path) -> None:
    ref = _ecg()
    ecg = read_ecg(_wfdb_unit("uV")(tmp_path))
    np.testing.assert_allclose(ecg.signal, ref.signal, atol=1e-3)  # 1 uV quantisation of wfdb's auto gain
    assert any(n.startswith("converted I (uV), II (uV), III (uV)") and n.endswith("to mV") for n in ecg.meta["notes"])
    uv = ref.signal * 1000
    rows = [[f"{k / 500:.6f}"] + [f"{v:.3f}" for v in uv[:, k]] for k in range(ref.n_samples)]
    names = [f"{n} (\u00b5V)" for n in LEADS]  # micro sign in the header
    np.testing.assert_allclose(
        read_ecg(_write_csv(tmp_path / "uv.csv", ["t", *names], rows)).signal, ref.signal, atol=1e-6
    )
    plain = _write_csv(tmp_path / "uv2.csv", ["time (ms)", *LEADS], [[f"{k * 2}"] + r[1:] for k, r in enumerate(rows)])
    with pytest.raises(EcgSignalError, match="wrong units"):
        read_ecg(plain)
    ecg = read_ecg(plain, units="uV")
    np.testing.assert_allclose(ecg.signal, ref.signal, atol=1e-6)
    assert ecg.fs == 500  # from milliseconds


def test_csv_variants_semicolon_tsv_index_column_and_fs_argument(tmp_path: Path) -> None:
    ref = _ecg(fs=250.0)
    rows = [[str(k)] + [f"{v:.6f}" for v in ref.signal[:, k]] for k in range(ref.n_samples)]
    with open(tmp_path / "a.tsv", "w") as fh:
        fh.write("\t".join(["", *(n.lower() for n in LEADS)]) + "\n")
        fh.writelines("\t".join(r) + "\n" for r in rows)
    ecg = read_ecg(tmp_path / "a.tsv", fs=250)
    np.testing.assert_allclose(ecg.signal, ref.signal, atol=1e-6)
    assert "ignored index column ''" in ecg.meta["notes"]
    with open(tmp_path / "b.csv", "w") as fh:  # a European export: semicolons and decimal commas
        fh.write("# sampling rate: 250 Hz\n")
        fh.write(";".join(["sample", *LEADS]) + "\n")
        fh.writelines(";".join(c.replace(".", ",") for c in r) + "\n" for r in rows)
    ecg = read_ecg(tmp_path / "b.csv")
    assert ecg.fs == 250 and ecg.meta["comments"] == ["sampling rate: 250 Hz"]
    np.testing.assert_allclose(ecg.signal, ref.signal, atol=1e-6)
    gapped = _write_csv(
        tmp_path / "gap.csv",
        ["time", *LEADS],
        [[f"{k / 250 + (k > 9) / 250:.6f}"] + r[1:] for k, r in enumerate(rows)],
    )
    with pytest.raises(EcgSignalError, match="not uniformly sampled: step of 8 ms at line 12"):
        read_ecg(gapped)


def test_npz_transposed_and_extra_leads(tmp_path: Path) -> None:
    ref = _ecg()
    names = np.array([*LEADS, "V7"])
    np.savez(tmp_path / "t.npz", signal=np.concatenate([ref.signal, ref.signal[:1]]).T, fs=500, leads=names)
    with pytest.raises(EcgLeadError, match="'V7'"):
        read_ecg(tmp_path / "t.npz")
    ecg = read_ecg(tmp_path / "t.npz", extra_leads="drop")
    np.testing.assert_array_equal(ecg.signal, ref.signal)
    assert "transposed signal from (samples, leads)" in ecg.meta["notes"]


def test_long_record_standardizes_by_cropping(tmp_path: Path) -> None:
    ecg = read_ecg(_record_of(60.0, "hea")(tmp_path)).standardize()
    assert ecg.signal.shape == (12, 5000)
    report = inspect_ecg(tmp_path / "len60.hea")
    assert report.ok and report.duration_s == 60.0


# ------------------------------------------------------------------------------------------ round trips
def test_npz_round_trip_is_exact(tmp_path: Path) -> None:
    ecg = _ecg(fs=360.0)
    ecg.meta.update(notes=["made for a test"], age_years=61.0, sex="F")
    out = write_ecg(ecg, tmp_path / "r.npz")
    back = read_ecg(out)
    np.testing.assert_array_equal(back.signal, ecg.signal)
    assert back.fs == 360.0 and back.meta["id"] == "syn" and back.meta["notes"] == ["made for a test"]
    assert back.meta["age_years"] == 61.0 and back.meta["sex"] == "F" and back.meta["source"] == str(out)


def test_wfdb_round_trip_within_half_a_microvolt(tmp_path: Path) -> None:
    ecg = _ecg(fs=500.0, seed=3)
    ecg.meta.update(notes=["first note", "second\nnote"], age_years=70.0, sex="M")
    hea = write_ecg(ecg, tmp_path / "out" / "rt.dat")
    assert hea == tmp_path / "out" / "rt.hea" and (tmp_path / "out" / "rt.dat").is_file()
    back = read_ecg(hea)
    err = np.abs(back.signal - ecg.signal).max()
    assert err <= 0.5e-3 + 1e-6, err
    assert back.fs == 500 and back.meta["id"] == "rt" and back.meta["sex"] == "M" and back.meta["age_years"] == 70
    assert "note: second note" in back.meta["comments"]
    direct = wfdb.rdrecord(str(tmp_path / "out" / "rt"))
    assert direct.sig_name == list(LEADS) and direct.units == ["mV"] * 12 and direct.fmt == ["16"] * 12


def test_real_record_wfdb_round_trip(shared_data: Path, tmp_path: Path) -> None:
    ecg = read_ecg(shared_data / "ptbxl" / "records100" / "00000" / "00008_lr").standardize()
    back = read_ecg(write_ecg(ecg, tmp_path / "p8.hea"))
    assert np.abs(back.signal - ecg.signal).max() <= 0.5e-3 + 1e-6


def test_csv_round_trip(tmp_path: Path) -> None:
    ecg = _ecg(fs=257.0, duration_s=4.0)
    back = read_ecg(write_ecg(ecg, tmp_path / "r.csv"))
    assert back.fs == 257.0
    np.testing.assert_allclose(back.signal, ecg.signal, atol=1e-6)


@pytest.mark.parametrize(("name", "pattern"), [("x.edf", "cannot write format .edf"), ("a.b.hea", "WFDB record name")])
def test_write_refuses_unknown_suffix_and_bad_names(tmp_path: Path, name: str, pattern: str) -> None:
    with pytest.raises(EcgFormatError, match=pattern):
        write_ecg(_ecg(), tmp_path / name)
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ inspect
def test_inspect_lists_every_problem_without_raising(tmp_path: Path) -> None:
    sig = _ecg(duration_s=4.0).signal.astype(np.float64)
    sig[8, 100:200] = np.nan  # V3: 200 ms gap
    sig[10] = 0.0  # V5 flat
    np.savez(tmp_path / "bad.npz", signal=sig[:11], leads=np.array(LEADS[:11]))  # no V6, no fs
    report = inspect_ecg(tmp_path / "bad.npz")
    text = "\n".join(report.problems)
    for expected in ("V6 missing", "lead V3: 100 missing (NaN) samples", "lead V5: flat", "no sampling rate"):
        assert expected in text, text
    assert not report.ok and report.fs is None and report.leads == list(LEADS[:11])
    printed = report.format_report()
    assert "REFUSED" in printed and "bad.npz" in printed and "V5" in printed
    missing = inspect_ecg(tmp_path / "nope.csv")
    assert missing.problems == ["file not found"] and "REFUSED" in missing.format_report()


def test_inspect_describes_a_good_record(shared_data: Path) -> None:
    report = inspect_ecg(shared_data / "ptbxl" / "records100" / "00000" / "00008_lr.hea")
    assert report.ok and report.format == "wfdb" and report.fs == 100 and report.duration_s == 10.0
    assert report.leads[:4] == ["I", "II", "III", "AVR"] and len(report.amplitude_mv) == 12
    lo, hi = report.amplitude_mv["II"]
    direct = wfdb.rdrecord(str(shared_data / "ptbxl" / "records100" / "00000" / "00008_lr"))
    assert (lo, hi) == (direct.p_signal[:, 1].min(), direct.p_signal[:, 1].max())
    assert "will be resampled 100 Hz -> 500 Hz" in report.warnings
    assert "status:    OK" in report.format_report()


def test_detect_format(tmp_path: Path) -> None:
    hea = _wfdb_record(tmp_path)
    assert detect_format(hea.with_suffix("")) == ("wfdb", hea)
    assert detect_format(hea.with_suffix(".dat")) == ("wfdb", hea)
    assert detect_format(tmp_path / "x.CSV")[0] == "csv" and detect_format(tmp_path / "x.npz")[0] == "npz"
    assert os.fspath(detect_format(str(hea))[1]) == str(hea)


@pytest.mark.parametrize(
    ("unit", "factor"),
    [("mV", 1.0), ("mv", 1.0), ("MV", 1.0), ("uV", 1e-3), ("\u00b5V", 1e-3), ("\u03bcV", 1e-3), ("microvolts", 1e-3),
     ("V", 1e3), ("volts", 1e3), ("", 1.0), (None, 1.0)],
)  # fmt: skip
def test_unit_to_mv(unit: str | None, factor: float) -> None:
    assert unit_to_mv(unit, "x.hea") == factor


@pytest.mark.parametrize(("gap", "ok"), [(10, True), (40, False)])
def test_wfdb_invalid_samples_become_nan_gaps(tmp_path: Path, gap: int, ok: bool) -> None:
    ref = _ecg()
    digital = np.round(ref.signal.T.astype(float) * 1000).astype(np.int16)
    digital[1000 : 1000 + gap, 7] = -32768  # WFDB format 16's "no sample" value, in V2
    wfdb.wrsamp("gap", fs=500, units=["mV"] * 12, sig_name=list(LEADS), d_signal=digital, fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))  # fmt: skip
    if ok:
        ecg = read_ecg(tmp_path / "gap.hea")
        assert "interpolated 10 NaN samples in lead V2 (1 gaps)" in ecg.meta["notes"]
        assert not np.isnan(ecg.signal).any()
    else:
        with pytest.raises(EcgSignalError, match=r"gap\.hea: 40 NaN samples in lead V2, the longest gap 80 ms"):
            read_ecg(tmp_path / "gap.hea")
