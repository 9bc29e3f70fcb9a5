"""One patient's beat: Gaussian P, QRS and T waves plus ST components as VCG vectors (`build_template`).

Times are relative to QRS onset. Normal conduction (D = QRS duration, each wave an asymmetric Gaussian):
septal q at 0.20 D (right, anterior), early left-anterior force at 0.36 D (R in V2-V4), main R at 0.53 D,
terminal S at 0.75 D (right, up, back). The main vector is solved so that the net QRS area in I and aVF
has the patient's frontal axis, with a posterior component `qrs_z_ratio` times its frontal size (deep S in
V1-V2, transition near V3). Median amplitudes of clean normals measured with `vlm_ecg.measure`: R I 0.5,
II 0.9, V1 0.15, V2 0.4, V3 0.9, V4-V6 1.0-1.1 mV; S V1 1.4, V2 1.5, V3 0.9 mV; T II 0.3, V2 0.35, V3-V4
0.6 mV. T: its tangent end (peak + 2 sigma) is the QT (Bazett), direction `t_angle_deg` in the frontal
plane and anterior. P: right- then left-atrial Gaussians (biphasic in V1) starting PR before the QRS.

Subtypes:

* nonspecific_t: T shrunk to `t_factor` and turned by `t_rotation_deg` (110-170 deg: inverted or flat).
* demand_st: diffuse ST depression (`st_mv` in the deepest lead, V4-V6, II) with aVR elevation, T shrunk,
  tachycardia.
* lvh_strain: QRS voltage x `voltage_factor`; ST depression and T inversion opposite the QRS (lateral
  leads), sized `strain_st_mv` / `strain_t_mv` (discordant ST elevation in V1-V3 follows from the geometry).
* rbbb: normal first 92 ms, then a slow right-anterior terminal force (rsR' in V1, wide S in I and V6);
  T inverted in V1-V3.
* lbbb: septal vector reversed (no q in I/V6), two broad humps turning from anterior to posterior (QS in
  V1-V3, broad notched R in I, aVL, V5-V6), ST and T discordant to the QRS (`discordant_st_mv`).
* afib: no P (fibrillatory waves and irregular RR come from `cohort.synthesize_record`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ecg import LEADS
from .patient import PatientParams
from .territory import DE_WINTER_DECAY_S, occlusion_vectors
from .vcg import lead_rows, render_waves, scale_to_leads, smooth_step

GROUPS: tuple[str, ...] = ("P", "QRS", "ST", "T")
TEMPLATE_START_S = -0.45
TEMPLATE_END_S = 0.85
RBBB_NORMAL_PART_S = 0.092
_SQRT_2PI = float(np.sqrt(2.0 * np.pi))
_R1_FRAC = 0.9  # early left-anterior QRS force (R in V2-V4), fraction of the main vector
_R1_DIR = (0.8, 0.2, -0.5)
_RPRIME_DIR = (-0.55, 0.05, -1.0)  # RBBB terminal force: right and anterior

_PRIOR_MI = {  # initial-force direction of the old Q wave, the leads it is sized on, T-change direction
    "inferior": ((0.0, -1.0, 0.1), ("II", "III", "aVF"), (0.0, -1.0, 0.0)),
    "anterior": ((0.1, 0.0, 1.0), ("V1", "V2", "V3"), (0.1, 0.0, 1.0)),
    "lateral": ((-1.0, 0.2, 0.2), ("I", "aVL", "V5", "V6"), (-1.0, 0.0, 0.0)),
}


@dataclass
class BeatTemplate:
    """One beat of one patient, split by wave group so that each can be modulated beat to beat.

    Attributes:
        t_s: (L,) time relative to QRS onset, s.
        groups: (len(GROUPS), 3, L) VCG of each group in mV.
        qt_s: QT interval, s.
    """

    t_s: np.ndarray
    groups: np.ndarray
    qt_s: float


def _unit(*v: float) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def _solve_main_vector(
    axis_deg: float, frontal_mv: float, z_mv: float, main_area_s: float, other_area: np.ndarray
) -> np.ndarray:
    """Main QRS vector (3,) such that the net QRS area in (I, aVF) points at `axis_deg`.

    Args:
        axis_deg: target frontal axis (0 = lead I, +90 = aVF).
        frontal_mv: size of the main vector's frontal projection.
        z_mv: its Z (posterior) component.
        main_area_s: time-area of the main wave(s) per mV of amplitude, s.
        other_area: (3,) summed time-area of the other QRS waves, mV s.
    """
    rows = lead_rows(("I", "aVF"))  # (2, 3)
    theta = np.deg2rad(axis_deg)
    target = main_area_s * frontal_mv * np.array([np.cos(theta), np.sin(theta)])
    rhs = target - rows @ other_area - main_area_s * z_mv * rows[:, 2]
    xy = np.linalg.solve(rows[:, :2], rhs) / main_area_s
    return np.array([xy[0], xy[1], z_mv])


def _rotate_toward(v: np.ndarray, angle_deg: float, psi_deg: float) -> np.ndarray:
    """Rotate `v` by `angle_deg` toward the perpendicular direction picked by `psi_deg`."""
    u = v / np.linalg.norm(v)
    helper = np.array([0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(u, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(u, e1)
    w = np.cos(np.deg2rad(psi_deg)) * e1 + np.sin(np.deg2rad(psi_deg)) * e2
    a = np.deg2rad(angle_deg)
    return np.linalg.norm(v) * (np.cos(a) * u + np.sin(a) * w)


def build_template(p: PatientParams, fs: float) -> BeatTemplate:
    """Render the patient's beat (all waves, ST components) on a local grid at `fs` Hz."""
    d = p.qrs_ms / 1000.0
    rr = 60.0 / p.hr_bpm
    qt = p.qtc_ms / 1000.0 * np.sqrt(rr)
    t = np.arange(int(round(TEMPLATE_START_S * fs)), int(round(TEMPLATE_END_S * fs)) + 1) / fs
    sp, amp = p.subtype_params, p.qrs_amp_mv
    waves: list[tuple[str, float, float, float, np.ndarray]] = []  # group, centre, sigma_l, sigma_r, vector

    if p.subtype != "afib":
        pd = p.p_dur_ms / 1000.0
        s = pd / 5.0
        c1 = -p.pr_ms / 1000.0 + 2.0 * s
        waves.append(("P", c1, s, s, 0.7 * p.p_amp_mv * _unit(0.2, 1.0, -0.5)))
        waves.append(("P", c1 + 0.2 * pd, s, s, 0.6 * p.p_amp_mv * _unit(1.0, 0.6, 0.6)))

    # QRS: fixed-direction waves first, then the main vector solved for the axis
    if p.subtype == "lbbb":
        waves.append(("QRS", 0.18 * d, 0.07 * d, 0.07 * d, 0.12 * amp * _unit(0.8, 0.1, 0.5)))
        w2 = 0.8 + 0.4 * sp["notch"]
        main = [(0.42 * d, 0.12 * d, 0.12 * d, 1.0, -1.0), (0.66 * d, 0.12 * d, 0.11 * d, w2, 1.0)]
    else:
        dn = min(d, RBBB_NORMAL_PART_S) if p.subtype == "rbbb" else d
        waves.append(("QRS", 0.20 * dn, 0.07 * dn, 0.07 * dn, 0.15 * amp * _unit(-0.7, 0.2, -0.7)))
        waves.append(("QRS", 0.36 * dn, 0.08 * dn, 0.08 * dn, _R1_FRAC * amp * _unit(*_R1_DIR)))
        waves.append(("QRS", 0.75 * dn, 0.085 * dn, 0.085 * dn, 0.35 * amp * _unit(-0.3, -0.5, 0.8)))
        main = [(0.53 * dn, 0.1 * dn, 0.1 * dn, 1.0, 0.0)]
        if p.subtype == "rbbb":  # slow right-ventricular activation fills 0.6 dn .. d
            sig = (d - 0.6 * dn) / 5.0
            waves.append(("QRS", 0.5 * (d + 0.6 * dn), sig, sig, sp["rprime_mv"] * _unit(*_RPRIME_DIR)))
    if p.prior_mi_territory:
        q_dir, q_leads, _ = _PRIOR_MI[p.prior_mi_territory]
        waves.append(("QRS", 0.2 * d, 0.08 * d, 0.1 * d, scale_to_leads(np.asarray(q_dir), p.prior_mi_q_mv, q_leads)))
    other_area = sum(0.5 * _SQRT_2PI * (sl + sr) * v for g, _, sl, sr, v in waves if g == "QRS")
    main_area = sum(0.5 * _SQRT_2PI * (sl + sr) * w for _, sl, sr, w, _ in main)
    r_vec = _solve_main_vector(p.axis_deg, amp, p.qrs_z_ratio * amp, main_area, other_area)
    # LBBB's two humps turn from anterior to posterior (a loop, not a line); the turn cancels in the net area
    turn = 0.3 * np.linalg.norm(r_vec) * np.array([0.0, 0.0, 1.0])
    waves += [("QRS", c, sl, sr, w * r_vec + k * turn) for c, sl, sr, w, k in main]
    r_dir = r_vec / np.linalg.norm(r_vec)

    # T wave and ST components
    sr_t = float(np.clip(0.1 * qt, 0.03, 0.05))
    t_peak = qt - 2.0 * sr_t
    theta_t = np.deg2rad(p.t_angle_deg)
    t_vec = p.t_amp_mv * _unit(np.cos(theta_t), np.sin(theta_t), -0.6)
    st_vec = scale_to_leads(_unit(0.3, 0.2, -1.0), p.benign_st_mv, ("V2", "V3")) if p.benign_st_mv > 0 else np.zeros(3)
    lateral = ("I", "aVL", "V5", "V6")
    if p.subtype == "nonspecific_t":
        t_vec = sp["t_factor"] * _rotate_toward(t_vec, sp["t_rotation_deg"], sp["t_psi_deg"])
    elif p.subtype == "demand_st":
        st_vec = st_vec + scale_to_leads(_unit(-0.5, -0.5, 0.2), sp["st_mv"], LEADS)
        t_vec = sp["t_factor"] * t_vec
    elif p.subtype == "lvh_strain":
        st_vec = st_vec + scale_to_leads(-r_dir, sp["strain_st_mv"], lateral)
        t_vec = scale_to_leads(-r_dir, sp["strain_t_mv"], lateral)
    elif p.subtype == "rbbb":
        t_vec = t_vec - 0.4 * sp["rprime_mv"] * _unit(*_RPRIME_DIR)
    elif p.subtype == "lbbb":
        st_vec = st_vec + scale_to_leads(-r_dir, sp["discordant_st_mv"], LEADS)
        t_vec = scale_to_leads(-r_dir, 1.3 * p.t_amp_mv, LEADS)
    if p.prior_mi_territory:
        _, q_leads, t_dir = _PRIOR_MI[p.prior_mi_territory]
        t_vec = t_vec + scale_to_leads(np.asarray(t_dir), 0.12, q_leads)
    occ_st, occ_j, occ_t = occlusion_vectors(p.pattern, p.st_mv, p.territory_jitter)
    waves.append(("T", t_peak, 1.7 * sr_t, sr_t, t_vec + occ_t))

    groups = np.zeros((len(GROUPS), 3, t.size))
    for gi, name in enumerate(GROUPS):
        sel = [w for w in waves if w[0] == name]
        if sel:
            c, sl, sr, vec = (np.array(x) for x in zip(*[w[1:] for w in sel], strict=True))
            groups[gi] = render_waves(t, c, sl, sr, vec)
    onset = smooth_step(t, d - 0.004, 0.003)
    plateau = onset * (1.0 - smooth_step(t, t_peak, 0.5 * sr_t))
    decay = onset * np.exp(-np.clip(t - d, 0.0, None) / DE_WINTER_DECAY_S)
    groups[GROUPS.index("ST")] = np.outer(st_vec + occ_st, plateau) + np.outer(occ_j, decay)
    return BeatTemplate(t_s=t, groups=groups, qt_s=float(qt))
