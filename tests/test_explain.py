"""The explainer end to end on the smoke run: explain-train, agent validity, files, explain(), reports, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from vlm_ecg.cli import main
from vlm_ecg.explain.agent import AgentConfig, CounterfactualAgent, run_episodes, train_agent
from vlm_ecg.explain.consistency import ConsistencyConfig, make_tree_consistent
from vlm_ecg.explain.distill import TreeDistiller, fidelity
from vlm_ecg.explain.edits import apply_edits
from vlm_ecg.explain.environment import BlackBox, EcgPool, EditEnv, EnvConfig
from vlm_ecg.explain.explainer import DEFAULT_TOP_K, load_explainer
from vlm_ecg.explain.report import Explanation
from vlm_ecg.explain.training import run_split
from vlm_ecg.io import write_ecg

EXPLAINER_FILES = {"agent.json", "agent.safetensors", "tree.json", "rules.txt", "tree.png", "distill_report.json"}


@pytest.fixture(scope="module")
def run(smoke_run, tmp_path_factory):
    """A copy of the smoke run (model + config) with an explainer trained by the CLI on a small budget."""
    root = tmp_path_factory.mktemp("explain") / "run"
    shutil.copytree(smoke_run / "final", root / "final")
    shutil.copy(smoke_run / "train_config.yaml", root / "train_config.yaml")
    status = main(["explain-train", str(root), "--total-queries", "1500", "--n-envs", "16", "--n-train", "40",
                   "--n-val", "0", "--levels", "0.1", "0.2", "0.3", "--no-progress"])  # fmt: skip
    assert status == 0
    return root


@pytest.fixture(scope="module")
def explainer(run):
    return load_explainer(run)


@pytest.fixture(scope="module")
def test_positives(run, explainer):
    """Test-split ECGs of the smoke run and which of them the model calls positive."""
    split = run_split(run, "test", 0, positives_first=False, predictor=explainer.predictor)
    prob0 = BlackBox(explainer.predictor)(np.stack([e.signal for e in split.ecgs]), split.strata)
    return split, prob0, prob0 >= explainer.predictor.decision_threshold


def test_explainer_folder_holds_exactly_the_artefacts(run, explainer):
    folder = run / "explainer"
    assert {p.name for p in folder.iterdir()} == EXPLAINER_FILES
    report = json.loads((folder / "distill_report.json").read_text())
    d = report["distill"]
    assert d["depth"] <= 5 and 0.0 <= d["fidelity"] <= 1.0 and 0.0 <= d["tree_validity"] <= 1.0
    assert report["agent_training"]["queries"] >= 1500 and report["history"]
    assert len(report["agent_training"]["consistency"]) == 4  # explain-train's default tree-consistency rounds
    # the first-step sweep ran and stopped near half the budget (it may finish the ECG it started: <= 288 edits)
    training = report["agent_training"]
    assert training["swept_ecgs"] >= 1 and 0 < training["sweep_queries"] < 1500 // 2 + 12 * 4 * 2 * 3
    rules = (folder / "rules.txt").read_text()
    assert rules.startswith("Rule 1: IF ") and " THEN " in rules and rules.strip() == explainer.rules.strip()
    from PIL import Image

    with Image.open(explainer.tree_png) as im:
        assert im.format == "PNG" and im.size[0] > 300
    meta = json.loads((folder / "agent.json").read_text())
    assert meta["env"]["levels_mv"] == [0.1, 0.2, 0.3] and len(meta["actions"]) == 12 * 4 * 2 * 3
    again = CounterfactualAgent.load(folder)
    states = np.random.default_rng(0).normal(size=(16, len(again.feature_names))).astype(np.float32)
    masks = np.ones((16, len(again.actions)), dtype=bool)
    np.testing.assert_array_equal(again.policy(states, masks), explainer.agent.policy(states, masks))


def test_agent_learns_to_flip_positive_decisions(run, explainer):
    """The smoke model is near chance (its decisions hinge on idiosyncratic details), so a 1500-call agent does not
    flip most of its positives (see bench/bench_explain.py for the default run); it must clearly beat the same
    search with an untrained policy, and the environment's bookkeeping must match the model."""
    split = run_split(run, "train", 40, predictor=explainer.predictor)
    blackbox = BlackBox(explainer.predictor)
    pool = EcgPool.build(split.ecgs, blackbox, split.strata)
    agent = explainer.agent
    env = EditEnv(pool, blackbox, agent.env_config, agent.margin_scale)
    positives = np.flatnonzero(pool.prob0 >= explainer.predictor.decision_threshold)
    assert positives.size >= 10, "the smoke model should call a good share of its training ECGs positive"
    trained = agent.rollout(env, positives, top_k=8)
    untrained = CounterfactualAgent(agent.config, agent.env_config, agent.margin_scale).rollout(
        env, positives, top_k=8
    )
    assert trained.flipped.mean() >= 0.25 and trained.flipped.mean() > untrained.flipped.mean()
    assert (trained.steps <= agent.env_config.max_steps).all()
    # the environment's bookkeeping matches the model on the counterfactual built by the public `apply_edits`
    i = int(np.flatnonzero(trained.flipped)[0])
    edits = trained.edit_list(i)
    counterfactual = apply_edits(split.ecgs[pool.keep[positives[i]]], edits, pool.frames[positives[i]],
                                 agent.env_config.limb_policy)  # fmt: skip
    p = blackbox(counterfactual.signal[None], pool.strata[positives[i : i + 1]])[0]
    assert p == pytest.approx(trained.prob[i], abs=1e-6) and p < explainer.predictor.decision_threshold


def test_territory_actions_step_the_territory_lead_the_mask_allows(run, explainer):
    """A territory action edits the lead `ActionSpace.resolve` names (the most extreme one the mask allows), and is
    allowed exactly when one of its leads may take the edit."""
    split = run_split(run, "train", 40, predictor=explainer.predictor)
    blackbox = BlackBox(explainer.predictor)
    pool = EcgPool.build(split.ecgs[:12], blackbox, split.strata[:12])
    env = EditEnv(pool, blackbox, EnvConfig(targets="territory"))
    ep = env.start(np.flatnonzero(pool.prob0 >= blackbox.threshold))
    assert ep.active.any()
    slot_ok, ok = env.slot_masks(ep), env.masks(ep)
    a = env.actions
    for action in (a.index("III", "ST", -0.1), a.index("V2", "T", 0.2)):
        cols = env.slot_edits.slot_action(a.members[action], a.sign[action] > 0, action % len(a.levels_mv))
        np.testing.assert_array_equal(ok[:, action], slot_ok[:, cols].any(axis=1))
    action = a.index("III", "ST", -0.1)
    ep = ep.take(np.flatnonzero(ok[:, action]))
    assert len(ep.idx) >= 1
    expected = a.resolve(np.full(len(ep.idx), action), env.amplitudes(ep), env.slot_masks(ep))
    env.step(ep, np.full(len(ep.idx), action))
    for i, slot in enumerate(expected):
        assert np.flatnonzero(ep.edits[i]).tolist() == [slot] and ep.edits[i, slot] == -0.1


def test_tree_consistency_makes_the_agent_agree_with_its_tree(run, explainer):
    """Fine-tuning towards the distilled tree raises how often a depth-5 tree can follow the agent; a zero
    tolerance adopts nothing."""
    split = run_split(run, "train", 40, predictor=explainer.predictor)
    blackbox = BlackBox(explainer.predictor)
    pool = EcgPool.build(split.ecgs, blackbox, split.strata)
    env = EditEnv(pool, blackbox, EnvConfig(), explainer.agent.margin_scale)
    positives = np.flatnonzero(pool.prob0 >= blackbox.threshold)
    agent = train_agent(env, AgentConfig(total_queries=600, n_envs=16, sweep_ecgs=2), positives, progress=False)
    distiller = TreeDistiller(max_depth=3)

    def agreement() -> float:
        seen = run_episodes(env, positives, agent.policy)[1]
        tree = distiller.fit_tree(seen["states"], seen["masks"], seen["actions"], agent.feature_names,
                                  agent.actions)[0]  # fmt: skip
        return fidelity(tree, seen["states"], seen["masks"], seen["actions"])

    before = agreement()
    none = make_tree_consistent(agent, [(env, positives)], ConsistencyConfig(rounds=1, tolerance=0.0), distiller)
    assert none[0]["adopted"] == 0.0
    history = make_tree_consistent(agent, [(env, positives)], ConsistencyConfig(rounds=2), distiller)
    after = agreement()
    assert len(history) == 2 and history[0]["adopted"] > 0
    assert after > before and after >= 0.8, (before, after)
    with pytest.raises(ValueError, match="tolerance"):
        ConsistencyConfig(tolerance=-1.0)


def test_explain_returns_an_explanation_and_writes_reports(explainer, test_positives, tmp_path):
    from vlm_ecg.render import render_ecg

    split, prob0, positive = test_positives
    ecg = split.ecgs[int(np.flatnonzero(positive)[0])]
    explanation = explainer.explain(ecg)
    assert isinstance(explanation, Explanation) and explanation.method == "agent"
    assert explanation.prob_before >= explanation.threshold and explanation.decision_before
    assert explanation.flipped == (explanation.prob_after < explanation.threshold)
    assert explanation.counterfactual.signal.shape == (12, 5000) and explanation.top_k == DEFAULT_TOP_K
    assert explanation.n_queries <= 1 + DEFAULT_TOP_K * explainer.agent.env_config.max_steps  # first answer + k a step
    assert explanation.probs[0] == explanation.prob_before and explanation.probs[-1] == explanation.prob_after
    assert all(t.split()[0] in ("lower", "raise", "increase", "reduce") for t in explanation.texts)
    data = explanation.to_dict()
    assert json.loads(json.dumps(data))["edits"] == [e.to_dict() for e in explanation.edits]
    paths = explanation.save(tmp_path, stem="ecg.")
    assert {p.name for p in tmp_path.iterdir()} == {"ecg.report.json", "ecg.overlay.png", "ecg.counterfactual.npz"}
    assert json.loads(paths["report"].read_text())["flipped"] == explanation.flipped
    from PIL import Image

    overlay = np.asarray(Image.open(paths["overlay"]).convert("RGB")).astype(int)
    plain = render_ecg(explanation.ecg).astype(int)
    assert overlay.shape == plain.shape
    blue = (overlay[..., 2] > 200) & (overlay[..., 0] < 60)
    assert blue.sum() > 100  # the counterfactual traces and the caption are drawn in blue
    tree = explainer.explain(ecg, method="tree")
    assert tree.method == "tree" and tree.prob_before == pytest.approx(explanation.prob_before)


def test_greedy_explains_a_negative_decision_towards_positive(explainer, test_positives):
    split, _, positive = test_positives
    negatives = np.flatnonzero(~positive)
    if negatives.size == 0:
        pytest.skip("the smoke model calls every test ECG positive")
    explanation = explainer.explain(split.ecgs[int(negatives[0])])  # auto: a negative decision -> greedy search
    assert explanation.method == "greedy" and not explanation.decision_before
    if explanation.flipped:
        assert explanation.prob_after >= explanation.threshold
    agent = explainer.explain(split.ecgs[int(negatives[0])], method="agent")
    assert agent.edits == [] and not agent.flipped and "already decides negative" in agent.notes[0]


def test_cli_explain_writes_reports_and_reports_errors(run, explainer, test_positives, tmp_path, capsys):
    split, _, positive = test_positives
    path = write_ecg(split.ecgs[int(np.flatnonzero(positive)[0])], tmp_path / "patient.npz")
    bad = tmp_path / "broken.csv"
    bad.write_text("not,an,ecg\n1,2\n")
    out = tmp_path / "out"
    status = main(["explain", str(path), str(bad), "--run", str(run), "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 1 and "broken.csv" in captured.err
    assert {p.name for p in out.iterdir()} == {"patient.report.json", "patient.overlay.png",
                                               "patient.counterfactual.npz"}  # fmt: skip
    assert "patient.npz: The model's decision is positive" in captured.out
    empty = tmp_path / "no_explainer"
    shutil.copytree(run / "final", empty / "final")
    assert main(["explain", str(path), "--run", str(empty), "--out", str(out), "--method", "agent"]) == 2
    assert "explain-train" in capsys.readouterr().err
