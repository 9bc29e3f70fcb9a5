"""Pushing a run to the Hub and pulling it back: the allow-list, the model card, the upload through huggingface_hub
against a local HTTP double of the Hub (tests/hub_double.py), and identical predictions after the round trip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hub_double import HubDouble

from vlm_ecg.cli import main
from vlm_ecg.hub import EXPLAINER_SUFFIXES

REPO_ID = "alice/vlm-ecg-smoke"
TOKEN = "hf_double_test_token_0123456789"


def _expected_files(run: Path) -> set[str]:
    adapter = {"adapter_config.json", "adapter_model.safetensors", "config.json", "run.json", "train_config.yaml"}
    extras = {"README.md", "metrics.json", "strata_prior.json"}
    plots = {f"plots/{p.name}" for p in (run / "plots").glob("*.png")}
    explainer = {f"explainer/{p.name}" for p in run.glob("explainer/*") if p.suffix in EXPLAINER_SUFFIXES}
    return adapter | extras | plots | explainer


@pytest.fixture(scope="module")
def run_with_decoys(smoke_run, tmp_path_factory) -> Path:
    """A copy of the smoke run with things that must never be uploaded planted beside the allowed files."""
    run = tmp_path_factory.mktemp("decoys") / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "data").mkdir()
    np.savez(run / "data" / "signals.npz", signal=np.zeros((2, 12, 10), np.float32))
    (run / "signals.npy").write_bytes(b"\x93NUMPY")
    (run / "plots" / "per_patient.csv").write_text("id,prob\np1,0.3\n")
    (run / "explainer").mkdir()
    (run / "explainer" / "tree.pkl").write_bytes(b"\x80\x04.")
    (run / "explainer" / "rules.txt").write_text("if ST(V2) > 0.1 mV then occlusion\n")
    return run


def test_dry_run_writes_exactly_the_allow_list_and_a_valid_card(run_with_decoys, tmp_path, capsys):
    from huggingface_hub import ModelCard

    out = tmp_path / "upload"
    assert main(["push", str(run_with_decoys), "--repo-id", REPO_ID, "--dry-run", "--out", str(out)]) == 0
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == _expected_files(run_with_decoys)
    assert "explainer/rules.txt" in files and "explainer/tree.pkl" not in files
    listing = capsys.readouterr().out
    assert all(name in listing for name in files)
    assert "test_predictions.csv" not in listing and "signals" not in listing and "tree.pkl" not in listing

    card = ModelCard.load(out / "README.md")
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "peft"
    facts = meta["vlm_ecg"]
    assert facts["base"]["vision_preset"] == "tiny"
    assert "synthetic" in facts["data"]["description"]
    metrics = json.loads((run_with_decoys / "metrics.json").read_text())["test"]
    auroc = facts["test"]["triage_adjusted"]["auroc"]
    assert auroc["value"] == pytest.approx(metrics["triage_adjusted"]["auroc"]["value"])
    assert auroc["ci_low"] <= auroc["value"] <= auroc["ci_high"]
    assert {g["stratum"] for g in facts["strata"]["groups"]} == set(metrics["subgroups_adjusted"]["groups"])
    assert any(r.metric_type == "auroc" for r in card.data.eval_results)
    assert "Not a medical device" in card.text and "## Limitations" in card.text
    # no local path leaves the machine
    for name in files:
        if name.endswith((".json", ".yaml", ".md", ".txt")):
            assert str(run_with_decoys.parent) not in (out / name).read_text(), name


_CHILD = r"""
import json, os, sys
from vlm_ecg.cli import main
from vlm_ecg.hub import EXPLAINER_SUFFIXES
run, npz, cache = sys.argv[1:4]
token = os.environ.pop("HF_TOKEN")
no_token = main(["push", run, "--repo-id", "alice/vlm-ecg-smoke"])
os.environ["HF_TOKEN"] = token
first = main(["push", run, "--repo-id", "alice/vlm-ecg-smoke", "--private"])
again = main(["push", run, "--repo-id", "alice/vlm-ecg-smoke", "--private", "--message", "second"])
from vlm_ecg.predict import Predictor
predictor = Predictor.from_pretrained("alice/vlm-ecg-smoke", cache_dir=cache)
files = sorted(p.relative_to(predictor.run_dir).as_posix() for p in predictor.run_dir.rglob("*") if p.is_file())
print("RESULT " + json.dumps({"no_token": no_token, "first": first, "again": again, "files": files,
                              "prediction": predictor.predict(npz).to_dict()}))
"""


def test_push_to_a_hub_double_and_pull_back_predicts_identically(smoke_run, tmp_path):
    from vlm_ecg.io import write_ecg
    from vlm_ecg.predict import Predictor
    from vlm_ecg.synth import make_examples

    npz = write_ecg(make_examples(3)["LCx"].ecg, tmp_path / "lcx.npz")
    with HubDouble() as hub:
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HOME": str(tmp_path / "hf_home"),
            "HF_TOKEN": TOKEN,
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(smoke_run), str(npz), str(tmp_path / "cache")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])

        assert result["no_token"] == 2 and "HF_TOKEN" in proc.stderr
        assert result["first"] == 0 and result["again"] == 0
        assert TOKEN not in proc.stdout and TOKEN not in proc.stderr
        assert set(hub.repos) == {REPO_ID}
        repo = hub.repos[REPO_ID]
        assert repo.private is True
        assert set(repo.files) == _expected_files(smoke_run)
        assert len(repo.commits) == 2
        commits = [r for r in hub.requests if r["method"] == "POST" and "/commit/" in r["path"]]
        assert commits and all(r["authorization"] == f"Bearer {TOKEN}" for r in commits)
        assert set(result["files"]) >= _expected_files(smoke_run)

    pulled = result["prediction"]
    local = Predictor.from_pretrained(smoke_run).predict(npz).to_dict()
    assert pulled["id"] == local["id"] and pulled["decision"] == local["decision"]
    for key in ("triage_prob", "triage_prob_adjusted", "decision_threshold"):
        assert pulled[key] == pytest.approx(local[key], abs=1e-6)
    for key in ("culprit_probs", "stenosis"):
        assert pulled[key] == pytest.approx(local[key], abs=1e-6)


def test_push_refuses_a_folder_without_a_model(tmp_path, capsys):
    assert main(["push", str(tmp_path), "--repo-id", REPO_ID, "--dry-run"]) == 2
    assert "not a vlm_ecg run" in capsys.readouterr().err
