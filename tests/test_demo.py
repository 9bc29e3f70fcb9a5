"""The Gradio demo, served on a free localhost port with the smoke run: a real browser (Playwright driving Debian's
chromium) uploads a WFDB pair, predicts, sees the explanation, then uploads a corrupt file; gradio_client drives the
API. The served model is the same `Predictor` the assertions compare with."""

from __future__ import annotations

import re
import shutil
import socket
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vlm_ecg.demo_app import ADJUSTED_BAR, RAW_BAR
from vlm_ecg.io import read_ecg, write_ecg
from vlm_ecg.labels import Confounders
from vlm_ecg.predict import Predictor, confounders_from_meta
from vlm_ecg.synth import make_examples

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UNKNOWN_PATIENT = (None, "unknown", "unknown", "unknown", "unknown")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_run(smoke_run, tmp_path_factory) -> Path:
    """The smoke run with an (untrained, seeded) explainer agent in its explainer/ folder: the demo loads it the way
    it loads a trained one, and a roll-out takes a few model calls. Training one is the explain tests' business."""
    from vlm_ecg.explain import AgentConfig, CounterfactualAgent, EnvConfig

    run = tmp_path_factory.mktemp("demo") / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("checkpoints", "best"))
    CounterfactualAgent(AgentConfig(hidden_size=32), EnvConfig(max_steps=3)).save(run / "explainer")
    return run


@pytest.fixture(scope="module")
def served(demo_run):
    from vlm_ecg.demo_app import build_demo

    predictor = Predictor.from_pretrained(demo_run)
    demo = build_demo(predictor)
    port = _free_port()
    demo.queue().launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, max_file_size="1mb", quiet=True
    )
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}/", predictor=predictor)
    demo.close()


@pytest.fixture(scope="module")
def files(served, tmp_path_factory) -> SimpleNamespace:
    """The example the model finds most suspicious as a WFDB pair and as NPZ, a corrupt NPZ, an oversize CSV."""
    root = tmp_path_factory.mktemp("uploads")
    examples = make_examples(0)
    probs = {name: served.predictor.predict(r.ecg).triage_prob_adjusted for name, r in examples.items()}
    name = max(probs, key=probs.get)
    assert probs[name] >= served.predictor.decision_threshold, f"the smoke model calls no example positive: {probs}"
    hea = write_ecg(examples[name].ecg, root / "patient.hea")
    npz = write_ecg(examples[name].ecg, root / "patient.npz")
    bad = root / "broken.npz"
    bad.write_bytes(b"PK\x03\x04" + bytes(64))
    big = root / "huge.csv"
    big.write_text("I,II\n" + "0.1,0.2\n" * 200_000)  # 1.6 MB > the 1 MB limit of the served demo
    return SimpleNamespace(hea=hea, dat=hea.with_suffix(".dat"), npz=npz, bad=bad, big=big)


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian chromium not at /usr/bin/chromium (.ci/run installs it)")
def test_browser_upload_predict_explain_and_corrupt_file(served, files):
    from playwright.sync_api import expect, sync_playwright

    expected = served.predictor.predict(files.hea, confounders_from_meta(read_ecg(files.hea).meta))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.goto(served.url)
            page.locator("#upload input[type=file]").set_input_files([str(files.hea), str(files.dat)])
            expect(page.locator("#upload tbody tr")).to_have_count(2, timeout=20_000)  # both files uploaded
            page.locator("#predict-button").click()

            expect(page.locator("#status")).to_contain_text("Predicted", timeout=30_000)
            adjusted = page.locator("#prob-adjusted input")
            expect(adjusted).to_have_value(str(round(expected.triage_prob_adjusted, 4)))
            assert float(adjusted.input_value()) == pytest.approx(round(expected.triage_prob_adjusted, 4), abs=1e-9)
            raw = page.locator("#prob-raw input").input_value()
            assert float(raw) == pytest.approx(round(expected.triage_prob, 4), abs=1e-9)
            expect(page.locator("#decision")).to_contain_text("OCCLUSION SUSPECTED")
            expect(page.locator("#status")).to_contain_text("patient.hea")
            expect(page.locator("#ecg-image img")).to_be_visible()
            expect(page.locator("#culprit")).to_contain_text("LAD")

            expect(page.locator("#explanation")).to_contain_text("Counterfactual (agent", timeout=45_000)
            expect(page.locator("#overlay img")).to_be_visible()

            page.goto(served.url)  # a fresh page: upload the corrupt file alone
            page.locator("#upload input[type=file]").set_input_files([str(files.bad)])
            expect(page.locator("#upload tbody tr")).to_have_count(1, timeout=20_000)
            page.locator("#predict-button").click()
            expect(page.locator("#status")).to_contain_text("Cannot use this ECG", timeout=30_000)
            expect(page.locator("#status")).to_contain_text(re.compile(r"broken\.npz: .*NPZ"))
            assert "Traceback" not in page.content()
        finally:
            browser.close()
    with urllib.request.urlopen(served.url, timeout=10) as response:  # the server still answers
        assert response.status == 200


def _client(served):
    from gradio_client import Client

    return Client(served.url, verbose=False)


def test_api_predicts_like_the_predictor(served, files):
    from gradio_client import handle_file

    client = _client(served)
    status, image, triage, decision, raw, adjusted, culprit, stenosis = client.predict(
        [handle_file(str(files.npz))], None, *UNKNOWN_PATIENT, api_name="/predict"
    )
    expected = served.predictor.predict(files.npz)
    assert "patient.npz" in status
    assert adjusted == pytest.approx(round(expected.triage_prob_adjusted, 4), abs=1e-9)
    assert raw == pytest.approx(round(expected.triage_prob, 4), abs=1e-9)
    assert {c["label"]: c["confidence"] for c in culprit["confidences"]} == pytest.approx(expected.culprit_probs)
    assert [row[0] for row in stenosis["data"]] == ["LAD", "LCx", "RCA"]
    assert Path(image).is_file()
    assert ("refer for angiography" if expected.decision else "no occlusion suspected") in decision.lower()
    bars = {c["label"]: c["confidence"] for c in triage["confidences"]}
    assert bars == pytest.approx({RAW_BAR: expected.triage_prob, ADJUSTED_BAR: expected.triage_prob_adjusted})

    # an example with the patient filled in: the raw probability is conditioned on the stratum
    record = make_examples(0)["RCA"]
    patient = Confounders(age_years=70.0, sex="F", hypertension=1, diabetes=0, prior_mi=0)
    out = client.predict([], "RCA occlusion (inferior)", 70, "F", "yes", "no", "no", api_name="/predict")
    assert out[4] == pytest.approx(round(served.predictor.predict(record.ecg, patient).triage_prob, 4), abs=1e-9)

    text, overlay, rules, _ = client.predict([], "RCA occlusion (inferior)", *UNKNOWN_PATIENT, api_name="/explain")
    assert "Counterfactual (agent" in text or "decision is negative" in text
    assert "rules" in rules.lower()


def test_api_turns_bad_input_into_messages(served, files):
    from gradio_client import handle_file

    client = _client(served)
    cases = {
        "no ECG given": [],
        "broken.npz: not a": [handle_file(str(files.bad))],
        "upload one ECG at a time": [handle_file(str(files.npz)), handle_file(str(files.hea))],
        "no WFDB header patient.hea beside it": [handle_file(str(files.dat))],
    }
    for message, upload in cases.items():
        out = client.predict(upload, None, *UNKNOWN_PATIENT, api_name="/predict")
        assert "Cannot use this ECG" in out[0] and message in out[0], out[0]
        assert out[1] is None and out[5] is None
    with pytest.raises(Exception, match="(?i)too large|413|size"):
        client.predict([handle_file(str(files.big))], None, *UNKNOWN_PATIENT, api_name="/predict")
    out = client.predict([], "no occlusion", *UNKNOWN_PATIENT, api_name="/predict")  # still serving
    assert "Predicted" in out[0] and np.isfinite(out[5])


def test_run_without_explainer_says_how_to_train_one(served):
    from vlm_ecg.demo_explain import DemoExplainer
    from vlm_ecg.explain import Explainer

    panel = DemoExplainer(Explainer(served.predictor), run_label="runs/x")
    text, overlay, rules, tree = panel.explain(make_examples(0)["LAD"].ecg.standardize(), served.predictor, None)
    assert "`vlm-ecg explain-train runs/x`" in text and overlay is None and tree is None
    assert "explain-train" in rules


def test_an_unloadable_explainer_leaves_the_demo_running_and_says_why(served, tmp_path):
    import copy

    from vlm_ecg.demo_explain import DemoExplainer

    (tmp_path / "explainer").mkdir()
    (tmp_path / "explainer" / "agent.json").write_text('{"format": "from another version"}')
    (tmp_path / "explainer" / "agent.safetensors").write_bytes(b"not safetensors")
    predictor = copy.copy(served.predictor)
    predictor.run_dir = tmp_path
    panel = DemoExplainer.for_predictor(predictor)
    assert not panel.has_agent and "cannot be loaded" in panel.problem
    text, *_ = panel.explain(make_examples(0)["LAD"].ecg.standardize(), predictor, None)
    assert "cannot be loaded" in text and "explain-train" in text


def test_demo_without_a_run_names_the_command_that_makes_one(tmp_path, monkeypatch, capsys):
    from vlm_ecg.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--port", str(_free_port())]) == 2
    assert "accelerate launch finetune" in capsys.readouterr().err
