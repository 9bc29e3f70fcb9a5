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
