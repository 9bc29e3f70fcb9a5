"""The demo's explanation panel: the run's counterfactual explainer (`vlm_ecg.explain`) turned into page outputs.

The trained RL agent explains a positive decision in a few model calls, fast enough for a web page. The greedy
search (the explainer's baseline) needs hundreds of calls per edit, tens of seconds to minutes on a CPU, so the demo
never starts it on its own: it runs only when the user asks for it (the "greedy search" button, ``/explain_greedy``).
Without a trained explainer the panel says how to train one (``vlm-ecg explain-train RUN``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from .ecg import Ecg
from .labels import Confounders

logger = logging.getLogger(__name__)

TRAIN_HINT = "train one with `vlm-ecg explain-train {run}`"


def read_png(path: str | Path | None) -> np.ndarray | None:
    """A PNG as an (H, W, 3) uint8 array: the page gets pixels, so no file outside gradio's folders is served."""
    if path is None or not Path(path).is_file():
        return None
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


class DemoExplainer:
    """The explanation outputs of the demo: edits in words, overlay picture, tree rules and tree picture.

    Args:
        explainer: a `vlm_ecg.explain.Explainer` (its agent may be None: greedy search only).
        run_label: how the hint names the run (``vlm-ecg explain-train RUN``).
        problem: why the run's explainer could not be loaded, shown instead of the usual hint.
    """

    def __init__(self, explainer, run_label: str = "RUN", problem: str | None = None):
        self.explainer = explainer
        self.run_label = run_label
        self.problem = problem
        self._tree = read_png(explainer.tree_png)

    @classmethod
    def for_predictor(cls, predictor) -> DemoExplainer:
        """The explainer of the predictor's run (``RUN/explainer/``), or a greedy-only one when it has none or when
        it cannot be loaded (e.g. saved by another version): the demo still starts, and says so."""
        from .explain import Explainer, load_explainer

        run_dir = getattr(predictor, "run_dir", None)
        if run_dir is None:
            return cls(Explainer(predictor))
        try:
            return cls(load_explainer(run_dir, predictor=predictor, require_agent=False), str(run_dir))
        except Exception as exc:  # an optional part: whatever breaks it, the demo runs (greedy search only)
            logger.warning("%s: the explainer cannot be loaded (%s); greedy search only", run_dir, exc)
            problem = f"the run's explainer cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0]})"
            return cls(Explainer(predictor), str(run_dir), problem)

    def _missing(self) -> str:
        hint = TRAIN_HINT.format(run=self.run_label)
        return f"{self.problem}; re{hint}" if self.problem else f"this run has no trained explainer; {hint}"

    @property
    def has_agent(self) -> bool:
        return self.explainer.agent is not None

    def rules_markdown(self) -> str:
        """The distilled tree's rules with its fidelity, or how to get them."""
        rules = self.explainer.rules
        if not rules:
            return f"**Decision-tree rules:** none ({self._missing()})."
        report = self.explainer.report
        fidelity = (report.get("distill") or {}).get("fidelity")
        head = "**Distilled decision tree** (the agent's first edit, as rules)"
        if isinstance(fidelity, (int, float)):
            head += f"; fidelity to the agent {fidelity:.2f}"
        return f"{head}:\n\n```\n{rules.strip()}\n```"

    def tree_png(self) -> np.ndarray | None:
        return self._tree

    def explain(self, std: Ecg, predictor, patient: Confounders | None, greedy: bool = False) -> tuple:
        """(edits markdown, overlay picture or None, rules markdown, tree picture or None) for one record.

        Args:
            std: the standardised record.
            predictor: the model (for the decision shown before the search).
            patient: its confounders (None = unknown).
            greedy: run the greedy search whatever the decision (slow); otherwise only the trained agent runs, and
                only on a positive decision (what it was trained to explain).
        """
        result = predictor.predict_signals(std.signal[None], np.array([predictor.stratum_of(patient)]))
        prob = float(predictor.decision_prob(result)[0])
        positive = prob >= predictor.decision_threshold
        if not greedy and not self.has_agent:
            text = (
                f"**No explainer**: {self._missing()}. You can also run the greedy counterfactual search below "
                "(hundreds of model calls: slow on a CPU)."
            )
            return text, None, self.rules_markdown(), self._tree
        if not greedy and not positive:
            text = (
                f"The decision is negative (probability {prob:.4f} < threshold {predictor.decision_threshold:.4f}). "
                "The trained explainer explains positive decisions; the greedy search below looks for the edits "
                "that would make this ECG positive (slow on a CPU)."
            )
            return text, None, self.rules_markdown(), self._tree
        explanation = self.explainer.explain(std, method="greedy" if greedy else "agent", confounders=patient)
        return self._markdown(explanation), self._overlay(explanation), self.rules_markdown(), self._tree

    @staticmethod
    def _markdown(explanation) -> str:
        verdict = "flips the decision" if explanation.flipped else "does not flip the decision"
        lines = [
            f"**Counterfactual ({explanation.method}, {explanation.n_queries} model calls, "
            f"{explanation.seconds:.1f} s)**: probability {explanation.prob_before:.4f} -> "
            f"{explanation.prob_after:.4f} (threshold {explanation.threshold:.4f}); the edit set {verdict}.",
            "",
        ]
        if explanation.edits:
            lines += [f"{i}. {text}" for i, text in enumerate(explanation.texts, 1)]
        else:
            lines.append("No edit was needed or found.")
        lines += [f"\n_{note}_" for note in explanation.notes]
        return "\n".join(lines)

    @staticmethod
    def _overlay(explanation) -> np.ndarray | None:
        from .render import RenderConfig

        with tempfile.TemporaryDirectory(prefix="vlm_ecg_overlay_") as tmp:
            path = explanation.plot(Path(tmp) / "overlay.png", config=RenderConfig(dpi=100.0))
            return read_png(path)
