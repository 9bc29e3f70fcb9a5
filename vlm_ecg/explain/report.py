"""The result of explaining one ECG: edits in words, the counterfactual record, probabilities, report files.

`Explanation.texts` gives the edits in words ("lower V3 ST segment (J+60 ms) by 0.10 mV"), `Explanation.plot`
draws the original 12-lead page with the counterfactual of the changed leads over it in blue, and
`Explanation.save` writes report.json, overlay.png and counterfactual.npz.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..ecg import LEADS, Ecg
from ..run_folder import write_text_atomic
from .edits import Edit

logger = logging.getLogger(__name__)

COUNTERFACTUAL_RGB = (20, 70, 230)
REPORT_FILE = "report.json"
OVERLAY_FILE = "overlay.png"
COUNTERFACTUAL_FILE = "counterfactual.npz"


@dataclass
class Explanation:
    """A counterfactual explanation of the model's triage decision on one ECG.

    Attributes:
        ecg: the explained record (standardised: 500 Hz, 10 s).
        counterfactual: the edited record.
        edits: the edits in the order they were made (merged per lead and segment).
        prob_before, prob_after: the model's decision probability on the original and the counterfactual.
        threshold: the run's decision threshold (decision = probability >= threshold).
        method: "agent", "tree" or "greedy".
        probs: the probability after each step (first entry = `prob_before`).
        seconds: wall time of the search.
        n_queries: model calls the search made.
        limb_policy: how limb-lead edits were propagated ("dipole" or "isolated").
        top_k: agent edits tried per step (1 = the plain policy).
        notes: anything the reader should know (e.g. why nothing was edited).
    """

    ecg: Ecg
    counterfactual: Ecg
    edits: list[Edit]
    prob_before: float
    prob_after: float
    threshold: float
    method: str
    probs: list[float] = field(default_factory=list)
    seconds: float = 0.0
    n_queries: int = 0
    limb_policy: str = "dipole"
    top_k: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def decision_before(self) -> bool:
        return self.prob_before >= self.threshold

    @property
    def flipped(self) -> bool:
        """Whether the counterfactual's decision differs from the original's."""
        return (self.prob_after >= self.threshold) != self.decision_before

    @property
    def texts(self) -> list[str]:
        return [e.describe() for e in self.edits]

    @property
    def total_edit_mv(self) -> float:
        return float(sum(abs(e.amplitude_mv) for e in self.edits))

    @property
    def changed_leads(self) -> list[str]:
        """Leads whose signal the edits changed (named leads plus limb leads moved with them), in `LEADS` order."""
        diff = np.abs(self.counterfactual.signal - self.ecg.signal).max(axis=1)
        return [lead for lead, d in zip(LEADS, diff, strict=True) if d > 1e-6]

    def summary(self) -> str:
        """One paragraph in words."""
        verdict = "positive (angiography now)" if self.decision_before else "negative"
        if not self.edits:
            return f"The model's decision is {verdict} (p = {self.prob_before:.2f}); no edit was found. " + " ".join(
                self.notes
            )
        change = "flips" if self.flipped else "does not flip"
        return (
            f"The model's decision is {verdict} (p = {self.prob_before:.2f}, threshold {self.threshold:.2f}). "
            f"After {'; '.join(self.texts)}, p = {self.prob_after:.2f}: the decision {change}."
        )

    def to_dict(self) -> dict:
        return {
            "id": str(self.ecg.meta.get("id", self.ecg.source)),
            "method": self.method,
            "prob_before": float(self.prob_before),
            "prob_after": float(self.prob_after),
            "threshold": float(self.threshold),
            "decision_before": bool(self.decision_before),
            "flipped": bool(self.flipped),
            "edits": [e.to_dict() for e in self.edits],
            "n_edits": len(self.edits),
            "total_edit_mv": self.total_edit_mv,
            "changed_leads": self.changed_leads,
            "probs": [float(p) for p in self.probs],
            "seconds": float(self.seconds),
            "n_queries": int(self.n_queries),
            "limb_policy": self.limb_policy,
            "top_k": int(self.top_k),
            "summary": self.summary(),
            "notes": list(self.notes),
        }

    # ------------------------------------------------------------------ files
    def plot(self, path: str | Path, config=None) -> Path:
        """PNG of the original 12-lead page (black) with the counterfactual of every changed lead drawn over it
        (blue) on the same paper grid, and the edits and probabilities as a caption.

        Args:
            path: the PNG to write (atomically).
            config: a `vlm_ecg.render.RenderConfig` (default: letter page at 200 dpi, 3x4 + II rhythm).
        """
        from PIL import Image, ImageDraw, ImageFont

        from ..render import RenderConfig, render_ecg_with_layout

        config = config or RenderConfig()
        image, layout = render_ecg_with_layout(self.ecg, config)
        canvas = Image.fromarray(image)
        draw = ImageDraw.Draw(canvas)
        width = max(2, int(round(0.35 * layout.px_per_mm)))
        fs = self.counterfactual.fs
        for panel in layout.panels:
            if panel.lead not in self.changed_leads:
                continue
            a = int(round(panel.start_s * fs))
            b = min(int(round((panel.start_s + panel.duration_s) * fs)), self.counterfactual.n_samples)
            if b - a < 2:
                continue
            t = np.arange(a, b) / fs
            mv = self.counterfactual.signal[LEADS.index(panel.lead), a:b]
            x, y = layout.to_pixels(panel.lead, t, mv, rhythm=panel.rhythm)
            y = np.clip(y, panel.box_px[1], panel.box_px[3])
            draw.line(list(zip(x.tolist(), y.tolist(), strict=True)), fill=COUNTERFACTUAL_RGB, width=width)
        font = ImageFont.load_default(size=max(12, int(round(2.6 * layout.px_per_mm))))
        caption = [
            f"black: original   blue: counterfactual ({self.method})   "
            f"p {self.prob_before:.2f} -> {self.prob_after:.2f} (threshold {self.threshold:.2f})",
            "; ".join(self.texts) if self.edits else "no edit",
        ]
        x0, y0 = layout.page_box_px[0] + 4 * layout.px_per_mm, layout.page_box_px[1] + 1.5 * layout.px_per_mm
        draw.multiline_text((x0, y0), "\n".join(caption), fill=COUNTERFACTUAL_RGB, font=font)
        return _save_png(canvas, Path(path))

    def save(self, out_dir: str | Path, stem: str = "") -> dict[str, Path]:
        """Write ``{stem}report.json``, ``{stem}overlay.png`` and ``{stem}counterfactual.npz`` into `out_dir`."""
        from ..io import write_ecg

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "report": out_dir / f"{stem}{REPORT_FILE}",
            "overlay": out_dir / f"{stem}{OVERLAY_FILE}",
            "counterfactual": out_dir / f"{stem}{COUNTERFACTUAL_FILE}",
        }
        self.plot(paths["overlay"])
        write_ecg(self.counterfactual, paths["counterfactual"])
        report = {**self.to_dict(), "files": {k: p.name for k, p in paths.items()}}
        write_text_atomic(paths["report"], json.dumps(report, indent=2))
        return paths


def _save_png(image, path: Path) -> Path:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    image.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
