"""Fine-tuning end to end: `accelerate launch finetune`, the run folder, exact resume after SIGKILL, two-process DDP,
configuration errors. Real processes, real training steps (the seconds-long smoke configuration)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from vlm_ecg.train_config import ConfigError, TrainConfig, load_train_config

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "finetune" / "configs" / "smoke.yaml"
ACCELERATE = str(Path(sys.executable).with_name("accelerate"))
RUN_FILES = {
    "final", "metrics.json", "strata_prior.json", "dril_report.json", "plots", "test_predictions.csv",
    "train_config.yaml", "log.jsonl", "best", "checkpoints",
}  # fmt: skip
FINAL_FILES = {"adapter_config.json", "adapter_model.safetensors", "config.json", "run.json", "train_config.yaml"}
PLOTS = {"roc.png", "pr.png", "calibration.png", "stratum_sensitivity.png", "culprit_confusion.png"}


def _env(**extra) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **extra}
    env.pop("ACCELERATE_USE_CPU", None)
    return {**env, **extra}


def _launch(tmp: Path, out: str, *extra: str, processes: int = 1, env: dict | None = None) -> list[str]:
    head = [ACCELERATE, "launch"]
    if processes > 1:
        head += ["--multi_gpu", "--num_processes", str(processes)]
    else:
        head += ["--num_processes", "1"]
    return [*head, "finetune", "--config", str(SMOKE), "--output_dir", str(tmp / out),
            "--data_cache_dir", str(tmp / "cache"), *extra]  # fmt: skip


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def launched_run(tmp_path_factory) -> Path:
    """The smoke configuration through the real `accelerate launch finetune` command, uninterrupted."""
    tmp = tmp_path_factory.mktemp("launch")
    proc = subprocess.run(_launch(tmp, "run"), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


def test_accelerate_launch_writes_the_run_folder(launched_run):
    assert {p.name for p in launched_run.iterdir()} >= RUN_FILES
    assert {p.name for p in (launched_run / "final").iterdir()} >= FINAL_FILES
    assert {p.name for p in (launched_run / "plots").iterdir()} == PLOTS
    assert not list((launched_run / "final").glob("*.bin")) and not list((launched_run / "final").glob("*.pt"))
    metrics = _metrics(launched_run)
    assert metrics["test"]["triage"]["auroc"]["value"] is not None
    assert metrics["test"]["triage"]["auroc"]["ci_low"] is not None  # bootstrap CIs on the final test metrics
    assert "triage_adjusted" in metrics["test"] and "subgroups" in metrics["test"]
    assert metrics["training"]["num_processes"] == 1
    facts = json.loads((launched_run / "final" / "run.json").read_text())
    prior = facts["strata"]["prior"]
    assert len(prior) == len(facts["strata"]["names"]) and abs(sum(prior) - 1) < 1e-6
    assert 0 < facts["decision_threshold"]["value"] < 1
    report = json.loads((launched_run / "dril_report.json").read_text())
    assert report["n_clusters"] >= 1 and "purity" in report
    log = [json.loads(line) for line in (launched_run / "log.jsonl").read_text().splitlines()]
    assert {r["event"] for r in log} == {"train", "eval"}


def test_sigkill_then_resume_reaches_the_same_result(launched_run, tmp_path):
    """Kill a run mid-stage with SIGKILL, resume from the latest checkpoint: same weights, same metrics."""
    cmd = _launch(tmp_path, "run")
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    ckpts = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and not (ckpts.is_dir() and any(p.name == "checkpoint-8" for p in ckpts.iterdir())):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: launcher and training process
    proc.wait(timeout=60)
    assert not (tmp_path / "run" / "final").exists(), "killed too late: the run had finished"
    saved = sorted(p.name for p in ckpts.iterdir() if p.name.startswith("checkpoint-"))
    resumed = subprocess.run(cmd + ["--resume_from_checkpoint", "latest"], cwd=REPO, env=_env(),
                             capture_output=True, text=True, timeout=900)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout + resumed.stderr, saved
    a, b = _metrics(launched_run), _metrics(tmp_path / "run")
    assert a["test"] == b["test"]
    assert a["training"]["global_step"] == b["training"]["global_step"]
    wa = load_file(str(launched_run / "final" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "run" / "final" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)


def test_two_process_ddp_on_cpu_trains_synchronised_ranks(tmp_path):
    cmd = _launch(tmp_path, "ddp", "--max_steps", "6", "--imbalance", "plain", processes=2)
    proc = subprocess.run(cmd, cwd=REPO, env=_env(ACCELERATE_USE_CPU="1"), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ddp"
    assert {p.name for p in (run / "final").iterdir()} >= FINAL_FILES
    training = _metrics(run)["training"]
    assert training["num_processes"] == 2
    digests = training["rank_param_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # gloo all-reduce kept both ranks identical
    assert training["global_step"] == 6


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        (["--lerning_rate", "0.1"], "lerning_rate"),
        (["--learning_rate", "fast"], "learning_rate"),
        (["--imbalance", "smote"], "imbalance"),
        (["--per_device_batch_size", "0"], "per_device_batch_size"),
        (["--synth_prevalence", "1.5"], "synth_prevalence"),
        (["--per_device_batch_size", "15"], "sampler_negatives_per_positive"),
    ],
)
def test_bad_command_line_values_name_the_key(argv, key):
    with pytest.raises(ConfigError, match=key):
        load_train_config(argv)


def test_bad_yaml_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.001\nnum_epocs: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*num_epocs"):
        load_train_config(["--config", str(bad)])
    bad.write_text("num_epochs: many\n")
    with pytest.raises(ConfigError, match="num_epochs"):
        load_train_config(["--config", str(bad)])
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_train_config(["--config", str(bad)])
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(["--config", str(tmp_path / "missing.yaml")])


def test_command_line_overrides_yaml(tmp_path):
    config = load_train_config(
        ["--config", str(SMOKE), "--num_epochs", "5", "--strata_age_bands_years", "0", "60", "200"]
    )
    assert config.num_epochs == 5 and config.strata_age_bands_years == [0.0, 60.0, 200.0]
    assert config.synth_n == 160  # from the YAML


def test_finetune_command_reports_config_errors_without_a_traceback():
    proc = subprocess.run([sys.executable, "finetune", "--imbalance", "smote"], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2
    assert "imbalance" in proc.stderr and "Traceback" not in proc.stderr


def test_shipped_configs_parse_and_the_default_is_tiny_cpu():
    configs = REPO / "finetune" / "configs"
    for path in configs.glob("*.yaml"):
        if not path.name.startswith("accelerate"):
            load_train_config(["--config", str(path)])
    assert load_train_config(["--config", str(configs / "tiny-cpu.yaml")]) == TrainConfig()


def test_resolve_latest_checkpoint_ignores_partial_folders(tmp_path):
    from vlm_ecg.run_folder import TRAINING_STATE, resolve_checkpoint

    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_checkpoint(tmp_path, "latest")
    for step in (4, 12):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / TRAINING_STATE).write_text("{}")
    (tmp_path / ".tmp-checkpoint-16").mkdir()  # a save that was killed half-way
    assert resolve_checkpoint(tmp_path, "latest").name == "checkpoint-12"
    shutil.rmtree(tmp_path / "checkpoint-12")
    assert resolve_checkpoint(tmp_path, "latest").name == "checkpoint-4"
