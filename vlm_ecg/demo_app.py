"""The Gradio demo: upload an ECG (or pick a bundled example), see the paper image, the triage decision, the culprit
vessel, stenosis estimates, a counterfactual explanation and the model card.

    demo = build_demo(Predictor.from_pretrained("runs/default"))    # a gr.Blocks; nothing is launched
    demo.queue().launch(server_name="127.0.0.1")                     # or: launch_demo(run=None)

Entry points: ``python demo [--run RUN] [--host H] [--port N] [--share]``, ``vlm-ecg demo`` (same arguments) and
``demo/app.py`` (module-level ``demo`` for ``gradio demo/app.py``).

Privacy and safety: the server binds 127.0.0.1 unless told otherwise, opens no share link unless asked, sends no
analytics (``GRADIO_ANALYTICS_ENABLED=False`` and ``HF_HUB_DISABLE_TELEMETRY=1`` are set before gradio is imported,
unless the user set them), and refuses uploads above `MAX_FILE_SIZE`. A bad upload becomes a readable message in the
page (the file name and what is wrong), never a stack trace; the server keeps answering.

API (also used by ``gradio_client`` and ``bench/bench_demo.py``): ``/predict``, ``/explain`` and ``/explain_greedy``,
all taking (files, example, age, sex, hypertension, diabetes, prior_mi).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from .demo_explain import DemoExplainer, read_png
from .demo_inputs import EXAMPLES, SEXES, UPLOAD_TYPES, YES_NO, DemoInputError, EcgSource
from .ecg import Ecg
from .errors import EcgError
from .labels import VESSELS
from .predict import Prediction, Predictor, resolve_run

logger = logging.getLogger(__name__)

MAX_FILE_SIZE = "10mb"  # a 12-lead 10-s WFDB record at 500 Hz is ~120 kB; long Holter-like files are refused
# The triage bars: P(occlusion) adjusted (what the decision uses) and raw (conditioned on this patient's stratum).
ADJUSTED_BAR = "P(occlusion), confounder-adjusted"
RAW_BAR = "P(occlusion | this patient)"
DISCLAIMER = (
    "**Research use only. Not a medical device.** This demo must not be used to diagnose, treat or triage patients."
)


def quiet_environment() -> None:
    """Switch gradio analytics and Hugging Face Hub telemetry off unless the user chose otherwise.

    Both are read when gradio / huggingface_hub are imported, so entry points call this before loading anything.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _gradio():
    """gradio, imported after `quiet_environment`."""
    quiet_environment()
    import gradio

    return gradio


class _ImageSpool:
    """PNG files handed to gradio by path, one unique file per picture.

    Gradio copies a returned file into its cache atomically, but writes a returned array in place under the hash of
    its content: two users shown the same picture (the same example) at once race on one file, and a download can
    read it half-written. Unique files avoid that. Files older than `max_age_s` are deleted on the next write
    (gradio has copied them long before); the folder goes when the process ends.
    """

    def __init__(self, max_age_s: float = 300.0):
        self._dir = tempfile.TemporaryDirectory(prefix="vlm_ecg_demo_")
        self.folder = Path(self._dir.name)
        self.max_age_s = max_age_s

    def write(self, image: np.ndarray | None, keep: bool = False) -> str | None:
        """Write an (H, W, 3) uint8 picture; returns its path (None for None). `keep`: never pruned."""
        if image is None:
            return None
        from PIL import Image

        path = self.folder / f"{'keep-' if keep else ''}{uuid.uuid4().hex}.png"
        Image.fromarray(image).save(path, format="PNG", compress_level=3)
        self._prune()
        return str(path)

    def _prune(self) -> None:
        cutoff = time.time() - self.max_age_s
        for old in self.folder.glob("[!k]*.png"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except FileNotFoundError:  # another request pruned it first
                pass


# ---------------------------------------------------------------------------------------------- outputs
def _decision_text(p: Prediction, stratum_name: str) -> str:
    verdict = "OCCLUSION SUSPECTED: refer for angiography now" if p.decision else "No occlusion suspected"
    sign = ">=" if p.decision else "<"
    if p.triage_prob_adjusted is None:  # a model without confounder strata: one probability
        lines = [f"Probability {p.triage_prob:.4f} {sign} decision threshold {p.decision_threshold:.4f}."]
    else:
        lines = [
            f"Adjusted probability {p.triage_prob_adjusted:.4f} {sign} decision threshold "
            f"{p.decision_threshold:.4f} (chosen on validation data).",
            f"Raw probability {p.triage_prob:.4f} for the patient's stratum *{stratum_name}*; the adjusted one "
            "averages over the training population's strata, so it does not lean on who the patient is.",
        ]
    if p.notes:
        lines.append("Notes on the recording: " + "; ".join(p.notes))
    return "\n\n".join([f"### {verdict}", *lines])


def _triage_bars(p: Prediction) -> dict[str, float]:
    bars = {RAW_BAR: p.triage_prob}
    if p.triage_prob_adjusted is not None:
        bars[ADJUSTED_BAR] = p.triage_prob_adjusted
    return bars


def _stenosis_table(p: Prediction) -> list[list]:
    return [[v, round(100 * p.stenosis[v], 1), "yes" if p.stenosis[v] > 0.7 else "no"] for v in VESSELS]


def _error_message(exc: Exception) -> str:
    if isinstance(exc, (EcgError, DemoInputError)):
        return f"**Cannot use this ECG.** {exc}"
    return f"**Something went wrong** ({type(exc).__name__}: {exc}). The server is still running; try another file."


def build_demo(
    predictor: Predictor,
    *,
    explainer=None,
    examples_seed: int = 0,
    title: str = "vlm_ecg: ECG virtual coronary angiography",
):
    """The demo page as a `gradio.Blocks` (not launched), with the ``/predict`` and ``/explain`` API endpoints.

    Args:
        predictor: the trained model (its ``run_dir`` provides the model card facts, plots and explainer).
        explainer: a `vlm_ecg.demo_explain.DemoExplainer`; None loads the run's trained explainer when present
            (without one the page says how to train it and offers the greedy search on request).
        examples_seed: which synthetic patient the bundled examples show.
    """
    from .model_card import card_facts, facts_markdown

    gr = _gradio()
    source = EcgSource(examples_seed)
    explainer = explainer if explainer is not None else DemoExplainer.for_predictor(predictor)
    spool = _ImageSpool()
    tree_path = spool.write(explainer.tree_png(), keep=True)
    names = (predictor.facts.get("strata") or {}).get("names") or []

    def stratum_name(code: int) -> str:
        return names[code] if 0 <= code < len(names) else "unknown (age, sex and history not given)"

    def predict(files, example, age, sex, hypertension, diabetes, prior_mi):
        try:
            std, patient, name = source.load(files, example, age, sex, hypertension, diabetes, prior_mi)
            p = predictor.predict(std, patient)
            image = spool.write(_render_page(std))
        except Exception as exc:  # every failure becomes a message in the page; the server stays up
            if not isinstance(exc, (EcgError, DemoInputError)):
                logger.exception("prediction failed")
            return _error_message(exc), None, None, None, None, None, None, None
        status = f"Predicted **{name}** (record id `{p.id}`)."
        return (
            status,
            image,
            _triage_bars(p),
            _decision_text(p, stratum_name(p.stratum)),
            round(p.triage_prob, 4),
            None if p.triage_prob_adjusted is None else round(p.triage_prob_adjusted, 4),
            dict(p.culprit_probs),
            _stenosis_table(p),
        )

    def explain(files, example, age, sex, hypertension, diabetes, prior_mi, greedy=False):
        try:
            std, patient, _ = source.load(files, example, age, sex, hypertension, diabetes, prior_mi)
            text, overlay, rules_text, _ = explainer.explain(std, predictor, patient, greedy=greedy)
            return text, spool.write(overlay), rules_text, tree_path
        except Exception as exc:
            if not isinstance(exc, (EcgError, DemoInputError)):
                logger.exception("explanation failed")
            return _error_message(exc), None, explainer.rules_markdown(), tree_path

    def explain_greedy(files, example, age, sex, hypertension, diabetes, prior_mi):
        return explain(files, example, age, sex, hypertension, diabetes, prior_mi, greedy=True)

    card = (
        facts_markdown(card_facts(predictor.run_dir))
        if predictor.run_dir is not None
        else "No run folder: model card facts unavailable."
    )
    plots = (
        [spool.write(read_png(p), keep=True) for p in sorted(predictor.run_dir.glob("plots/*.png"))]
        if predictor.run_dir
        else []
    )

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"# {title}\n{DISCLAIMER}")
        with gr.Tab("Predict"):
            with gr.Row():
                with gr.Column(scale=1):
                    files = gr.File(
                        label="ECG file(s): WFDB .hea + .dat together, or one .csv / .npz",
                        file_count="multiple",
                        file_types=UPLOAD_TYPES,
                        elem_id="upload",
                    )
                    example = gr.Dropdown(
                        choices=list(EXAMPLES), value=None, label="or a bundled example (synthetic)", elem_id="example"
                    )
                    with gr.Accordion("Patient (optional; blank = what the file states, else unknown)", open=False):
                        age = gr.Number(value=None, label="age (years)", minimum=0, maximum=130, elem_id="age")
                        sex = gr.Radio(SEXES, value="unknown", label="sex")
                        hypertension = gr.Radio(YES_NO, value="unknown", label="hypertension")
                        diabetes = gr.Radio(YES_NO, value="unknown", label="diabetes")
                        prior_mi = gr.Radio(YES_NO, value="unknown", label="prior myocardial infarction")
                    button = gr.Button("Predict", variant="primary", elem_id="predict-button")
                    status = gr.Markdown(label="status", elem_id="status")
                with gr.Column(scale=2):
                    decision = gr.Markdown(label="decision", elem_id="decision")
                    triage = gr.Label(label="triage", show_heading=False, elem_id="triage")
                    with gr.Row():
                        prob_raw = gr.Number(label="raw probability P(y | x, z)", precision=4, elem_id="prob-raw")
                        prob_adjusted = gr.Number(
                            label="adjusted probability P(y | do(x))", precision=4, elem_id="prob-adjusted"
                        )
                    with gr.Row():
                        culprit = gr.Label(label="culprit vessel", num_top_classes=4, elem_id="culprit")
                        stenosis = gr.Dataframe(
                            headers=["vessel", "stenosis %", "> 70 %"],
                            label="stenosis estimates",
                            interactive=False,
                            elem_id="stenosis",
                        )
                    image = gr.Image(label="12-lead ECG", type="filepath", elem_id="ecg-image")
            gr.Markdown("## Counterfactual explanation: the smallest physiological edits that flip the decision")
            with gr.Row():
                with gr.Column():
                    edits = gr.Markdown(label="explanation", elem_id="explanation")
                    greedy_button = gr.Button("Greedy counterfactual search (slow on a CPU)", elem_id="greedy-button")
                    overlay = gr.Image(
                        label="overlay: original (black), counterfactual (blue)",
                        type="filepath",
                        elem_id="overlay",
                    )
                with gr.Column():
                    rules = gr.Markdown(explainer.rules_markdown(), label="rules", elem_id="rules")
                    tree = gr.Image(
                        tree_path,
                        label="distilled decision tree",
                        type="filepath",
                        elem_id="tree",
                    )
        with gr.Tab("Model card"):
            gr.Markdown(card, elem_id="model-card")
            if plots:
                gr.Gallery(plots, label="test-set plots", columns=3)

        inputs = [files, example, age, sex, hypertension, diabetes, prior_mi]
        outputs = [status, image, triage, decision, prob_raw, prob_adjusted, culprit, stenosis]
        explanation = [edits, overlay, rules, tree]
        button.click(predict, inputs, outputs, api_name="predict").then(
            explain, inputs, explanation, api_name="explain"
        )
        greedy_button.click(explain_greedy, inputs, explanation, api_name="explain_greedy")
        files.upload(lambda: None, None, example, api_name=False)  # an upload replaces the chosen example

        def pick_example(label):
            record = source.examples.get(label)
            if record is None:
                return [gr.skip()] * 6
            c = record.confounders
            yn = {-1: "unknown", 0: "no", 1: "yes"}
            age_value = None if math.isnan(c.age_years) else c.age_years
            return None, age_value, c.sex or "unknown", yn[c.hypertension], yn[c.diabetes], yn[c.prior_mi]

        example.change(pick_example, example, [files, age, sex, hypertension, diabetes, prior_mi], api_name=False)
    return demo


def _render_page(std: Ecg) -> np.ndarray:
    """The record as a letter-size 12-lead page at 100 dpi (1100 x 850 px): for people, not the model input."""
    from .render import RenderConfig, render_ecg

    return render_ecg(std, RenderConfig(dpi=100.0))


# ---------------------------------------------------------------------------------------------- launching
def launch_demo(
    run: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    max_file_size: str | int = MAX_FILE_SIZE,
) -> int:
    """Load a run (default ``runs/default``), build the demo and serve it until interrupted; returns an exit status.

    Prints the command that trains a default run and returns 2 when there is no run to load.
    """
    quiet_environment()
    try:
        predictor = Predictor.from_pretrained(resolve_run(run))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    demo = build_demo(predictor)
    demo.queue(default_concurrency_limit=1).launch(
        server_name=host, server_port=port, share=share, max_file_size=max_file_size, show_error=False
    )
    return 0
