"""Push a trained run to the Hugging Face Hub (an allow-list of files plus a generated model card) and pull it back.

    files = stage_upload("runs/default", "upload/")                 # exactly what would be uploaded (--dry-run)
    url = push_run("runs/default", "alice/vlm-ecg-tiny", private=True)
    predictor = Predictor.from_pretrained("alice/vlm-ecg-tiny")     # pull: same loading code as a local folder

The repository holds, at its root, what `vlm_ecg.run_folder.load_final` reads (so ``PeftModel.from_pretrained`` and
`Predictor.from_pretrained` both work on it) and the extras the demo and the card use:

    README.md                    generated model card (`vlm_ecg.model_card`)
    adapter_config.json          the peft adapter: LoRA + every module trained in full
    adapter_model.safetensors    (a run trained without peft ships model.safetensors instead)
    config.json                  the base model config (rebuilds the frozen base)
    run.json                     strata binning, render settings, decision threshold, prevalence
    train_config.yaml            the training configuration (absolute paths reduced to their last component)
    strata_prior.json            P(z), the prior of the back-door adjustment
    metrics.json                 aggregate test / validation metrics with CIs (no per-ECG rows)
    plots/*.png                  ROC, PR, calibration, per-stratum sensitivity, culprit confusion
    explainer/...                the counterfactual agent and its distilled decision tree (when trained)

Nothing else leaves the machine: no data set, no signals, no per-ECG predictions (``test_predictions.csv``), no
checkpoints, no logs. Files are copied by an explicit allow-list, never by excluding what looks private.

The token comes from ``HF_TOKEN`` or the saved login (``hf auth login``), through `huggingface_hub`; it is never
printed or written anywhere.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from .predict import run_root
from .run_folder import final_dir

logger = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "model.safetensors", "config.json", "run.json")
RUN_FILES = ("strata_prior.json", "metrics.json")
PLOT_SUFFIXES = (".png",)
# The explainer folder may hold the agent's weights, the tree (as JSON / text, never a pickle), its picture and facts.
EXPLAINER_SUFFIXES = (".json", ".safetensors", ".png", ".txt", ".md", ".yaml")
_PATH_KEYS = (
    "output_dir",
    "data_cache_dir",
    "data",
    "resume_from_checkpoint",
    "model_name_or_path",
    "local_tower",
    "global_tower",
    "ocr2_tower",
    "signal_backbone_name_or_path",
)


@dataclass
class PushResult:
    """Where a push went: the repo, its visibility, the files sent (relative paths) and the commit URL."""

    repo_id: str
    private: bool
    files: list[str]
    commit_url: str


def _redacted_train_config(path: Path) -> str:
    """The training configuration with absolute local paths reduced to their last component."""
    config = yaml.safe_load(path.read_text()) or {}
    for key in _PATH_KEYS:
        value = config.get(key)
        if isinstance(value, str) and (
            value.startswith(("/", "~")) or (len(value) > 2 and value[1:3] in (":\\", ":/"))
        ):
            config[key] = Path(value).name
    return yaml.safe_dump(config, sort_keys=False)


def upload_plan(run_dir: str | Path) -> dict[str, Path]:
    """What a push sends: {path in the repo: local file}, by the allow-list (README.md is generated, not listed).

    Raises:
        FileNotFoundError: `run_dir` holds no trained model.
    """
    art, root = final_dir(run_dir), run_root(run_dir)
    plan: dict[str, Path] = {}
    for name in ADAPTER_FILES:
        if (art / name).is_file():
            plan[name] = art / name
    for name in RUN_FILES:
        if (root / name).is_file():
            plan[name] = root / name
    for sub, suffixes in (("plots", PLOT_SUFFIXES), ("explainer", EXPLAINER_SUFFIXES)):
        folder = root / sub
        if not folder.is_dir():
            continue
        for f in sorted(folder.rglob("*")):
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in suffixes:
                plan[f.relative_to(root).as_posix()] = f
            elif f.is_file():
                logger.warning("not uploading %s (only %s files go up from %s/)", f, ", ".join(suffixes), sub)
    return plan


def stage_upload(run_dir: str | Path, out_dir: str | Path, repo_id: str | None = None) -> list[str]:
    """Write the exact upload folder of a run into `out_dir` (emptied first); returns its files, sorted.

    This is what ``vlm-ecg push --dry-run`` shows and what `push_run` uploads.
    """
    from .model_card import model_card

    run_dir, out_dir = run_root(run_dir), Path(out_dir)
    plan = upload_plan(run_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    for rel, src in plan.items():
        dst = out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    train_config = next(
        (p for p in (final_dir(run_dir) / "train_config.yaml", run_dir / "train_config.yaml") if p.is_file()), None
    )
    if train_config is not None:
        (out_dir / "train_config.yaml").write_text(_redacted_train_config(train_config))
    model_card(run_dir, repo_id=repo_id).save(out_dir / "README.md")
    return sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
) -> PushResult:
    """Create (or reuse) the model repo `repo_id` and upload the run's allow-listed files and model card in one commit.

    Args:
        run_dir: the run folder (``runs/NAME``) or its ``final/``.
        repo_id: ``USER/NAME`` or ``ORG/NAME``.
        private: create the repository private (an existing repository keeps its visibility).
        token: a Hub token; None uses ``HF_TOKEN`` or the saved login.
        commit_message: defaults to "Upload vlm_ecg run NAME".
        endpoint: a Hub other than huggingface.co (a private deployment); None uses ``HF_ENDPOINT`` or the default.

    Raises:
        PermissionError: no token available.
        FileNotFoundError: `run_dir` holds no trained model.
    """
    from huggingface_hub import HfApi, get_token

    if token is None and get_token() is None:
        raise PermissionError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login`")
    run_dir = run_root(run_dir)
    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory(prefix="vlm_ecg_push_") as tmp:
        files = stage_upload(run_dir, tmp, repo_id=repo_id)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=tmp,
            commit_message=commit_message or f"Upload vlm_ecg run {run_dir.name}",
        )
    logger.info("pushed %d files to %s", len(files), repo_id)
    return PushResult(repo_id=repo_id, private=private, files=files, commit_url=str(commit.commit_url))
