"""The `vlm-ecg` command (also `python -m vlm_ecg`).

Each subcommand parses its arguments here and calls the library. Heavy imports (torch, transformers,
peft, gradio) happen inside the subcommand that needs them, so `vlm-ecg info` answers in about a second.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger("vlm_ecg")


# ---------------------------------------------------------------------------------------------- info
def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print leads, sampling rate, duration, amplitude range and problems of ECG files")
    p.add_argument("files", nargs="+", type=Path, help="ECG files (WFDB .hea/.dat/.mat, .csv, .npz)")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from .io import format_report, inspect_ecg

    status = 0
    for path in args.files:
        report = inspect_ecg(path)
        print(format_report(report))
        status |= 1 if report.problems else 0
    return status


# ---------------------------------------------------------------------------------------------- synth
def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="generate the synthetic cohort and save it as a `datasets` data set")
    p.add_argument("--n", type=int, default=2800, help="number of patients")
    p.add_argument("--prevalence", type=float, default=0.12, help="share of patients with an occlusion")
    p.add_argument("--confounding", type=float, default=1.0, help="confounder strength; negative reverses it")
    p.add_argument("--noise", type=float, default=1.0, help="noise level (0 = clean, 1 = typical ED recording)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--test-fraction", type=float, default=0.15)
    p.add_argument("--out", type=Path, default=Path("data/synth"), help="output folder of the data set")
    p.add_argument("--wfdb", type=Path, default=None, help="also write every record as WFDB files into this folder")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    from .data import write_synthetic_dataset

    splits = write_synthetic_dataset(
        args.out,
        n=args.n,
        prevalence=args.prevalence,
        confounding=args.confounding,
        noise=args.noise,
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        wfdb_dir=args.wfdb,
    )
    sizes = ", ".join(f"{name} {len(split)}" for name, split in splits.items())
    print(f"wrote {args.out} ({sizes})")
    return 0


# ---------------------------------------------------------------------------------------------- render
def _image_size(text: str) -> int | tuple[int, int]:
    """ "1024" -> a square side; "768x1024" -> (height, width)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW in pixels, got {text!r}") from None
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"size must be N or HxW in pixels, got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def _add_render(sub: argparse._SubParsersAction) -> None:
    from .render_layout import GRID_COLOURS, LAYOUTS, PAGE_SIZES_MM

    p = sub.add_parser("render", help="draw ECG files as 12-lead paper images (parallel, errors listed at the end)")
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="ECG files or folders (WFDB, .csv, .npz)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--layout", default="3x4+II", choices=list(LAYOUTS))
    p.add_argument("--size", type=_image_size, default=None, help="model-input size N or HxW (page letterboxed)")
    p.add_argument("--page", default="letter", choices=list(PAGE_SIZES_MM), help="paper size (landscape)")
    p.add_argument("--dpi", type=float, default=200.0, help="page resolution when --size is not given")
    p.add_argument("--speed", type=float, default=25.0, help="paper speed in mm/s")
    p.add_argument("--gain", type=float, default=10.0, help="gain in mm/mV")
    p.add_argument("--grid", default="red", choices=list(GRID_COLOURS))
    p.add_argument("--format", dest="image_format", default="png", choices=["png", "jpg", "npy"])
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--standardize", action="store_true", help="resample to 500 Hz and fit to 10 s first")
    p.add_argument("--json", action="store_true", help="also write NAME.json with panel boxes and scales")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_render)


def _cmd_render(args: argparse.Namespace) -> int:
    from .render_batch import render_files
    from .render_layout import RenderConfig

    try:
        config = RenderConfig(
            layout=args.layout,
            image_size_px=args.size,
            page=args.page,
            dpi=args.dpi,
            paper_speed_mm_s=args.speed,
            gain_mm_per_mv=args.gain,
            grid=args.grid,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = render_files(
        args.inputs,
        args.out,
        config,
        image_format=args.image_format,
        workers=args.workers,
        standardize=args.standardize,
        write_layout_json=args.json,
        progress=not args.no_progress,
    )
    total = len(result.rendered) + len(result.failed)
    print(f"rendered {len(result.rendered)} of {total} files into {args.out}")
    for _, error in result.failed:
        print(f"failed: {error}", file=sys.stderr)
    return 1 if result.failed or not total else 0


# ---------------------------------------------------------------------------------------------- finetune / evaluate
def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model (same as `accelerate launch finetune`); keys: `vlm-ecg finetune --help`",
        add_help=False,
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="[--config FILE.yaml] [--key value ...]")
    p.set_defaults(func=_cmd_finetune)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .train import main as train_main

    return train_main(args.args)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a trained run on a data set: metrics with CIs, subgroups, plots")
    p.add_argument("run", type=Path, help="run folder (runs/NAME) or its final/ folder")
    p.add_argument(
        "--data",
        default=None,
        help="'synthetic' (with the run's cohort settings), a saved data-set folder or a PTB-XL folder; "
        "default: the run's own data",
    )
    p.add_argument("--split", default="test", help="split to score (train, val or test)")
    p.add_argument("--out", type=Path, default=None, help="folder for metrics.json and plots (default RUN/eval-SPLIT)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_run

    metrics, out = evaluate_run(
        args.run, data=args.data, split=args.split, out_dir=args.out, n_boot=args.bootstrap, batch_size=args.batch_size
    )
    print(f"wrote {out}")
    print(metrics["summary"])
    return 0


# ---------------------------------------------------------------------------------------------- predict
def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict for ECG files and folders: one CSV row per ECG, errors as a column")
    p.add_argument("inputs", nargs="+", type=Path, metavar="PATH", help="ECG files or folders (WFDB, .csv, .npz)")
    p.add_argument("--run", default=None, help="run folder, its final/ or a hub id USER/NAME (default runs/default)")
    p.add_argument("--out", type=Path, default=None, help="CSV file to write (default: print the table)")
    p.add_argument("--batch-size", type=int, default=16, help="ECGs per model call")
    p.add_argument(
        "--ignore-file-demographics",
        action="store_true",
        help="do not condition the raw probability on the age / sex a file states (the adjusted one never is)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict import ROW_FIELDS, Predictor, resolve_run, write_predictions_csv

    try:
        predictor = Predictor.from_pretrained(resolve_run(args.run))
    except (OSError, ValueError) as exc:  # no such run, not a run folder, hub id not found / offline
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = predictor.predict_files(
        args.inputs,
        batch_size=args.batch_size,
        use_file_confounders=not args.ignore_file_demographics,
        progress=not args.no_progress,
    )
    if args.out is None:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=list(ROW_FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    else:
        write_predictions_csv(rows, args.out)
    failed = [row for row in rows if row["error"]]
    print(f"predicted {len(rows) - len(failed)} of {len(rows)} ECGs" + (f" into {args.out}" if args.out else ""),
          file=sys.stderr)  # fmt: skip
    for row in failed:
        print(f"failed: {row['error']}", file=sys.stderr)
    return 1 if failed or not rows else 0


# ---------------------------------------------------------------------------------------------- push
def _add_push(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="upload a run (adapter, config, prior, explainer, plots, model card) to the Hub")
    p.add_argument("run", type=Path, help="run folder (runs/NAME) or its final/ folder")
    p.add_argument("--repo-id", required=True, help="USER/NAME or ORG/NAME of the model repository")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dry-run", action="store_true", help="write and list the exact upload folder, upload nothing")
    p.add_argument("--out", type=Path, default=None, help="folder of the --dry-run upload (default RUN/hub_upload)")
    p.add_argument("--message", default=None, help="commit message")
    p.set_defaults(func=_cmd_push)


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub import push_run, stage_upload
    from .predict import run_root

    try:
        if args.dry_run:
            out = args.out or run_root(args.run) / "hub_upload"
            files = stage_upload(args.run, out, repo_id=args.repo_id)
            print(f"dry run: would upload {len(files)} files to {args.repo_id} (private={args.private}) from {out}:")
            for name in files:
                print(f"  {name}  ({(out / name).stat().st_size:,} bytes)")
            return 0
        result = push_run(args.run, args.repo_id, private=args.private, commit_message=args.message)
    except (OSError, PermissionError, ValueError) as exc:  # no run, no token, hub refused (the token is never shown)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"pushed {len(result.files)} files to {result.repo_id} (private={result.private}): {result.commit_url}")
    return 0


# ---------------------------------------------------------------------------------------------- explain
def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain-train", help="train a run's counterfactual explainer (RL agent + decision tree)")
    p.add_argument("run", type=Path, help="run folder (runs/NAME); writes RUN/explainer/")
    p.add_argument("--total-queries", type=int, default=40000, help="model calls to spend on training the agent")
    p.add_argument("--sweep-ecgs", type=int, default=80, help="sac: training ECGs whose first step is swept")
    p.add_argument("--algorithm", default="sac", choices=["sac", "ppo"], help="soft actor-critic or PPO")
    p.add_argument("--n-envs", type=int, default=32, help="episodes run side by side (one batched call per step)")
    p.add_argument("--n-train", type=int, default=800, help="training-split ECGs considered (0 = all)")
    p.add_argument("--n-val", type=int, default=400, help="validation-split ECGs for distillation (0 = all)")
    p.add_argument("--max-depth", type=int, default=5, help="depth of the distilled tree (<= 5)")
    p.add_argument("--dagger-rounds", type=int, default=1, help="DAgger re-roll-outs during distillation")
    p.add_argument("--levels", type=float, nargs="+", default=[0.1, 0.2, 0.3], help="edit step sizes, mV")
    p.add_argument("--max-steps", type=int, default=20, help="edits per explanation at most")
    p.add_argument("--limb-policy", default="dipole", choices=["dipole", "isolated"], help="limb-lead edits")
    p.add_argument("--consistency-rounds", type=int, default=4,
                   help="rounds of tree-consistency fine-tuning of the agent (0: none)")  # fmt: skip
    p.add_argument("--consistency-margin", type=float, default=5.0,
                   help="nats by which the tree's edit is put above the agent's best in the soft targets")  # fmt: skip
    p.add_argument("--consistency-tolerance", type=float, default=None,
                   help="take the tree's edit only where the agent prefers its own by < this many nats (default: "
                        "always)")  # fmt: skip
    p.add_argument("--targets", default="lead", choices=["territory", "lead"],
                   help="what an action names: a coronary territory (its most extreme lead) or any lead")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_explain_train)
    p = sub.add_parser("explain", help="explain the triage decision on ECG files: edits that flip it, report, overlay")
    p.add_argument("files", nargs="+", type=Path, help="ECG files (WFDB, .csv, .npz)")
    p.add_argument("--run", type=Path, default=Path("runs/default"), help="run folder with final/ and explainer/")
    p.add_argument("--out", type=Path, required=True, help="output folder (one NAME.report.json / .overlay.png each)")
    p.add_argument("--method", default="auto", choices=["auto", "agent", "tree", "greedy"])
    p.add_argument("--top-k", type=int, default=8, help="agent: edits tried per step in one batched call (1 = policy)")
    p.set_defaults(func=_cmd_explain)


def _cmd_explain_train(args: argparse.Namespace) -> int:
    import json

    from .explain.agent import AgentConfig
    from .explain.consistency import ConsistencyConfig
    from .explain.environment import EnvConfig
    from .explain.training import ExplainTrainConfig, train_explainer

    try:
        config = ExplainTrainConfig(n_train_ecgs=args.n_train, n_val_ecgs=args.n_val, max_depth=args.max_depth,
                                    dagger_rounds=args.dagger_rounds, seed=args.seed)  # fmt: skip
        agent_config = AgentConfig(
            algorithm=args.algorithm,
            total_queries=args.total_queries,
            n_envs=args.n_envs,
            sweep_ecgs=args.sweep_ecgs,
            seed=args.seed,
        )
        env_config = EnvConfig(levels_mv=tuple(args.levels), max_steps=args.max_steps, limb_policy=args.limb_policy,
                               targets=args.targets)  # fmt: skip
        consistency = ConsistencyConfig(rounds=args.consistency_rounds, tolerance=args.consistency_tolerance,
                                        margin=args.consistency_margin)  # fmt: skip
        out = train_explainer(args.run, config, agent_config, env_config, progress=not args.no_progress,
                              consistency=consistency)  # fmt: skip
    except (OSError, ValueError) as exc:  # no run, nothing predicted positive, bad settings
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = json.loads((out / "distill_report.json").read_text())
    d = report["distill"]
    print(
        f"wrote {out}: agent validity {d['agent_validity']:.2f}, tree fidelity {d['fidelity']:.2f}, "
        f"tree validity {d['tree_validity']:.2f} ({report['seconds']:.0f} s, {report['queries']} calls)"
    )
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from .errors import EcgError
    from .explain.explainer import load_explainer

    try:
        explainer = load_explainer(args.run, require_agent=args.method in ("agent", "tree"))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.files:
        try:
            explanation = explainer.explain(path, method=args.method, top_k=args.top_k)
        except (EcgError, ValueError) as exc:
            print(f"failed: {exc}", file=sys.stderr)
            failed += 1
            continue
        paths = explanation.save(args.out, stem=f"{path.stem}.")
        print(f"{path}: {explanation.summary()}")
        print(f"  wrote {paths['report']}, {paths['overlay']}, {paths['counterfactual']}")
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="serve the web demo (Gradio) of a run on 127.0.0.1")
    p.add_argument("--run", default=None, help="run folder or hub id USER/NAME (default runs/default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it on the network)")
    p.add_argument("--port", type=int, default=None, help="port (default: gradio's, 7860 or the next free one)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live share link")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo_app import launch_demo

    return launch_demo(args.run, host=args.host, port=args.port, share=args.share)


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlm-ecg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_info(sub)
    _add_synth(sub)
    _add_render(sub)
    _add_finetune(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    _add_push(sub)
    _add_demo(sub)
    _add_explain(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `vlm-ecg` command; returns the process exit status."""
    from .errors import EcgError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except EcgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
