"""Counterfactual explainer: RL agent vs distilled tree vs greedy search, on test ECGs the model calls positive.

Run it like this (two CPU cores; trains RUN/explainer first when it is missing):

    .venv/bin/python bench/bench_explain.py                              # runs/default, 200 ECGs, greedy on 30
    .venv/bin/python bench/bench_explain.py --run runs/NAME --n 200 --greedy-n 200 --json out.json

ECGs: the run's test split, in order, keeping those the model calls positive. A synthetic run's test split holds
fewer than 200 of them (~60 of 420), so the rest come from a FRESH cohort of the same generator and settings with
another seed (never seen in training; `--fresh-seed`), generated 1 000 records at a time until `--n` positives.

Every method explains each ECG through the public `Explainer.explain` path, one ECG at a time (delineation, the
model's first answer, then the roll-out or the search), so "s/ECG" is what a user waits. Printed per method:
validity (share of decisions flipped), median number of edits and median total |edit| in mV over the flipped ones,
time and model calls per explanation. The greedy search (hundreds of model calls per ECG) runs on the first
`--greedy-n` of the same ECGs, and the agent's numbers on that subset are printed beside it for the speed ratio at
comparable validity. Tree fidelity = share of the agent's states on these test ECGs where the tree picks the
agent's edit (the policy's first choice); also printed: how often the tree's edit is the one the default top-k
explainer actually makes (its best candidate by the model, which need not be the policy's first choice).
Territory: on ECGs labelled with a culprit vessel, the share whose edited leads all lie in that vessel's territory
(LAD: V1-V4; LCx: I, aVL, V5, V6 and V1-V3 for posterior; RCA: II, III, aVF and reciprocal aVL).

Rows: "agent" is what `explain()` does by default (the policy's top-k edits tried per step in one batched call,
`--top-k`, default 8); "agent top-1" is the bare policy (one call per step). Targets (issue 6), checked on the
default roll-out: agent validity >= 0.90, median <= 3 edits and <= 0.3 mV, <= 1 s per ECG, >= 5x faster than
greedy at comparable validity; tree fidelity >= 0.85.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vlm_ecg.explain.agent import AgentConfig, run_episodes
from vlm_ecg.explain.distill import fidelity
from vlm_ecg.explain.environment import BlackBox, EcgPool, EditEnv
from vlm_ecg.explain.explainer import DEFAULT_TOP_K, explainer_dir, load_explainer
from vlm_ecg.explain.training import ExplainTrainConfig, run_split, train_explainer
from vlm_ecg.predict import Predictor

TERRITORY = {
    "LAD": {"V1", "V2", "V3", "V4"},
    "LCx": {"I", "aVL", "V5", "V6", "V1", "V2", "V3"},
    "RCA": {"II", "III", "aVF", "aVL"},
}


def fresh_positives(
    run: Path, predictor, blackbox: BlackBox, need: int, seed: int
) -> tuple[list, np.ndarray, list[str], np.ndarray]:
    """Up to `need` ECGs the model calls positive from fresh synthetic cohorts (the run's generator settings, seed
    `seed`, `seed + 1`, ...): (ECGs, strata, culprits of labelled positives, probabilities)."""
    from vlm_ecg.data import build_dataset
    from vlm_ecg.ecg import Ecg
    from vlm_ecg.synth import make_cohort
    from vlm_ecg.train_config import load_train_config

    config = load_train_config(["--config", str(run / "train_config.yaml")])
    if config.data != "synthetic" or need <= 0:
        return [], np.zeros(0, np.int64), [], np.zeros(0)
    ecgs, strata, culprits, probs = [], [], [], []
    for attempt in range(10):
        records = make_cohort(n=1000, prevalence=config.synth_prevalence, confounding=config.synth_confounding,
                              noise=config.synth_noise, seed=seed + attempt)  # fmt: skip
        data = build_dataset(records)
        z = predictor.strata_of_rows(data)
        signals = np.stack([r.ecg.signal for r in records]).astype(np.float32)
        p = blackbox(signals, z)
        for i in np.flatnonzero(p >= blackbox.threshold):
            r = records[i]
            ecgs.append(Ecg(r.ecg.signal, r.ecg.fs, {"id": f"fresh{seed + attempt}-{r.ecg.meta.get('id', i)}",
                                                     "source": "fresh synthetic cohort"}))  # fmt: skip
            strata.append(z[i])
            c = r.labels.culprit
            culprits.append(c if r.labels.triage == 1 and c in TERRITORY else "")
            probs.append(p[i])
        if len(ecgs) >= need:
            break
    return ecgs[:need], np.asarray(strata[:need]), culprits[:need], np.asarray(probs[:need])


def summarise(explanations: list) -> dict:
    flipped = [e for e in explanations if e.flipped]
    return {
        "n": len(explanations),
        "validity": len(flipped) / max(len(explanations), 1),
        "median_edits": statistics.median([len(e.edits) for e in flipped]) if flipped else float("nan"),
        "median_total_mv": statistics.median([e.total_edit_mv for e in flipped]) if flipped else float("nan"),
        "s_per_ecg": statistics.mean([e.seconds for e in explanations]) if explanations else float("nan"),
        "median_s_per_ecg": statistics.median([e.seconds for e in explanations]) if explanations else float("nan"),
        "calls_per_ecg": statistics.mean([e.n_queries for e in explanations]) if explanations else float("nan"),
    }


def territory_share(explanations: list, culprits: list[str]) -> dict:
    rows = [(e, c) for e, c in zip(explanations, culprits, strict=True) if c in TERRITORY and e.flipped and e.edits]
    if not rows:
        return {"n": 0}
    all_in = [all(x.lead in TERRITORY[c] for x in e.edits) for e, c in rows]
    any_in = [any(x.lead in TERRITORY[c] for x in e.edits) for e, c in rows]
    per_edit = [x.lead in TERRITORY[c] for e, c in rows for x in e.edits]
    return {
        "n": len(rows),
        "all_edits_in_territory": float(np.mean(all_in)),
        "some_edit_in_territory": float(np.mean(any_in)),
        "edits_in_territory": float(np.mean(per_edit)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/default"), help="run folder")
    parser.add_argument("--n", type=int, default=200, help="test ECGs predicted positive to explain")
    parser.add_argument("--greedy-n", type=int, default=30, help="of those, how many the greedy search explains")
    parser.add_argument(
        "--top-k", type=int, default=DEFAULT_TOP_K, help="edits the agent tries per step (explain()'s default)"
    )
    parser.add_argument("--fresh-seed", type=int, default=1000, help="seed of the fresh cohort that tops up")
    parser.add_argument("--retrain", action="store_true", help="train the explainer even if the run has one")
    parser.add_argument("--total-queries", type=int, default=AgentConfig().total_queries, help="when training")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    predictor = Predictor.from_pretrained(args.run)
    if args.retrain or not (explainer_dir(args.run) / "agent.json").is_file():
        print(f"training the explainer of {args.run} ...")
        train_explainer(
            args.run, ExplainTrainConfig(), AgentConfig(total_queries=args.total_queries), predictor=predictor
        )
    explainer = load_explainer(args.run, predictor=predictor)
    report = explainer.report
    print(
        f"explainer training: {report['seconds']:.0f} s, {report['queries']} model calls "
        f"({report['agent_training']['queries']} to train the agent in {report['agent_training']['seconds']:.0f} s), "
        f"validation: agent validity {report['distill']['agent_validity']:.2f}, tree fidelity "
        f"{report['distill']['fidelity']:.2f}, tree validity {report['distill']['tree_validity']:.2f}"
    )

    test = run_split(args.run, "test", 0, positives_first=False, predictor=predictor)
    blackbox = BlackBox(predictor)
    prob0 = blackbox(np.stack([e.signal for e in test.ecgs]), test.strata)
    positive = np.flatnonzero(prob0 >= blackbox.threshold)[: args.n]
    ecgs = [test.ecgs[i] for i in positive]
    culprits = [test.culprit[i] if test.triage[i] == 1 else "" for i in positive]
    strata, probs = test.strata[positive], prob0[positive]
    fresh = fresh_positives(args.run, predictor, blackbox, args.n - len(ecgs), args.fresh_seed)
    print(
        f"test split: {len(test.ecgs)} ECGs, {int((prob0 >= blackbox.threshold).sum())} predicted positive; "
        f"{len(fresh[0])} more from a fresh cohort (seed {args.fresh_seed}); explaining {len(ecgs) + len(fresh[0])}"
    )
    ecgs += fresh[0]
    culprits += fresh[2]
    strata, probs = np.concatenate([strata, fresh[1]]).astype(np.int64), np.concatenate([probs, fresh[3]])

    results: dict[str, list] = {"agent": [], "agent top-1": [], "tree": [], "greedy": []}
    # the decision is made on the back-door adjusted probability, which does not depend on the patient's stratum
    for ecg in tqdm(ecgs, desc="agent and tree"):
        results["agent"].append(explainer.explain(ecg, method="agent", top_k=args.top_k))
        results["agent top-1"].append(explainer.explain(ecg, method="agent", top_k=1))
        results["tree"].append(explainer.explain(ecg, method="tree"))
    for ecg in tqdm(ecgs[: args.greedy_n], desc="greedy"):
        results["greedy"].append(explainer.explain(ecg, method="greedy"))

    # fidelity on the agent's own states on these test ECGs (batched roll-out, same environment as explain())
    pool = EcgPool.build(ecgs, blackbox, strata, explainer.env_config.limb_policy, probs)
    env = EditEnv(pool, blackbox, explainer.env_config, explainer.agent.margin_scale)
    _, seen = run_episodes(env, np.arange(len(pool)), explainer.agent.policy)
    test_fidelity = fidelity(explainer.tree, seen["states"], seen["masks"], seen["actions"])
    test_action_fidelity = fidelity(explainer.tree, seen["states"], seen["masks"], seen["actions"], with_size=True)
    # and with the edits the default explainer actually makes (the best of the policy's top-k, by the model)
    executed: dict = {}
    explainer.agent.rollout(env, np.arange(len(pool)), top_k=args.top_k, seen=executed)
    executed_agreement = fidelity(explainer.tree, executed["states"], executed["masks"], executed["actions"])

    table = {m: summarise(r) for m, r in results.items()}
    table["agent on greedy subset"] = summarise(results["agent"][: args.greedy_n])
    table["agent top-1 on greedy subset"] = summarise(results["agent top-1"][: args.greedy_n])
    print(f"\n{'method':<30}{'n':>5}{'validity':>10}{'med edits':>11}{'med mV':>9}{'s/ECG':>9}{'calls/ECG':>11}")
    for name, row in table.items():
        print(
            f"{name:<30}{row['n']:>5}{row['validity']:>10.2f}{row['median_edits']:>11.1f}"
            f"{row['median_total_mv']:>9.2f}{row['s_per_ecg']:>9.3f}{row['calls_per_ecg']:>11.1f}"
        )
    speed = table["greedy"]["s_per_ecg"] / table["agent on greedy subset"]["s_per_ecg"]
    top1 = "agent top-1 on greedy subset"
    speed_1 = table["greedy"]["s_per_ecg"] / table[top1]["s_per_ecg"]
    print(
        f"\nagent vs greedy on the same {table['greedy']['n']} ECGs: {speed:.1f}x faster per ECG "
        f"(validity {table['agent on greedy subset']['validity']:.2f} vs {table['greedy']['validity']:.2f}); "
        f"top-1 policy: {speed_1:.1f}x (validity {table[top1]['validity']:.2f})"
    )
    print(
        f"tree fidelity on the agent's test states: {test_fidelity:.3f} on the edit, {test_action_fidelity:.3f} "
        f"on edit and size ({len(seen['actions'])} states); agreement with the edits the top-{args.top_k} "
        f"explainer makes: {executed_agreement:.3f} ({len(executed['actions'])} states)"
    )
    territory = {m: territory_share(results[m], culprits[: len(results[m])]) for m in results}
    for m, t in territory.items():
        if t["n"]:
            print(
                f"territory ({m}, {t['n']} flipped labelled positives): all edited leads in the culprit territory "
                f"{t['all_edits_in_territory']:.2f}, at least one {t['some_edit_in_territory']:.2f}, "
                f"edits {t['edits_in_territory']:.2f}"
            )
    a = table["agent"]
    checks = {
        "agent validity >= 0.90": a["validity"] >= 0.90,
        "median edits <= 3": a["median_edits"] <= 3,
        "median total <= 0.3 mV": a["median_total_mv"] <= 0.3,
        "<= 1 s per ECG": a["s_per_ecg"] <= 1.0,
        ">= 5x faster than greedy": speed >= 5.0,
        "tree fidelity >= 0.85": test_fidelity >= 0.85,
    }
    print("\n" + "\n".join(f"  [{'met' if ok else 'NOT met'}] {k}" for k, ok in checks.items()))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "table": table,
                    "speedup_vs_greedy": speed,
                    "tree_fidelity": test_fidelity,
                    "tree_action_fidelity": test_action_fidelity,
                    "tree_agreement_with_executed_edits": executed_agreement,
                    "territory": territory,
                    "targets": checks,
                    "training": report,
                    "when": time.strftime("%Y-%m-%d %H:%M"),
                },
                indent=1,
                default=float,
            )
        )


if __name__ == "__main__":
    main()
