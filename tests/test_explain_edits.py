"""Physiological edits: local to their lead and segment window, smooth, on every beat, bounded, exact measurements."""

from __future__ import annotations

import numpy as np
import pytest

from vlm_ecg.ecg import LEADS
from vlm_ecg.errors import EcgLeadError
from vlm_ecg.explain.edits import (
    MAX_EDIT_MV,
    SEGMENTS,
    BeatFrame,
    Edit,
    EditError,
    apply_edits,
    limb_coupling,
    limb_leads_consistent,
    merge_edits,
)
from vlm_ecg.explain.state import SLOTS, ActionSpace, feature_names, state_features
from vlm_ecg.measure import measure
from vlm_ecg.synth import make_examples


@pytest.fixture(scope="module")
def lad():
    return make_examples(3)["LAD"].ecg


@pytest.fixture(scope="module")
def frame(lad):
    return BeatFrame.from_ecg(lad)


def _support(frame: BeatFrame, segment: str) -> np.ndarray:
    """(n,) bool: record samples inside the segment's window on some beat."""
    inside = np.zeros(frame.n_samples, dtype=bool)
    nz = np.flatnonzero(frame.windows[SEGMENTS.index(segment)] > 0)
    for start in frame.beat_starts:
        idx = start + nz
        inside[idx[(idx >= 0) & (idx < frame.n_samples)]] = True
    return inside


@pytest.mark.parametrize("segment", SEGMENTS)
@pytest.mark.parametrize("amplitude", [-0.2, 0.15])
def test_edit_changes_only_its_lead_and_segment_window(lad, frame, segment, amplitude):
    edited = apply_edits(lad, [Edit("V3", segment, amplitude)], frame)
    diff = edited.signal.astype(np.float64) - lad.signal
    changed_rows = np.flatnonzero(np.abs(diff).max(axis=1) > 0)
    assert [LEADS[i] for i in changed_rows] == ["V3"]
    row = diff[LEADS.index("V3")]
    assert np.abs(row[~_support(frame, segment)]).max() == 0.0
    # every beat is edited: the change reaches most of its size within each beat's window
    peaks = [np.abs(row[max(s, 0) : s + frame.median_beat.shape[1]]).max() for s in frame.beat_starts]
    inside = [p for s, p in zip(frame.beat_starts, peaks, strict=True) if 0 <= s and s + 600 < frame.n_samples]
    assert len(inside) >= 5 and min(inside) > 0.5 * abs(amplitude)


@pytest.mark.parametrize("segment", ["P", "ST", "T"])
def test_edit_is_smooth_no_steps(lad, frame, segment):
    amplitude = -0.3
    row = apply_edits(lad, [Edit("V2", segment, amplitude)], frame).signal[LEADS.index("V2")] - lad.signal[7]
    # a raised-cosine ramp of >= 10 ms (5 samples) moves at most |a| * pi / (2 * 6) per sample
    assert np.abs(np.diff(row)).max() <= abs(amplitude) * np.pi / 12 + 1e-6
    assert np.abs(row).max() == pytest.approx(abs(amplitude), rel=0.01)


def test_qrs_edit_scales_the_complex_smoothly(lad, frame):
    original = lad.signal[LEADS.index("V4")].astype(np.float64)
    edited = apply_edits(lad, [Edit("V4", "QRS", 0.3)], frame).signal[LEADS.index("V4")]
    # no new steep edges: the edited lead's steepest slope grows no more than the QRS scale factor
    scale = 1 + 0.3 / frame.amplitudes()[LEADS.index("V4"), 1]
    assert np.abs(np.diff(edited)).max() <= scale * np.abs(np.diff(original)).max() + 1e-3


def test_measurements_move_exactly_and_measure_agrees(lad, frame):
    edits = [Edit("V3", "ST", -0.1), Edit("V3", "T", -0.2), Edit("V1", "QRS", 0.25), Edit("V5", "P", 0.05)]
    after = frame.amplitudes(frame.waveform(edits))
    delta = after - frame.amplitudes()
    expected = np.zeros_like(delta)
    for e in edits:
        expected[LEADS.index(e.lead), SEGMENTS.index(e.segment)] += e.amplitude_mv
    np.testing.assert_allclose(delta, expected, atol=1e-9)
    # the independent measurement module sees the same change on the edited record (filters blur it slightly)
    m0, m1 = measure(lad), measure(apply_edits(lad, edits, frame))
    assert m1.lead("st60", "V3") - m0.lead("st60", "V3") == pytest.approx(-0.1, abs=0.02)
    assert m1.lead("t", "V3") - m0.lead("t", "V3") == pytest.approx(-0.2, abs=0.03)


def test_effects_matrix_is_the_linear_update(frame):
    rng = np.random.default_rng(0)
    eff = frame.effects("dipole")
    amounts = np.zeros(len(SLOTS))
    chosen = rng.choice(np.flatnonzero(frame.available.reshape(-1)), 5, replace=False)
    amounts[chosen] = rng.uniform(-0.2, 0.2, 5)
    edits = [Edit(*SLOTS[s], float(amounts[s])) for s in chosen]
    direct = frame.amplitudes(frame.waveform(edits, "dipole")).reshape(-1)
    np.testing.assert_allclose(direct, frame.amplitudes().reshape(-1) + amounts @ eff, atol=1e-9)


def test_limb_dipole_policy_keeps_einthoven_and_reciprocity(lad, frame):
    assert limb_leads_consistent(lad.signal, atol_mv=1e-3)
    edited = apply_edits(lad, [Edit("III", "ST", -0.1)], frame, limb_policy="dipole")
    assert limb_leads_consistent(edited.signal, atol_mv=1e-3)
    delta = frame.amplitudes(frame.waveform([Edit("III", "ST", -0.1)], "dipole")) - frame.amplitudes()
    st = dict(zip(LEADS, delta[:, SEGMENTS.index("ST")], strict=True))
    assert st["III"] == pytest.approx(-0.1)
    assert st["aVL"] > 0.05  # reciprocal: lowering III raises aVL
    assert all(st[v] == 0 for v in LEADS[6:])
    c = limb_coupling("dipole")
    np.testing.assert_allclose(np.diag(c), 1.0)
    isolated = apply_edits(lad, [Edit("III", "ST", -0.1)], frame, limb_policy="isolated")
    changed = np.flatnonzero(np.abs(isolated.signal - lad.signal).max(axis=1) > 0)
    assert [LEADS[i] for i in changed] == ["III"]


def test_bounds_and_bad_edits_are_refused(lad, frame):
    with pytest.raises(EditError, match="physiological range"):  # inferior leads add up in III: ST > 1 mV
        apply_edits(lad, [Edit("II", "ST", 0.5), Edit("III", "ST", 0.5), Edit("aVF", "ST", 0.5)], frame)
    with pytest.raises(EditError, match="exceeds"):
        Edit("V3", "T", MAX_EDIT_MV + 0.1)
    with pytest.raises(EditError, match="exceeds"):  # edits of one lead and segment add up
        apply_edits(lad, [Edit("V3", "ST", 0.3), Edit("V3", "ST", 0.3)], frame)
    with pytest.raises(EditError, match="segment"):
        Edit("V3", "U", 0.1)
    with pytest.raises(EcgLeadError, match="V7"):
        Edit("V7", "T", 0.1)
    with pytest.raises(EditError, match="QRS"):  # shrinking a QRS below a quarter of its size
        big = frame.amplitudes()[LEADS.index("V2"), 1]
        apply_edits(lad, [Edit("V2", "QRS", -min(0.5, 0.8 * big))] * 2, frame)
    af = make_examples(1, subtype="afib")["none"].ecg
    af_frame = BeatFrame.from_ecg(af)
    assert not af_frame.available[:, 0].any()
    with pytest.raises(EditError, match="no P wave"):
        apply_edits(af, [Edit("II", "P", 0.1)], af_frame)


def test_words_merging_and_notes(lad, frame):
    assert Edit("V3", "T", -0.2).describe() == "lower V3 T wave by 0.20 mV"
    assert Edit("V1", "QRS", 0.1).describe() == "increase V1 QRS amplitude by 0.10 mV"
    merged = merge_edits([Edit("V3", "ST", -0.05), Edit("V2", "T", 0.1), Edit("V3", "ST", -0.05), Edit("I", "P", 0.1),
                          Edit("I", "P", -0.1)])  # fmt: skip
    assert merged == [Edit("V3", "ST", -0.1), Edit("V2", "T", 0.1)]
    edited = apply_edits(lad, merged, frame)
    assert any("lower V3 ST" in n for n in edited.meta["notes"])
    assert edited.meta["id"].endswith("-counterfactual")


def test_edited_ecg_renders(lad, frame):
    from vlm_ecg.render import RenderConfig, render_ecg

    config = RenderConfig(image_size_px=256)
    edited = apply_edits(lad, [Edit("V2", "ST", 0.3)], frame)
    a, b = render_ecg(lad, config), render_ecg(edited, config)
    assert a.shape == b.shape and (a != b).any()


def test_action_space_and_state_vector():
    space = ActionSpace((0.05, 0.1, 0.2))
    assert len(space) == 12 * 4 * 2 * 3
    for action in (0, 7, 100, len(space) - 1):
        e = space.edit(action)
        assert space.index(e.lead, e.segment, e.amplitude_mv) == action
    assert space.name(space.index("V3", "T", -0.2)) == "lower V3 T wave by 0.20 mV"
    names = feature_names()
    n = 3
    x = state_features(np.zeros((n, 12, 4)), np.zeros((n, 48)), np.full(n, 0.7), np.ones(n), np.zeros(n))
    assert x.shape == (n, len(names)) and "V3 ST (mV)" in names and "probability" in names


def test_territory_actions_edit_the_most_extreme_allowed_lead():
    lead_space, space = ActionSpace((0.1, 0.2, 0.3), "lead"), ActionSpace((0.1, 0.2, 0.3), "territory")
    assert len(space) == 4 * 4 * 2 * 3 and space.target_names == ["anterior", "lateral", "inferior", "aVR"]
    lower_inf_st = space.index("III", "ST", -0.1)
    assert space.name(lower_inf_st) == (
        "lower the ST segment (J+60 ms) of the inferior lead (II, III, aVF) where it is highest by 0.10 mV"
    )
    assert space.name(space.index("aVR", "T", 0.2)) == "raise aVR T wave by 0.20 mV"  # a one-lead target
    assert "where it is largest" in space.name(space.index("V2", "QRS", -0.1))
    # every (lead, segment, direction) belongs to exactly one action per level, and edit_of_slot says which
    for a in range(len(space)):
        for slot in space.members[a][space.members[a] >= 0]:
            assert space.edit_of_slot[slot * 2 + int(space.sign[a] > 0)] == a // len(space.levels_mv)
    amps = np.zeros((2, len(SLOTS)))
    st = {lead: SLOTS.index((lead, "ST")) for lead in ("II", "III", "aVF")}
    amps[:, st["II"]], amps[:, st["III"]], amps[:, st["aVF"]] = 0.05, 0.20, -0.10
    raise_inf_st = space.index("III", "ST", 0.1)
    slots = space.resolve(np.array([lower_inf_st, raise_inf_st]), amps)
    assert list(slots) == [st["III"], st["aVF"]]  # lowering takes the highest ST, raising the lowest
    allowed = np.ones((2, len(lead_space)), dtype=bool)
    allowed[0, lead_space.index("III", "ST", -0.1)] = False  # III may not go lower: the next highest, II
    assert space.resolve(np.array([lower_inf_st]), amps[:1], allowed[:1])[0] == st["II"]
    with pytest.raises(ValueError, match="targets"):
        ActionSpace((0.1,), "vessel")
    with pytest.raises(ValueError, match="resolve"):
        _ = space.slot
