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


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlm-ecg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_info(sub)
    _add_synth(sub)
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
