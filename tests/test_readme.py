"""The README's set-up commands are the ones CI runs and the ones this repository supports."""

from __future__ import annotations

import re

from conftest import REPO_ROOT


def _setup_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md must open with a bash block of set-up commands"
    assert text.index(block.group(0)) < text.index("\n## "), "the set-up commands come before any section"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_setup_commands():
    install_and_train, install_and_test = _setup_commands()
    assert "pip install" in install_and_train and "accelerate launch finetune" in install_and_train
    assert "pip install" in install_and_test and "pytest" in install_and_test
    assert '".[cpu' in install_and_train and '".[cpu,dev]"' in install_and_test  # the CPU wheel, not CUDA


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert _setup_commands()[1] in ci.splitlines()


def test_default_finetune_config_matches_the_readme_claims():
    from vlm_ecg.train_config import TrainConfig

    config = TrainConfig()
    assert (config.data, config.preset, config.synth_n) == ("synthetic", "tiny", 2800)
