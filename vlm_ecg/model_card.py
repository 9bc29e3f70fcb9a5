"""The model card of a trained run: the facts (base tower, data, metrics with CIs, per-stratum results, limits) and
the Hugging Face README.md built from them.

    facts = card_facts("runs/default")            # plain dict, also what the demo's "Model card" tab shows
    card = model_card("runs/default", repo_id="alice/vlm-ecg-tiny")
    card.save("README.md")                        # YAML metadata + markdown body; huggingface_hub.ModelCard parses it

Everything comes from files the run folder already holds (``final/config.json``, ``final/run.json``,
``train_config.yaml``, ``metrics.json``, ``explainer/``), so a pushed repository (which carries the same files)
gives the same card. Local paths never reach the card: a data folder is named by its last component only.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import yaml

from .labels import VESSELS

logger = logging.getLogger(__name__)

INTENDED_USE = (
    "Research on ECG-based triage of acute coronary occlusion and culprit-vessel localisation: method development, "
    "benchmarking, teaching. **Not a medical device.** It is not cleared or approved by any regulator and must not "
    "be used to diagnose, treat or triage patients, nor to delay angiography or any other care."
)
LIMITATIONS = (
    "Metrics are estimated on the run's own test split; confidence intervals are percentile bootstrap intervals and "
    "small test sets give wide ones.",
    "A model trained on the synthetic cohort has never seen a real patient: its numbers say nothing about clinical "
    "performance.",
    "Real-data labels (e.g. PTB-XL statements) are proxies for angiography, not angiography itself.",
    "Per-stratum results with few patients are unstable; strata absent from the test split are not evaluated.",
    "The decision threshold was chosen on the validation split at the training prevalence; a different prevalence "
    "changes the positive predictive value.",
    "Counterfactual explanations describe what changes the model's output, not the patient's physiology.",
)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _artefact_dir(run_dir: Path) -> Path:
    return run_dir / "final" if (run_dir / "final" / "config.json").is_file() else run_dir


def _name_only(value: str) -> str:
    """A path-like config value reduced to its last component, so no local path leaves the machine."""
    return Path(value).name if ("/" in value or "\\" in value) and not _looks_like_hub_id(value) else value


def _looks_like_hub_id(value: str) -> bool:
    return value.count("/") == 1 and not value.startswith((".", "/", "~")) and not Path(value).exists()


# ---------------------------------------------------------------------------------------------- facts
def _base_facts(config: dict, adapter: dict) -> dict:
    vision = config.get("vision_config") or {}
    signal = config.get("signal_config") or {}
    towers = [t for t in (vision.get("local_tower"), vision.get("global_tower"), vision.get("ocr2_tower")) if t]
    backbone = signal.get("backbone_name_or_path") or None
    return {
        "branches": config.get("branches", "both"),
        "vision_preset": vision.get("preset"),
        "pretrained_towers": towers,
        "image_size_px": vision.get("image_size"),
        "signal_backbone": signal.get("backbone"),
        "signal_backbone_checkpoint": backbone,
        "signal_components": signal.get("components"),
        "num_strata": config.get("num_strata", 0),
        "lora": {"r": adapter["r"], "alpha": adapter.get("lora_alpha")}
        if adapter.get("peft_type") == "LORA"
        else None,
        "modules_to_save": adapter.get("modules_to_save") or [],
    }


def _data_facts(train: dict, metrics: dict) -> dict:
    data = str(train.get("data", "synthetic"))
    val, test = float(train.get("val_fraction", 0.15)), float(train.get("test_fraction", 0.15))
    n_test = (metrics.get("test") or {}).get("n")
    n_val = (metrics.get("val") or {}).get("n")
    if data == "synthetic":
        n = int(train.get("synth_n", 0))
        description = (
            f"the embedded synthetic cohort (`vlm_ecg.synth`): {n} simulated patients, occlusion prevalence "
            f"{float(train.get('synth_prevalence', 0)):.2f}, confounding strength "
            f"{float(train.get('synth_confounding', 0)):g}, noise scale {float(train.get('synth_noise', 0)):g}; "
            f"split {1 - val - test:.0%} / {val:.0%} / {test:.0%} (train / validation / test). No real patient data."
        )
        source = "synthetic"
    else:
        source = _name_only(data)
        description = (
            f"the data set `{source}` (a PTB-XL folder uses its own folds: 1-8 train, 9 validation, 10 test; a saved "
            "`datasets` folder its own splits)."
        )
    return {"source": source, "description": description, "n_val": n_val, "n_test": n_test}


def _metric(block: dict, key: str) -> dict | None:
    value = block.get(key)
    if isinstance(value, dict) and "value" in value:
        return {k: value.get(k) for k in ("value", "ci_low", "ci_high")}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"value": value, "ci_low": None, "ci_high": None}
    return None


def _triage_metrics(block: dict) -> dict:
    keys = ("auroc", "auprc", "sensitivity_at_90_specificity", "sensitivity_at_95_specificity", "brier", "ece")
    return {k: m for k in keys if (m := _metric(block, k)) is not None}


def _strata_rows(block: dict) -> list[dict]:
    rows = []
    for name, g in sorted((block.get("groups") or {}).items()):
        rows.append(
            {
                "stratum": name,
                "n": g.get("n"),
                "n_positive": g.get("n_positive"),
                "sensitivity": g.get("tpr"),
                "specificity": g.get("specificity"),
            }
        )
    return rows


def _explainer_facts(run_dir: Path) -> dict | None:
    """What the explainer folder states: its files and the distillation report's fidelity and validity."""
    folder = run_dir / "explainer"
    if not folder.is_dir():
        return None
    facts: dict = {"files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())}
    distill = _read_json(folder / "distill_report.json").get("distill") or {}
    for key in ("fidelity", "agent_validity", "tree_validity", "depth", "leaves"):
        if isinstance(distill.get(key), (int, float)):
            facts[key] = distill[key]
    return facts


def card_facts(run_dir: str | Path) -> dict:
    """The facts the model card states, read from a run folder (or a pushed repository's folder).

    Returns:
        dict with ``base`` (towers, branches, LoRA), ``data`` (description, split sizes), ``decision_threshold``,
        ``test`` (triage raw / adjusted with CIs, culprit, stenosis), ``strata`` (per-stratum sensitivity and
        specificity of the adjusted decision, with the worst-group gaps) and ``explainer`` (None when absent).
    """
    run_dir = Path(run_dir)
    art = _artefact_dir(run_dir)
    config, facts, metrics = (
        _read_json(art / "config.json"),
        _read_json(art / "run.json"),
        _read_json(run_dir / "metrics.json"),
    )
    train_path = next((p for p in (art / "train_config.yaml", run_dir / "train_config.yaml") if p.is_file()), None)
    train = yaml.safe_load(train_path.read_text()) if train_path else {}
    test = metrics.get("test") or {}
    adjusted = "triage_adjusted" in test
    subgroups = test.get("subgroups_adjusted" if adjusted else "subgroups") or {}
    culprit = test.get("culprit") or {}
    stenosis = test.get("stenosis") or {}
    return {
        "base": _base_facts(config, _read_json(art / "adapter_config.json")),
        "data": _data_facts(train or {}, metrics),
        "training": {
            k: train.get(k) for k in ("imbalance", "sampler", "num_epochs", "learning_rate", "seed") if k in train
        },
        "decision_threshold": facts.get("decision_threshold") or {"value": 0.5, "method": "default"},
        "test": {
            "n": test.get("n"),
            "triage": _triage_metrics(test.get("triage") or {}),
            "triage_adjusted": _triage_metrics(test.get("triage_adjusted") or {}) if adjusted else None,
            "culprit": {k: culprit.get(k) for k in ("n", "accuracy", "macro_f1", "recall") if k in culprit},
            "stenosis_mae": {v: (stenosis.get(v) or {}).get("mae") for v in VESSELS if v in stenosis},
        },
        "strata": {
            "on": "adjusted" if adjusted else "raw",
            "threshold": subgroups.get("threshold"),
            "groups": _strata_rows(subgroups),
            "tpr_gap": (subgroups.get("tpr_gap") or {}).get("gap"),
            "fpr_gap": (subgroups.get("fpr_gap") or {}).get("gap"),
        },
        "explainer": _explainer_facts(run_dir),
    }


# ---------------------------------------------------------------------------------------------- markdown
def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _cell(text: str) -> str:
    """Text for a markdown table cell: stratum names hold "|", which would split the cell."""
    return text.replace("|", r"\|")


def _with_ci(m: dict | None) -> str:
    if not m:
        return "n/a"
    if m.get("ci_low") is None:
        return _num(m["value"])
    return f"{_num(m['value'])} ({_num(m['ci_low'])} to {_num(m['ci_high'])})"


_METRIC_NAMES = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "sensitivity_at_90_specificity": "sensitivity at 90 % specificity",
    "sensitivity_at_95_specificity": "sensitivity at 95 % specificity",
    "brier": "Brier score",
    "ece": "expected calibration error",
}


def facts_markdown(facts: dict, repo_id: str | None = None) -> str:
    """The human-readable model card body (no YAML header): what the README and the demo's card tab show."""
    base, data, test, strata = facts["base"], facts["data"], facts["test"], facts["strata"]
    towers = (
        ", ".join(f"`{t}`" for t in base["pretrained_towers"]) or "none (random-init tiny tower, built from config)"
    )
    lines = [
        "## Model",
        f"- Vision branch: preset `{base['vision_preset']}` at {base['image_size_px']} px; "
        f"pretrained towers: {towers}.",
        f"- Time-series branch: `{base['signal_backbone']}` backbone on the "
        f"{', '.join(base['signal_components'] or [])} component(s) of the signal.",
        f"- Branches used: `{base['branches']}`; confounder strata: {base['num_strata']} "
        "(the adjusted probability is the back-door estimate P(y | do(x)) = sum_z P(y | x, z) P(z)).",
    ]
    if base["lora"]:
        lines.append(
            f"- Adapter: LoRA r={base['lora']['r']}, alpha={base['lora']['alpha']} on the tower's attention; trained "
            f"in full: {', '.join(f'`{m}`' for m in base['modules_to_save'])}."
        )
    threshold = facts["decision_threshold"]
    lines += [
        "",
        "## Data",
        f"Trained and evaluated on {data['description']}",
        f"Validation ECGs: {data['n_val'] or 'n/a'}; test ECGs: {data['n_test'] or 'n/a'}.",
        "",
        "## Results on the test split",
        f"Decision threshold {_num(threshold.get('value'))} ({threshold.get('method', '')}). "
        "Values with 95 % bootstrap confidence intervals.",
        "",
        "| triage metric | raw P(y given x, z) | adjusted P(y given do(x)) |",
        "|---|---|---|",
    ]
    adjusted = test.get("triage_adjusted") or {}
    for key, name in _METRIC_NAMES.items():
        if key in test["triage"] or key in adjusted:
            lines.append(f"| {name} | {_with_ci(test['triage'].get(key))} | {_with_ci(adjusted.get(key))} |")
    culprit = test.get("culprit") or {}
    if culprit:
        recall = ", ".join(f"{v} {_num(r, 2)}" for v, r in (culprit.get("recall") or {}).items())
        lines += [
            "",
            f"Culprit vessel (occlusions with a known vessel, n={culprit.get('n')}): accuracy "
            f"{_num(culprit.get('accuracy'))}, macro F1 {_num(culprit.get('macro_f1'))}; recall {recall}.",
        ]
    if test.get("stenosis_mae"):
        mae = ", ".join(f"{v} {_num(m)}" for v, m in test["stenosis_mae"].items())
        lines.append(f"Stenosis fraction mean absolute error: {mae}.")
    lines += [
        "",
        f"### Per confounder stratum ({strata['on']} probability, threshold {_num(strata['threshold'], 2)})",
        "",
        "| stratum | n | occlusions | sensitivity | specificity |",
        "|---|---|---|---|---|",
    ]
    for g in strata["groups"]:
        lines.append(
            f"| {_cell(g['stratum'])} | {g['n']} | {g['n_positive']} | {_num(g['sensitivity'], 2)} | "
            f"{_num(g['specificity'], 2)} |"
        )
    lines.append(
        f"\nWorst-group gaps: sensitivity {_num(strata['tpr_gap'], 2)}, "
        f"false-positive rate {_num(strata['fpr_gap'], 2)}."
    )
    explainer = facts.get("explainer")
    lines += ["", "## Explanations"]
    if explainer:
        fidelity = f" Tree fidelity to the agent: {_num(explainer['fidelity'], 2)}." if "fidelity" in explainer else ""
        if "agent_validity" in explainer:
            fidelity += f" Validation ECGs whose decision the agent flips: {_num(explainer['agent_validity'], 2)}."
        lines.append(
            "A counterfactual RL agent (edits: lead, wave segment, amplitude step in mV) is included in `explainer/`, "
            f"with its policy distilled into a decision tree.{fidelity}"
        )
    else:
        lines.append("No trained explainer in this run (`vlm-ecg explain-train RUN` trains one).")
    lines += ["", "## Intended use", INTENDED_USE, "", "## Limitations", *[f"- {item}" for item in LIMITATIONS]]
    repo = repo_id or "runs/NAME"
    lines += [
        "",
        "## Use",
        "```python",
        "from vlm_ecg.predict import Predictor",
        f'predictor = Predictor.from_pretrained("{repo}")',
        'print(predictor.predict("patient.hea"))   # WFDB, CSV or NPZ',
        "```",
        "Or in a shell: `vlm-ecg predict ecgs/ --run " + repo + " --out predictions.csv`, and the demo: "
        f"`vlm-ecg demo --run {repo}`.",
    ]
    return "\n".join(lines) + "\n"


def model_card(run_dir: str | Path, repo_id: str | None = None):
    """The README.md of a pushed run as a `huggingface_hub.ModelCard` (metadata + `facts_markdown` body).

    Metadata: license, ``library_name: peft``, tags, ``base_model`` when a pretrained tower is a hub id, a
    ``model-index`` with the headline test metrics, and a ``vlm_ecg`` block with the base tower, data description,
    metrics with CIs and the per-stratum results.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    facts = card_facts(run_dir)
    base, test = facts["base"], facts["test"]
    hub_bases = [
        t for t in [*base["pretrained_towers"], base["signal_backbone_checkpoint"]] if t and _looks_like_hub_id(t)
    ]
    name = repo_id.split("/")[-1] if repo_id else "vlm-ecg"
    results = []
    for variant, block in (("raw", test["triage"]), ("adjusted", test.get("triage_adjusted") or {})):
        for key in ("auroc", "auprc"):
            if block.get(key) and block[key]["value"] is not None:
                results.append(
                    EvalResult(
                        task_type="image-classification",
                        task_name="ECG occlusion triage",
                        dataset_type=facts["data"]["source"],
                        dataset_name=f"{facts['data']['source']} (test split)",
                        dataset_split="test",
                        metric_type=key,
                        metric_name=f"{_METRIC_NAMES[key]} ({variant})",
                        metric_value=float(block[key]["value"]),
                    )
                )
    data = ModelCardData(
        license="apache-2.0",
        library_name="peft",
        tags=["vlm_ecg", "ecg", "cardiology", "medical", "research-only", "lora"],
        base_model=hub_bases or None,
        model_name=name,
        eval_results=results or None,
        vlm_ecg={
            "base": base,
            "data": facts["data"],
            "decision_threshold": facts["decision_threshold"],
            "test": test,
            "strata": facts["strata"],
            "intended_use": "research only; not a medical device",
        },
    )
    title = f"# {name}\n\nECG virtual coronary angiography with vlm_ecg: from a 10-s 12-lead ECG, triage whether a " \
        "chest-pain patient hides an acute coronary occlusion, then localise the culprit vessel (LAD / LCx / RCA) " \
        "and estimate stenosis.\n\n> **Research use only. Not a medical device.**\n\n"  # fmt: skip
    content = f"---\n{data.to_yaml()}\n---\n\n{title}{facts_markdown(facts, repo_id)}"
    return ModelCard(content)
