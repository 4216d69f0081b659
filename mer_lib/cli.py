"""Command line: train one model with the notebooks' trainer and run directory.

Examples::

    python -m mer_lib train --variant a2m2e --seed 6 --profile paper --data /path/to/folder
    python -m mer_lib train --variant aa2e --seed 21 --profile quick --device cuda --epochs 50
    python -m mer_lib list-variants

``train`` loads the stored model when the same configuration was trained before (by a
chapter or an earlier command), resumes an interrupted run, or trains from scratch; then it
prints the model folder and the test-set metrics. Errors of mer_lib are printed as one line
``error: ...`` with exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import MerError

EPILOG = """\
Models are stored under RUN_DIR/models/<variant>/<key>/ (config.json, history.csv, model.pt;
state.pt while training). The key hashes the whole configuration and the data, so a chapter
asking for the same model loads it instead of retraining. Interrupt with Ctrl-C and rerun the
same command to resume after the last completed epoch.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mer_lib", description="Music emotion recognition models: train and list variants.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tr = sub.add_parser("train", help="train (or load) one model and print its test metrics",
                        description="Train one model variant for one seed (or load it if stored), "
                                    "then print the model folder and its test-set metrics.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--variant", required=True, help="model variant (see list-variants), e.g. a2m2e")
    tr.add_argument("--seed", type=int, required=True, help="training seed, e.g. 6")
    tr.add_argument("--profile", default="quick", help="execution profile: smoke, quick or paper (default: quick)")
    tr.add_argument("--data", default=None, metavar="FOLDER",
                    help="folder with soundtracks/ (and midlevel/) in the real datasets' layouts; "
                         "default: the synthetic corpus")
    tr.add_argument("--run-dir", default=None, metavar="DIR",
                    help="run directory; models go to DIR/models/ (default: mer_home(), i.e. $MER_HOME "
                         "or runs/ in the project root, the notebooks' run directory)")
    tr.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default: auto)")
    tr.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the profile's)")
    tr.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: the profile's)")
    tr.add_argument("--width", type=float, default=None, help="channel multiplier (default: the profile's)")
    tr.add_argument("--batch-size", type=int, default=None, help="batch size (default: the profile's)")
    tr.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the profile's)")
    tr.add_argument("--adv-every", type=int, default=None,
                    help="adversarial variants: every N-th epoch is adversarial (default: the profile's)")
    tr.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    tr.add_argument("--channels-last", action="store_true", help="channels_last memory format (CUDA only)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")

    sub.add_parser("list-variants", help="list the registered model variants",
                   description="List the registered model variants with their heads and training recipes.")
    return parser


def _list_variants() -> int:
    from .models import VARIANTS

    print(f"{'name':<10} {'label':<8} {'head':<11} {'concept_w':>9} {'adversarial':>11}  description")
    for v in VARIANTS.values():
        print(f"{v.name:<10} {v.label:<8} {v.head:<11} {v.concept_weight:>9g} {str(v.adversarial):>11}  {v.description}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .profiles import get_profile
    from .runtime import resolve_device
    from .training import TrainConfig, get_trained

    profile = get_profile(args.profile)
    overrides = dict(epochs=args.epochs, patience=args.patience, width=args.width,
                     batch_size=args.batch_size, lr=args.lr, adv_every=args.adv_every,
                     bf16=args.bf16 or None, channels_last=args.channels_last or None)
    # fail fast, before loading data
    TrainConfig.from_profile(profile, args.variant, args.seed, **overrides)
    resolve_device(args.device)

    from .data import load_dataset
    from .paths import mer_home

    run_dir = Path(args.run_dir) if args.run_dir else mer_home()  # the notebooks' default too
    data = load_dataset(profile, data=args.data, progress=not args.no_progress)
    tm = get_trained(args.variant, args.seed, data, profile, run_dir, device=args.device,
                     progress=not args.no_progress, **overrides)
    metrics = tm.evaluate(data, "test")
    print(f"model folder: {tm.path}")
    print(f"{'trained now' if tm.trained_now else 'loaded from cache'}: {tm.config.variant} seed "
          f"{tm.config.seed}, {len(tm.history)} epochs")
    print("test metrics:")
    for key, value in metrics.items():
        print(f"  {key:<32} {value:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mer_lib`` and the ``mer-lib`` script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "list-variants":
            return _list_variants()
        return _train(args)
    except MerError as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume after the last completed epoch",
              file=sys.stderr)
        return 130
