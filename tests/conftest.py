"""Shared fixtures. Tests never download: the hub is switched off before transformers is imported."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-ECG test set beside the repository (`../shared/data`); absent in a user's clone."""
    if not (SHARED_DATA / "manifest.csv").is_file():
        pytest.skip(f"real ECG test data not found at {SHARED_DATA} (only present on the project's machines)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A small trained run folder (the smoke config, in this process), shared by every test that needs a model.

    Trained once per test session (about half a minute): predict, explain, evaluate and demo tests load it.
    """
    from vlm_ecg.train import train
    from vlm_ecg.train_config import load_train_config

    root = tmp_path_factory.mktemp("smoke_run")
    config = load_train_config(
        [
            "--config",
            str(REPO_ROOT / "finetune" / "configs" / "smoke.yaml"),
            "--output_dir",
            str(root / "run"),
            "--data_cache_dir",
            str(root / "cache"),
        ]
    )
    return train(config)
