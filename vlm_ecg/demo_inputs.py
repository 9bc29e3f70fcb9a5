"""What the demo page turns into a record and a patient: an upload (a WFDB pair staged side by side, CSV, NPZ) or a
bundled synthetic example, and the optional patient fields. Every problem is an `EcgError` or a `DemoInputError`
whose message the page shows."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

from .ecg import Ecg
from .errors import EcgError
from .labels import Confounders
from .predict import confounders_from_meta

UPLOAD_TYPES = [".hea", ".dat", ".mat", ".csv", ".tsv", ".npz"]
EXAMPLES = {  # label shown -> culprit of the `vlm_ecg.synth.make_examples` record
    "LAD occlusion (anterior)": "LAD",
    "LCx occlusion (lateral)": "LCx",
    "RCA occlusion (inferior)": "RCA",
    "no occlusion": "none",
}
YES_NO = ["unknown", "no", "yes"]
SEXES = ["unknown", "M", "F"]


class DemoInputError(ValueError):
    """What the user gave cannot be predicted (no file, several records, ...): shown in the page."""


# ---------------------------------------------------------------------------------------------- inputs
def _stage_upload(paths: list[str], folder: Path) -> Path:
    """Copy uploaded files into one folder under their own names (a WFDB header finds its .dat there); return the
    file to read. Gradio stores every upload in its own folder, so a .hea and its .dat never sit side by side."""
    staged = []
    for p in paths:
        dst = folder / Path(p).name
        shutil.copyfile(p, dst)
        staged.append(dst)
    headers = [p for p in staged if p.suffix.lower() == ".hea"]
    others = [p for p in staged if p.suffix.lower() not in (".hea", ".dat", ".mat")]
    if len(headers) > 1 or (headers and others) or len(others) > 1:
        names = ", ".join(sorted(p.name for p in staged))
        raise DemoInputError(
            f"{len(staged)} files uploaded ({names}): upload one ECG at a time "
            "(a WFDB record as its .hea and .dat together, or one .csv / .npz file)"
        )
    return headers[0] if headers else (others[0] if others else staged[0])


def patient_confounders(base: Confounders | None, age, sex, hypertension, diabetes, prior_mi) -> Confounders | None:
    """The patient: fields the user filled in override what the record states; all blank and nothing stated = None."""
    base = base or Confounders()
    history = {}
    for name, value, default in (
        ("hypertension", hypertension, base.hypertension),
        ("diabetes", diabetes, base.diabetes),
        ("prior_mi", prior_mi, base.prior_mi),
    ):
        history[name] = {"no": 0, "yes": 1}.get(value, default)
    try:
        age_years = float(age) if age not in (None, "") else base.age_years
    except (TypeError, ValueError):
        raise DemoInputError(f"age must be a number of years, got {age!r}") from None
    if not math.isnan(age_years) and not 0 <= age_years <= 130:
        raise DemoInputError(f"age must lie between 0 and 130 years, got {age_years:g}")
    c = Confounders(age_years=age_years, sex=sex if sex in ("M", "F") else base.sex, **history)
    known = not math.isnan(c.age_years) or c.sex or any(v != -1 for v in history.values())
    return c if known else None


class EcgSource:
    """Where the page's ECG comes from: an upload or one of the bundled synthetic examples.

    Args:
        examples_seed: which synthetic patient the examples show (`vlm_ecg.synth.make_examples`).
    """

    def __init__(self, examples_seed: int = 0):
        from .synth import make_examples

        records = make_examples(examples_seed)
        self.examples = {label: records[culprit] for label, culprit in EXAMPLES.items()}

    def load(self, files, example, age, sex, hypertension, diabetes, prior_mi) -> tuple[Ecg, Confounders | None, str]:
        """The standardised record, the patient, and a display name, from an upload or an example.

        Raises:
            EcgError / DemoInputError: with a message for the page.
        """
        from .io import read_ecg

        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if paths:
            with tempfile.TemporaryDirectory(prefix="vlm_ecg_upload_") as tmp:
                target = _stage_upload(paths, Path(tmp))
                try:
                    ecg = read_ecg(target)
                except EcgError as exc:  # name the file as the user knows it, not the staging folder
                    raise type(exc)(Path(exc.source).name, exc.problem) from None
                ecg.meta["source"] = target.name
                stated = confounders_from_meta(ecg.meta)
                name = target.name
        elif example in self.examples:
            record = self.examples[example]
            ecg, stated, name = record.ecg, record.confounders, f"example: {example}"
        else:
            raise DemoInputError("no ECG given: upload a file (WFDB .hea + .dat, .csv or .npz) or pick an example")
        try:
            std = ecg.standardize()
        except EcgError as exc:
            raise type(exc)(name, exc.problem) from None
        return std, patient_confounders(stated, age, sex, hypertension, diabetes, prior_mi), name
