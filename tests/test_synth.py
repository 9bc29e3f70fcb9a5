"""The synthetic cohort, checked with the independent measurement code (`vlm_ecg.measure`), not its parameters.

Tolerances: the generator's intervals are drawn inside the adult normal ranges of DOMAIN.md; the
measurement of clean normals agrees with the generator within a few ms (PR +1, QRS -2, QTc -3 on average,
a few ms spread), so measured values must lie in the configured range widened by 10 ms (PR, QRS) or
15 ms (QTc, where the tangent method and Bazett add spread).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from vlm_ecg.ecg import LEADS
from vlm_ecg.labels import STENOSIS_THRESHOLD, Record
from vlm_ecg.measure import feature_vector, measure
from vlm_ecg.synth import (
    SUBTYPES,
    NoiseConfig,
    SynthConfig,
    generate_record,
    iter_cohort,
    make_cohort,
    make_examples,
    record_rng,
    sample_patient,
    synthesize_record,
)
from vlm_ecg.synth.territory import PATTERNS


def _lead(x: np.ndarray, name: str) -> np.ndarray:
    return x[LEADS.index(name)].astype(np.float64)


def _patients(subtype: str, n: int, seed: int, noise: float = 1.0) -> list[tuple]:
    out = []
    for i in range(n):
        p = sample_patient(record_rng(seed, i), culprit="none", subtype=subtype)
        out.append((p, measure(synthesize_record(p, record_rng(seed + 1, i), noise=noise).ecg)))
    return out


@pytest.fixture(scope="module")
def small_cohort() -> list[Record]:
    return make_cohort(n=12, seed=3)


# ----------------------------------------------------------------------------------------------- records


def test_records_shape_labels_and_meta(small_cohort):
    for i, rec in enumerate(small_cohort):
        assert rec.ecg.signal.shape == (12, 5000) and rec.ecg.signal.dtype == np.float32
        assert rec.ecg.fs == 500.0
        assert rec.ecg.meta["id"] == f"synth-{i:06d}" and rec.ecg.meta["source"] == "synth"
        params = rec.ecg.meta["synth"]["params"]
        assert rec.ecg.meta["synth"]["index"] == i and params["subtype"] == rec.labels.subtype
        lab = rec.labels
        assert lab.subtype in SUBTYPES
        assert lab.triage == int(lab.culprit != "none")
        if lab.triage:
            k = ("LAD", "LCx", "RCA").index(lab.culprit)
            assert lab.stenosis[k] > STENOSIS_THRESHOLD
            assert all(s <= 0.6 for j, s in enumerate(lab.stenosis) if j != k)
        else:
            assert all(0.0 <= s <= 0.6 for s in lab.stenosis)
        assert rec.confounders.sex in ("M", "F") and 25 <= rec.confounders.age_years <= 95


@pytest.mark.parametrize("noise", [0.0, 1.0, NoiseConfig(scale=3.0, motion_probability=1.0)])
def test_limb_lead_identities_exact(noise):
    for i, subtype in enumerate(SUBTYPES):
        p = sample_patient(record_rng(11, i), subtype=subtype, culprit=("none", "LAD", "LCx", "RCA")[i % 4])
        x = synthesize_record(p, record_rng(12, i), noise=noise).ecg.signal
        lead_i, lead_ii = _lead(x, "I"), _lead(x, "II")
        assert np.abs(_lead(x, "III") - (lead_ii - lead_i)).max() < 1e-5
        assert np.abs(_lead(x, "aVR") + (lead_i + lead_ii) / 2).max() < 1e-5
        assert np.abs(_lead(x, "aVL") - (lead_i - lead_ii / 2)).max() < 1e-5
        assert np.abs(_lead(x, "aVF") - (lead_ii - lead_i / 2)).max() < 1e-5


def test_same_seed_identical_different_seed_differs(small_cohort):
    again = make_cohort(n=12, seed=3)
    for a, b in zip(small_cohort, again, strict=True):
        assert np.array_equal(a.ecg.signal, b.ecg.signal)
        assert a.labels == b.labels and a.confounders == b.confounders
    other = make_cohort(n=3, seed=4)
    assert not np.array_equal(small_cohort[0].ecg.signal, other[0].ecg.signal)
    # record i is the same alone, in a stream shard, or in the batch
    config = SynthConfig(n=12, seed=3)
    assert np.array_equal(generate_record(config, 7).ecg.signal, small_cohort[7].ecg.signal)
    shard = list(iter_cohort(config, start=5, stop=8))
    assert [r.id for r in shard] == ["synth-000005", "synth-000006", "synth-000007"]
    assert np.array_equal(shard[2].ecg.signal, small_cohort[7].ecg.signal)


def test_noise_is_electrode_level_and_configurable():
    p = sample_patient(record_rng(21, 0), culprit="none", subtype="normal")
    clean = synthesize_record(p, record_rng(22, 0), noise=0.0).ecg.signal.astype(np.float64)
    only_mains = NoiseConfig(
        baseline_mv=0, drift_mv=0, emg_mv=0, motion_probability=0, powerline_hz=60.0, record_spread=0
    )
    mains = synthesize_record(p, record_rng(22, 0), noise=only_mains).ecg.signal - clean
    spectrum = np.abs(np.fft.rfft(mains[LEADS.index("V2")]))
    assert np.fft.rfftfreq(mains.shape[1], 1 / 500)[np.argmax(spectrum)] == pytest.approx(60.0)
    noisy = synthesize_record(p, record_rng(22, 0), noise=1.0).ecg.signal - clean
    louder = synthesize_record(p, record_rng(22, 0), noise=4.0).ecg.signal - clean
    assert 0 < noisy.std() < louder.std()
    with pytest.raises(ValueError, match="powerline_hz"):
        NoiseConfig(powerline_hz=55.0)
    with pytest.raises(TypeError):
        NoiseConfig.coerce("loud")


def test_config_validation():
    with pytest.raises(ValueError, match="prevalence"):
        SynthConfig(prevalence=1.5)
    with pytest.raises(ValueError, match="subtype_mix"):
        SynthConfig(subtype_mix={"normal": 1.0, "brugada": 0.1})
    with pytest.raises(ValueError, match="culprit"):
        sample_patient(record_rng(0, 0), culprit="LM")
    assert SynthConfig(noise=0.5).noise == NoiseConfig(scale=0.5)


def test_light_modules_do_not_import_torch():
    code = "import sys, vlm_ecg.synth, vlm_ecg.measure; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------- physiology


def test_normals_measure_inside_configured_ranges():
    rows = _patients("normal", 30, seed=31)
    for p, m in rows:
        assert 50 <= m.hr_bpm <= 102
        assert 110 <= m.pr_ms <= 210 and m.p_present
        assert 70 <= m.qrs_ms <= 116
        assert (345 if p.sex == "M" else 355) <= m.qtc_ms <= (457 if p.sex == "M" else 467)
        assert -40 <= m.axis_deg <= 100
        assert m.rr_cv < 0.12
    # and they track the patient's own values (the measurement is independent, so this tests both)
    err = {k: np.array([getattr(m, k) - getattr(p, k) for p, m in rows]) for k in ("pr_ms", "qrs_ms", "qtc_ms")}
    assert abs(err["pr_ms"].mean()) < 8 and abs(err["qrs_ms"].mean()) < 8 and abs(err["qtc_ms"].mean()) < 12
    assert np.abs([m.hr_bpm - p.hr_bpm for p, m in rows]).max() < 3


def test_bundle_branch_blocks_are_wide():
    for subtype in ("rbbb", "lbbb"):
        qrs = np.array([m.qrs_ms for _, m in _patients(subtype, 12, seed=41)])
        assert qrs.min() >= 110 and qrs.mean() >= 125, (subtype, qrs)
    rbbb = _patients("rbbb", 6, seed=43)
    assert np.mean([m.lead("r", "V1") for _, m in rbbb]) > 0.3  # rsR' in V1


def test_afib_irregular_without_p():
    af = _patients("afib", 15, seed=51)
    assert np.mean([m.rr_cv for _, m in af]) > 0.1 and min(m.rr_cv for _, m in af) > 0.05
    assert sum(m.p_present for _, m in af) <= 1
    assert all(np.isnan(m.pr_ms) for _, m in af if not m.p_present)


def test_age_and_sex_shift_the_ecg():
    patients = [sample_patient(record_rng(61, i)) for i in range(400)]
    amp = {(p.sex, p.age_years > 65): [] for p in patients}
    for p in patients:
        amp[(p.sex, p.age_years > 65)].append(p.qrs_amp_mv)
    assert np.mean(amp[("M", False)]) > np.mean(amp[("M", True)])  # voltage falls with age
    assert np.mean(amp[("M", False)]) > np.mean(amp[("F", False)])  # women smaller QRS
    qtc = {s: np.mean([p.qtc_ms for p in patients if p.sex == s and p.subtype == "normal"]) for s in "MF"}
    assert qtc["F"] > qtc["M"] + 5  # women longer QTc


# ------------------------------------------------------------------------------------------ occlusions

# Expected ST change at J+60 ms (matched record with vs without the occlusion), from DOMAIN.md's territories:
# (leads that must rise by > 0.05 mV, leads that must fall by > 0.05 mV, leads that must stay within 0.03 mV)
TERRITORY = {
    "anterior_st": (("V2", "V3", "V4"), (), ("II", "aVR", "aVF", "V6")),
    "hyperacute_t": (("V2", "V3", "V4"), (), ("II", "aVR", "aVF", "V6")),
    "de_winter": ((), ("V2", "V3", "V4"), ("aVL", "V6")),
    "wellens": ((), (), ("I", "II", "III", "V2", "V3", "V5", "V6")),
    "posterior": ((), ("V1", "V2", "V3"), ("II", "aVF", "V4")),
    "lateral": (("I", "aVL", "V5", "V6"), ("V1", "V2", "III"), ("aVR", "V3")),
    "inferior": (("II", "III", "aVF"), ("aVL",), ("V3", "V4", "V5", "V6")),
    "inferoposterior": (("II", "III", "aVF"), ("aVL",), ("V1", "V5", "V6")),
}


def _matched_st_change(pattern: str, n: int = 6, st_mv: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """Mean change of ST at J+60 and of T amplitude, occluded minus the same patient and recording without."""
    d_st, d_t = [], []
    for i in range(n):
        base = sample_patient(record_rng(71, i), culprit="none", subtype="normal")
        occ = dataclasses.replace(base, culprit=PATTERNS[pattern].culprit, pattern=pattern, st_mv=st_mv)
        m0 = measure(synthesize_record(base, record_rng(72, i), noise=1.0).ecg)
        m1 = measure(synthesize_record(occ, record_rng(72, i), noise=1.0).ecg)
        d_st.append(m1.leads["st60"] - m0.leads["st60"])
        d_t.append(m1.leads["t"] - m0.leads["t"])
    return np.mean(d_st, axis=0), np.mean(d_t, axis=0)


@pytest.mark.parametrize("pattern", list(TERRITORY))
def test_planted_st_in_territory_only(pattern):
    up, down, remote = TERRITORY[pattern]
    d_st, d_t = _matched_st_change(pattern)
    get = dict(zip(LEADS, d_st, strict=True))
    for lead in up:
        assert get[lead] > 0.05, (pattern, lead, get[lead])
    for lead in down:
        assert get[lead] < -0.05, (pattern, lead, get[lead])
    for lead in remote:
        assert abs(get[lead]) < 0.03, (pattern, lead, get[lead])
    assert np.abs(d_st).max() < 0.2  # NSTEMI-grade, never STEMI-sized
    t = dict(zip(LEADS, d_t, strict=True))
    if pattern in ("hyperacute_t", "de_winter"):
        assert min(t["V2"], t["V3"]) > 0.25  # tall T
    if pattern == "wellens":
        assert max(t["V2"], t["V3"]) < -0.4  # deep T inversion
    if pattern == "inferior":
        assert get["III"] > get["II"]  # III > II points at the RCA


def test_cohort_occlusions_shift_territory_leads():
    """Patients drawn as for the cohort (patterns, severities and subtypes mixed), against matched negatives.

    LAD mixes elevation patterns (anterior ST, hyperacute T: 70 %) with de Winter's depression and Wellens'
    near-isoelectric ST, so its mean shift is positive but smaller; its mean |shift| is the size check.
    """
    expected = {
        "LAD": (("V1", "V2", "V3", "V4"), +1, 0.02, ("II", "aVR", "V6")),
        "LCx": (("V1", "V2"), -1, 0.05, ("II",)),
        "RCA": (("II", "III", "aVF"), +1, 0.05, ("V4", "V5", "V6")),
    }
    for culprit, (leads, sign, min_shift, remote) in expected.items():
        diffs = []
        for i in range(16):
            pos = sample_patient(record_rng(81, i), culprit=culprit)
            neg = sample_patient(record_rng(81, i), culprit="none")
            m1 = measure(synthesize_record(pos, record_rng(82, i)).ecg)
            m0 = measure(synthesize_record(neg, record_rng(82, i)).ecg)
            diffs.append(m1.leads["st60"] - m0.leads["st60"])
        diffs = np.array(diffs)
        mean = dict(zip(LEADS, diffs.mean(axis=0), strict=True))
        cols = [LEADS.index(lead) for lead in leads]
        assert sign * diffs[:, cols].mean() > min_shift, (culprit, mean)
        assert 0.04 < np.abs(diffs[:, cols]).max(axis=1).mean() < 0.2, culprit  # subtle: 0.5-2 small boxes
        assert all(abs(mean[lead]) < 0.03 for lead in remote), (culprit, {k: mean[k] for k in remote})


def test_examples_are_one_patient_per_culprit():
    ex = make_examples(seed=2, noise=0.5)
    assert list(ex) == ["none", "LAD", "LCx", "RCA"]
    assert [r.labels.triage for r in ex.values()] == [0, 1, 1, 1]
    m0 = measure(ex["none"].ecg)
    p0 = ex["none"].ecg.meta["synth"]["params"]
    for culprit in ("LAD", "LCx", "RCA"):
        p = ex[culprit].ecg.meta["synth"]["params"]
        changed = {k for k in p if p[k] != p0[k]}
        assert changed <= {"culprit", "pattern", "st_mv", "stenosis"}, changed
        m = measure(ex[culprit].ecg)
        assert np.abs(m.leads["r"] - m0.leads["r"]).max() < 0.02  # same QRS ...
        assert np.abs(m.leads["st60"] - m0.leads["st60"]).max() > 0.1  # ... the occlusion's ST on top


# ------------------------------------------------------------------------------------ cohort structure


def test_subtypes_separable_by_clustering():
    """KMeans on standardised `feature_vector`s of negatives recovers the subtypes.

    Threshold 0.5: RBBB, LBBB and AF alone would give ~0.4; the seeds we tried give 0.71-0.77 (normal, demand
    ST depression and nonspecific T overlap by design, as they do clinically).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.preprocessing import StandardScaler

    x, y = [], []
    for k, subtype in enumerate(SUBTYPES):
        for _, m in _patients(subtype, 25, seed=91 + 10 * k):
            x.append(feature_vector(m))
            y.append(k)
    z = StandardScaler().fit_transform(np.array(x))
    labels = KMeans(len(SUBTYPES), n_init=20, random_state=0).fit_predict(z)
    assert adjusted_rand_score(y, labels) > 0.5


def test_confounding_and_prevalence():
    n = 3000
    for confounding in (1.0, 0.0, -1.0):
        config = SynthConfig(prevalence=0.12, confounding=confounding)
        ps = [sample_patient(record_rng(101, i), config) for i in range(n)]
        tri = np.array([p.triage for p in ps])
        old = tri[np.array([p.age_years >= 65 for p in ps])].mean()
        young = tri[np.array([p.age_years < 55 for p in ps])].mean()
        history = np.array([p.hypertension + p.diabetes + p.prior_mi >= 2 for p in ps])
        assert abs(tri.mean() - 0.12) < 3 * np.sqrt(0.12 * 0.88 / n)
        if confounding > 0:
            assert old > 1.5 * young and tri[history].mean() > 1.5 * tri[~history].mean()
        elif confounding < 0:
            assert young > 1.5 * old and tri[~history].mean() > 1.5 * tri[history].mean()
        else:
            assert abs(old - young) < 0.05
    mix = SynthConfig().subtype_mix
    counts = {s: np.mean([p.subtype == s for p in ps]) for s in SUBTYPES}
    assert all(abs(counts[s] - mix[s]) < 0.03 for s in SUBTYPES), counts
