"""The physiological synthetic cohort: 12-lead ECGs from a 3-D cardiac dipole, with occlusion labels.

Each patient's heart is a dipole (vectorcardiogram) made of Gaussian P, QRS and T waves, projected to
I, II, V1-V6 with the Dower transform; III, aVR, aVL and aVF follow exactly (Einthoven / Goldberger).
An occluded LAD, LCx or RCA adds a subtle (0.05-0.2 mV) injury vector pointing at its territory; the
non-occluded majority comes from distinct subtypes (normal, nonspecific T, demand ST depression, LVH
with strain, RBBB, LBBB, AF); age, sex and history shift both the ECG and the occlusion probability.

    from vlm_ecg.synth import make_cohort
    records = make_cohort(n=2800, prevalence=0.12, confounding=1.0, noise=1.0, seed=0)

Modules: `config` (SynthConfig, NoiseConfig), `patient` (PatientParams, sample_patient, the causal
model), `morphology` (beat template), `territory` (occlusion patterns), `vcg` (Dower projection, wave
rendering), `noise` (electrode noise), `cohort` (records and cohorts).
"""

from .cohort import generate_record, iter_cohort, make_cohort, make_examples, record_rng, synthesize_record
from .config import SUBTYPES, NoiseConfig, SynthConfig
from .patient import OCCLUSION_PATTERNS, PatientParams, occlusion_probability, sample_patient

__all__ = [
    "OCCLUSION_PATTERNS",
    "SUBTYPES",
    "NoiseConfig",
    "PatientParams",
    "SynthConfig",
    "generate_record",
    "iter_cohort",
    "make_cohort",
    "make_examples",
    "occlusion_probability",
    "record_rng",
    "sample_patient",
    "synthesize_record",
]
