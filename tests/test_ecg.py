"""The `Ecg` record: lead names, limb-lead derivation, validation, resampling, cropping/padding."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

from vlm_ecg.ecg import LEADS, LIMB_LEADS, PRECORDIAL_LEADS, Ecg, derive_limb_leads, normalize_lead_name
from vlm_ecg.errors import EcgError, EcgFormatError, EcgLeadError, EcgSignalError


def _limb_from_i_ii(lead_i: np.ndarray, lead_ii: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "I": lead_i,
        "II": lead_ii,
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) / 2,
        "aVL": lead_i - lead_ii / 2,
        "aVF": lead_ii - lead_i / 2,
    }


def _twelve_leads(fs: float = 500.0, duration_s: float = 10.0, seed: int = 0) -> np.ndarray:
    """(12, n) mV: sums of sines with random phases; limb leads obey Einthoven/Goldberger exactly."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(fs * duration_s))) / fs

    def wave() -> np.ndarray:
        return sum(rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in (1.1, 2.3, 7.0))

    limb = _limb_from_i_ii(wave(), wave())
    return np.stack([limb[k] for k in LIMB_LEADS] + [wave() for _ in PRECORDIAL_LEADS]).astype(np.float32)


# ------------------------------------------------------------------------------------------ lead names
@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("I", "I"),
        ("i", "I"),
        ("DI", "I"),
        ("Lead I", "I"),
        ("lead_i", "I"),
        ("1", "I"),
        ("II", "II"),
        ("ii", "II"),
        ("DII", "II"),
        ("Lead II", "II"),
        ("LII", "II"),
        ("III", "III"),
        ("DIII", "III"),
        ("AVR", "aVR"),
        ("avr", "aVR"),
        ("aVR", "aVR"),
        ("a VR", "aVR"),
        ("AVL", "aVL"),
        ("avf", "aVF"),
        ("v1", "V1"),
        ("V1", "V1"),
        ("v-6", "V6"),
        (" V4 ", "V4"),
    ],
)
def test_normalize_lead_name(given: str, canonical: str) -> None:
    assert normalize_lead_name(given) == canonical


@pytest.mark.parametrize("name", ["V7", "V3R", "MLII", "IV", "aVX", "", "X"])
def test_unknown_lead_names_are_refused_by_name(name: str) -> None:
    with pytest.raises(EcgLeadError, match="not one of the 12 standard leads") as info:
        normalize_lead_name(name, source="rec.csv")
    assert str(info.value).startswith("rec.csv: ") and repr(name) in str(info.value)


# ------------------------------------------------------------------------------------------ derivation
@pytest.mark.parametrize("pair", list(itertools.combinations(LIMB_LEADS, 2)))
def test_limb_leads_derived_exactly_from_any_independent_pair(pair: tuple[str, str]) -> None:
    rng = np.random.default_rng(1)
    truth = _limb_from_i_ii(rng.normal(size=500), rng.normal(size=500))
    present = {k: truth[k].astype(np.float32) for k in pair}
    out = derive_limb_leads(present)
    for name in LIMB_LEADS:
        np.testing.assert_allclose(out[name], truth[name], atol=1e-5, err_msg=f"{name} from {pair}")


def test_one_limb_lead_is_not_enough() -> None:
    with pytest.raises(EcgLeadError, match="cannot be derived"):
        derive_limb_leads({"II": np.zeros(10, np.float32)}, source="x.csv")


def test_from_leads_maps_reorders_and_derives_with_notes() -> None:
    sig = _twelve_leads()
    # eight independent leads, shuffled and spelled oddly: I, II and V1-V6
    names = ["v6", "DII", "V1", "v2", "Lead I", "V3", "v4", "V5"]
    rows = [sig[LEADS.index(normalize_lead_name(n))] for n in names]
    ecg = Ecg.from_leads(np.stack(rows), names, 500, {"id": "r", "source": "r.csv"})
    np.testing.assert_allclose(ecg.signal, sig, atol=1e-5)
    assert any("derived III, aVR, aVL, aVF" in n for n in ecg.meta["notes"])


def test_missing_precordial_leads_are_refused() -> None:
    sig = _twelve_leads()
    with pytest.raises(EcgLeadError, match="precordial leads V3, V4, V5, V6 are missing") as info:
        Ecg.from_leads(sig[:8], LEADS[:8], 500, {"source": "eight.csv"})
    assert str(info.value).startswith("eight.csv: ")


def test_frank_leads_dropped_unknown_refused_or_dropped() -> None:
    sig = _twelve_leads()
    extra = np.concatenate([sig, sig[:3]])
    names = [*LEADS, "vx", "vy", "vz"]
    ecg = Ecg.from_leads(extra, names, 500, {"source": "ptb.hea"})
    np.testing.assert_array_equal(ecg.signal, sig)
    assert sum("dropped non-standard lead" in n for n in ecg.meta["notes"]) == 3
    names = [*LEADS, "V7", "V8", "V9"]
    with pytest.raises(EcgLeadError, match="'V7'"):
        Ecg.from_leads(extra, names, 500, {"source": "v7.csv"})
    ecg = Ecg.from_leads(extra, names, 500, {"source": "v7.csv"}, extra_leads="drop")
    assert any("V9" in n for n in ecg.meta["notes"])
    with pytest.raises(ValueError, match="extra_leads"):
        Ecg.from_leads(sig, LEADS, 500, extra_leads="ignore")  # type: ignore[arg-type]


def test_duplicate_lead_is_refused() -> None:
    sig = _twelve_leads()
    names = list(LEADS)
    names[1] = "i"  # two spellings of lead I
    with pytest.raises(EcgLeadError, match="lead I appears twice"):
        Ecg.from_leads(sig, names, 500, {"source": "dup.csv"})


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("fs", [None, 0, -500, float("nan"), float("inf"), "fast"])
def test_bad_sampling_rate_is_refused(fs: object) -> None:
    with pytest.raises(EcgSignalError, match="sampling rate"):
        Ecg(_twelve_leads(), fs, {"source": "f.npz"})  # type: ignore[arg-type]


def test_inf_flat_absurd_are_refused_naming_the_lead() -> None:
    sig = _twelve_leads()
    bad = sig.copy()
    bad[7, 100] = np.inf
    with pytest.raises(EcgSignalError, match=r"infinite samples in lead\(s\) V2"):
        Ecg(bad, 500, {"source": "inf.npz"})
    bad = sig.copy()
    bad[9] = 0.3
    with pytest.raises(EcgSignalError, match=r"lead\(s\) V4 are flat"):
        Ecg(bad, 500, {"source": "flat.npz"})
    bad = sig.copy()
    bad[2] *= 1000  # a lead in uV presented as mV
    with pytest.raises(EcgSignalError, match="lead III reaches .* mV.*wrong units") as info:
        Ecg(bad, 500, {"source": "uv.npz"})
    assert str(info.value).startswith("uv.npz: ")


def test_short_nan_gap_is_interpolated_and_noted_long_gap_refused() -> None:
    sig = _twelve_leads()
    short = sig.copy()
    short[8, 1000:1020] = np.nan  # 40 ms at 500 Hz
    ecg = Ecg(short, 500, {"source": "gap.npz"})
    assert not np.isnan(ecg.signal).any()
    line = np.linspace(sig[8, 999], sig[8, 1020], 22)[1:-1]  # a straight line between the neighbours
    np.testing.assert_allclose(ecg.signal[8, 1000:1020], line, atol=1e-6)
    np.testing.assert_array_equal(ecg.signal[:, :1000], sig[:, :1000])
    assert ecg.meta["notes"] == ["interpolated 20 NaN samples in lead V3 (1 gaps)"]
    long = sig.copy()
    long[8, 1000:1030] = np.nan  # 60 ms
    with pytest.raises(EcgSignalError, match="30 NaN samples in lead V3, the longest gap 60 ms"):
        Ecg(long, 500, {"source": "gap.npz"})
    allnan = sig.copy()
    allnan[0] = np.nan
    with pytest.raises(EcgSignalError, match="lead I is all NaN"):
        Ecg(allnan, 500, {"source": "gap.npz"})


def test_non_numeric_samples_are_refused() -> None:
    with pytest.raises(EcgSignalError, match="real numbers"):
        Ecg(np.full((12, 10), "a"), 500, {"source": "s.npz"})


def test_errors_pickle_round_trip() -> None:
    for cls in (EcgError, EcgFormatError, EcgLeadError, EcgSignalError):
        err = pickle.loads(pickle.dumps(cls("x.hea", "something is wrong")))
        assert type(err) is cls and str(err) == "x.hea: something is wrong" and err.source == "x.hea"


# ------------------------------------------------------------------------------------------ resampling
def _dominant_hz(x: np.ndarray, fs: float) -> float:
    spectrum = np.abs(np.fft.rfft(x - x.mean()))
    return float(np.fft.rfftfreq(x.size, 1 / fs)[np.argmax(spectrum)])


def test_resample_keeps_a_10hz_sine_and_the_length() -> None:
    fs_in = 1000.0
    t = np.arange(10_000) / fs_in
    sig = np.tile(0.5 * np.sin(2 * np.pi * 10 * t), (12, 1)).astype(np.float32)
    sig += np.arange(12, dtype=np.float32)[:, None] * 0.01  # distinct leads, not flat
    out = Ecg(sig, fs_in, {"source": "sine"}).resample(500)
    assert out.fs == 500 and out.n_samples == 5000
    t_out = np.arange(5000) / 500
    expected = 0.5 * np.sin(2 * np.pi * 10 * t_out)
    np.testing.assert_allclose(out.signal[0, 10:-10], expected[10:-10], atol=1e-3)
    np.testing.assert_allclose(out.signal[0], expected, atol=1e-2)  # edges: filter over a linear extrapolation
    assert _dominant_hz(out.signal[0], 500) == pytest.approx(10.0, abs=0.1)
    assert any("resampled 1000 Hz -> 500 Hz" in n for n in out.meta["notes"])


def test_upsample_100_to_500_hz() -> None:
    sig = _twelve_leads(fs=100.0)
    out = Ecg(sig, 100, {"source": "lr"}).resample(500)
    assert out.n_samples == 5000
    np.testing.assert_allclose(out.signal[:, ::5][:, 20:-20], sig[:, 20:-20], atol=5e-3)
    for lead in range(12):
        assert _dominant_hz(out.signal[lead], 500) == pytest.approx(_dominant_hz(sig[lead], 100), abs=0.15)


def test_resample_has_no_edge_transient_on_a_baseline_offset() -> None:
    sig = _twelve_leads(fs=1000.0) + np.float32(1.5)  # a 1.5 mV baseline offset on every lead
    out = Ecg(sig, 1000, {"source": "offset"}).resample(500)
    # zero-padding would pull the first and last samples towards 0 mV (about 0.75 mV off)
    np.testing.assert_allclose(out.signal[:, [0, -1]], sig[:, [0, -1]], atol=0.05)


def test_resample_notes_an_approximate_ratio() -> None:
    out = Ecg(_twelve_leads(fs=499.7, duration_s=2.0), 499.7, {"source": "odd"}).resample(500)
    assert any("approximates the rate change" in n for n in out.meta["notes"])
    assert abs(out.n_samples - 1000) <= 1
    exact = Ecg(_twelve_leads(fs=360.0, duration_s=2.0), 360, {"source": "mit"}).resample(500)
    assert exact.n_samples == 1000 and not any("approximates" in n for n in exact.meta["notes"])


def test_resample_rejects_bad_target() -> None:
    with pytest.raises(EcgSignalError, match="sampling rate"):
        Ecg(_twelve_leads(), 500, {"source": "x"}).resample(0)


# ------------------------------------------------------------------------------------------ length
def test_fit_length_crop_pad_refuse() -> None:
    long = Ecg(_twelve_leads(duration_s=12.0), 500, {"source": "long.npz"})
    start = long.fit_length(10.0)
    np.testing.assert_array_equal(start.signal, long.signal[:, :5000])
    center = long.fit_length(10.0, crop="center")
    np.testing.assert_array_equal(center.signal, long.signal[:, 500:5500])
    assert "cropped 12.00 s to 10 s (center, from 1.00 s)" in center.meta["notes"]
    with pytest.raises(EcgSignalError, match="12.0 s, longer than the 10 s") as info:
        long.fit_length(10.0, crop="error")
    assert str(info.value).startswith("long.npz: ")

    nearly = Ecg(_twelve_leads(duration_s=9.96), 500, {"source": "nearly.npz"})
    padded = nearly.fit_length(10.0)
    assert padded.n_samples == 5000
    np.testing.assert_array_equal(padded.signal[:, 4980:], np.repeat(nearly.signal[:, -1:], 20, axis=1))
    assert any("padded 20 samples" in n for n in padded.meta["notes"])

    short = Ecg(_twelve_leads(duration_s=2.0), 500, {"source": "short.npz"})
    with pytest.raises(EcgSignalError, match="2.00 s, shorter than the 10 s required"):
        short.fit_length(10.0)
    with pytest.raises(ValueError, match="crop"):
        long.fit_length(10.0, crop="end")  # type: ignore[arg-type]


def test_standardize_gives_the_model_input_and_keeps_the_original() -> None:
    ecg = Ecg(_twelve_leads(fs=1000.0, duration_s=38.4), 1000, {"id": "p", "source": "p.hea"})
    std = ecg.standardize()
    assert std.signal.shape == (12, 5000) and std.signal.dtype == np.float32 and std.fs == 500
    assert ecg.n_samples == 38400 and ecg.meta["notes"] == []  # transforms return new records
    assert [n.split()[0] for n in std.meta["notes"]] == ["resampled", "cropped"]
    assert std.lead("avf").shape == (5000,)
