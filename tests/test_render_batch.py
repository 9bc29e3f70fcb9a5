"""Batch rendering: files and folders, parallel workers, bad files listed at the end, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlm_ecg.cli import main
from vlm_ecg.ecg import LEADS, Ecg
from vlm_ecg.io import write_ecg
from vlm_ecg.render import RenderConfig, render_ecg
from vlm_ecg.render_batch import collect_inputs, render_files

REPO = Path(__file__).resolve().parents[1]


def make_ecg(seed: int, fs: float = 500.0) -> Ecg:
    t = np.arange(int(10 * fs)) / fs
    rng = np.random.default_rng(seed)
    sig = 0.5 * np.sin(2 * np.pi * rng.uniform(0.8, 1.6) * t + rng.uniform(0, 6, (12, 1)))
    return Ecg(sig.astype(np.float32), fs, {"id": f"rec{seed}"})


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Two good records (NPZ, WFDB in a sub-folder), a corrupt CSV and an 11-lead NPZ."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    files = {
        "good_npz": write_ecg(make_ecg(0), d / "a.npz"),
        "good_wfdb": write_ecg(make_ecg(1, fs=250.0), d / "sub" / "b.hea"),
        "bad_csv": d / "c.csv",
        "bad_leads": d / "sub" / "d.npz",
    }
    files["bad_csv"].write_text("time_s,I,II\n0.0,abc,1\n")
    np.savez(files["bad_leads"], signal=np.zeros((11, 5000), np.float32), leads=np.array(LEADS[:11]), fs=500.0)
    return files


def test_batch_renders_good_files_in_parallel_and_lists_bad_ones(tmp_path, inputs):
    out = tmp_path / "out"
    config = RenderConfig(image_size_px=256)
    result = render_files(
        [inputs["good_npz"].parent, tmp_path / "missing.hea"],
        out,
        config,
        image_format="npy",
        workers=2,
        write_layout_json=True,
        progress=False,
    )
    assert sorted(p.name for _, p in result.rendered) == ["a.npy", "b.npy"]
    assert (out / "sub" / "b.npy").is_file() and (out / "sub" / "b.json").is_file()  # sub-folders kept
    failed = {Path(src).name: msg for src, msg in result.failed}
    assert set(failed) == {"c.csv", "d.npz", "missing.hea"}
    assert all(name in msg for name, msg in failed.items())  # every message names its file
    img = np.load(out / "a.npy", allow_pickle=False)
    assert np.array_equal(img, render_ecg(make_ecg(0), config))  # the same pixels as the library call
    meta = json.loads((out / "sub" / "b.json").read_text())
    assert meta["fs_hz"] == 250.0 and len(meta["layout"]["panels"]) == 13


def test_collect_inputs_expands_folders_and_keeps_names_apart(tmp_path):
    (tmp_path / "x").mkdir()
    for name in ("x/r.hea", "x/r.dat", "x/r.csv", "x/notes.md"):
        (tmp_path / name).write_text("")
    pairs = collect_inputs([tmp_path / "x", tmp_path / "y.npz"])
    assert sorted((f.name, str(stem)) for f, stem in pairs) == [("r.csv", "r_csv"), ("r.hea", "r_hea"), ("y.npz", "y")]


def test_cli_exit_status_and_failure_report(tmp_path, inputs, capsys):
    out = tmp_path / "out"
    status = main(["render", str(inputs["good_npz"]), str(inputs["bad_csv"]), "--out", str(out), "--size", "200x300"])
    assert status == 1
    captured = capsys.readouterr()
    assert "rendered 1 of 2 files" in captured.out
    assert "failed:" in captured.err and "c.csv" in captured.err
    assert Image.open(out / "a.png").size == (300, 200)
    assert main(["render", str(inputs["good_npz"]), "--out", str(out), "--format", "jpg", "--workers", "1"]) == 0
    assert Image.open(out / "a.jpg").size == (2200, 1700)  # letter at 200 dpi by default
    assert main(["render", str(inputs["good_npz"]), "--out", str(out), "--speed", "50", "--layout", "12x1"]) == 0
    with pytest.raises(SystemExit):
        main(["render", str(inputs["good_npz"]), "--out", str(out), "--layout", "5x5"])


def test_python_render_entry_point(tmp_path, inputs):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "render", str(inputs["good_wfdb"]), "--out", str(out), "--size", "128", "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out / "b.png").size == (128, 128)
