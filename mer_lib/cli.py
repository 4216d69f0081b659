"""Command line: plan, run and inspect the experiment's jobs; train or attack one model.

Examples::

    python -m mer_lib plan --profile paper                     # the missing jobs, as a table
    python -m mer_lib run --profile quick                      # run them here, one after the other
    python -m mer_lib run --profile paper --engine ray         # one Ray task per job (all GPUs)
    python -m mer_lib run --profile paper --engine ray --address auto   # an existing Ray cluster
    python -m mer_lib attack --variant a2m2e --seed 6 --mode projected --epsilon 0.003
    python -m mer_lib attack --variant a2e --seed 6 --domain waveform --snr-db 40
    python -m mer_lib train --variant a2m2e --seed 6 --profile paper --data /path/to/folder
    python -m mer_lib list-variants

``plan``, ``run`` and ``attack`` take the chapters' parameters as options (``--epsilons
0.001,0.01``, ``--seeds 6,21``, ``--data FOLDER``, ...; see :mod:`mer_lib.experiments`), so
they see exactly the jobs a chapter with the same parameters needs, in the same store
(``--run-dir``, default ``$MER_HOME`` or ``runs/``). Everything stored is loaded, not
recomputed; concurrent commands on one store compute each job once. ``train`` loads the
stored model, resumes an interrupted run, or trains from scratch, then prints the model
folder and its test metrics. Errors of mer_lib are printed as one line ``error: ...`` with
exit status 2; a run with failed jobs exits with status 1.
"""
from __future__ import annotations

import argparse
import sys

from .allocator import keep_large_buffers
from .errors import MerError, ParameterError
from .experiments import PARAMETERS, Experiment
from .jobs import KINDS
from .models import VARIANTS
from .params import parse_cli_list
from .runner import AttackJob, JobError, Runner, TrainJob
from .training import TrainConfig, get_trained

EPILOG = """\
Models are stored under RUN_DIR/models/<variant>/<key>/ (config.json, history.csv, model.pt;
state.pt while training). The key hashes the whole configuration and the data, so a chapter
asking for the same model loads it instead of retraining. Interrupt with Ctrl-C and rerun the
same command to resume after the last completed epoch.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mer_lib", description="Music emotion recognition: plan and run the experiment, train or attack one model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tr = sub.add_parser("train", help="train (or load) one model and print its test metrics",
                        description="Train one model variant for one seed (or load it if stored), "
                                    "then print the model folder and its test-set metrics.",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("--variant", required=True, help="model variant (see list-variants), e.g. a2m2e")
    tr.add_argument("--seed", type=int, required=True, help="training seed, e.g. 6")
    _add_experiment_options(tr, only=DATA_OPTIONS)
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

    common = dict(formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    pl = sub.add_parser("plan", help="list the experiment's missing train and attack jobs",
                        description="Print the train and attack jobs of an experiment that are not "
                                    "stored yet (the data are loaded, nothing is trained).", **common)
    _add_experiment_options(pl)
    pl.add_argument("--all", action="store_true", help="list the stored jobs too")
    pl.add_argument("--only", choices=list(KINDS), help="only this kind of job")

    rn = sub.add_parser("run", help="run the experiment's missing jobs",
                        description="Train and attack everything the experiment needs that is not "
                                    "stored yet, then print a summary.", **common)
    _add_experiment_options(rn)
    rn.add_argument("--engine", choices=["inprocess", "ray"], default="inprocess",
                    help="inprocess: one job after the other here (default); ray: one Ray task per "
                         "job (pip install -e '.[cluster]')")
    rn.add_argument("--address", default=None,
                    help="Ray cluster to join (e.g. auto); default: start Ray on this machine")
    rn.add_argument("--only", choices=list(KINDS), help="only this kind of job")

    at = sub.add_parser("attack", help="attack one model with one attack configuration",
                        description="Attack one model (trained first when missing) with one attack "
                                    "configuration and print a summary of the stored table.", **common)
    at.add_argument("--variant", required=True, help="model variant, e.g. a2m2e")
    at.add_argument("--seed", type=int, required=True, help="training seed, e.g. 6")
    at.add_argument("--mode", choices=["reference", "projected"], default="projected",
                    help="attack mode (default: projected)")
    at.add_argument("--domain", choices=["spectrogram", "waveform"], default="spectrogram",
                    help="spectrogram: perturb the model input (default); waveform: perturb the audio "
                         "through the front end")
    at.add_argument("--threat", choices=["snr", "linf"], default=None,
                    help="waveform threat model: snr (an SNR budget, the default) or linf (--wave-epsilon)")
    at.add_argument("--snr-db", type=float, default=None,
                    help="waveform attack: SNR budget in dB (default 40); the perturbation's SNR is at least this")
    _add_experiment_options(at, skip=("variants", "seeds", "modes", "epsilons", "reference_logs", "snr_budgets_db"))

    sub.add_parser("list-variants", help="list the registered model variants",
                   description="List the registered model variants with their heads and training recipes.")
    return parser


#: The data options (every command takes them).
DATA_OPTIONS = ("profile", "device", "data", "n_clips", "clip_seconds", "corpus_seed", "spurious_cue",
                "excerpt_seconds", "excerpt_seed")


def _add_experiment_options(parser: argparse.ArgumentParser, *, only=None, skip=()) -> None:
    """One option per chapter parameter (``--n-clips`` for ``n_clips``), plus ``--run-dir``."""
    group = parser.add_argument_group("experiment (the chapters' parameters; default: the profile's)")
    for p in PARAMETERS:
        if (only is not None and p.name not in only) or p.name in skip:
            continue
        default = "profile's" if p.default is None else p.default
        kind = "comma-separated list" if p.is_list else p.expected
        group.add_argument("--" + p.name.replace("_", "-"), dest=p.name, default=None, metavar="VALUE",
                           help=f"{p.comment.split(' (None')[0]}: {kind} (default: {default})")
    group.add_argument("--run-dir", default=None, metavar="DIR",
                       help="the run store (default: $MER_HOME, or runs/ in the project root: the "
                            "chapters' store)")


def _experiment(args: argparse.Namespace, **fixed):
    """The :class:`~mer_lib.experiments.Experiment` of the options given (plus ``fixed`` ones)."""
    params = {}
    for p in PARAMETERS:
        value = getattr(args, p.name, None)
        if value is not None:   # a list is comma-separated or a Python list; "None": the default
            listed = p.is_list and value.strip() != "None"
            params[p.name] = parse_cli_list(value) if listed else value
    params.update(fixed)
    return Experiment.from_parameters(**params)


def _runner(args: argparse.Namespace, **fixed):
    return Runner(_experiment(args, **fixed), args.run_dir,
                  progress=not getattr(args, "no_progress", False))


def _kinds(args: argparse.Namespace) -> tuple[str, ...]:
    return (args.only,) if args.only else KINDS


def _plan(args: argparse.Namespace) -> int:
    print(_runner(args).plan_text(_kinds(args), show_stored=args.all))
    return 0


def _run(args: argparse.Namespace) -> int:
    runner = _runner(args)
    try:
        report = runner.run(args.engine, kinds=_kinds(args), address=args.address)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    print(runner.plan_text(_kinds(args)).splitlines()[-1])
    return 0


def _wave_attack(args: argparse.Namespace) -> int:
    """``attack --domain waveform``: one waveform attack of one model, its stored table summarised."""
    if args.mode != "projected":
        raise ParameterError("--mode applies to spectrogram attacks; a waveform attack takes --threat "
                             f"and --snr-db (got --mode {args.mode})")
    threat = args.threat or "snr"
    if threat == "linf" and args.snr_db is not None:
        raise ParameterError(f"--snr-db is the budget of --threat snr, got --threat linf --snr-db {args.snr_db:g}")
    budget = 40.0 if args.snr_db is None else args.snr_db
    runner = _runner(args, variants=[args.variant], seeds=[args.seed],
                     **({"snr_budgets_db": [budget]} if threat == "snr" else {}))
    config = runner.exp.wave_config(threat, budget)
    train_job = runner.train_jobs()[0]
    trained = runner.train(train_job)
    stored = runner.attack(runner._attack_job(train_job, config))
    t = stored.table
    print(f"model: {trained.path} ({'trained now' if trained.trained_now else 'stored'})")
    print(f"attack: {config.to_dict()}")
    print(f"table: {stored.path} ({'computed now' if stored.computed_now else 'stored'}), "
          f"{len(t)} {runner.exp.split} clips")
    for name, value in (("MAE clean", t.mae_clean.mean()), ("MAE adversarial (final)", t.mae_final.mean()),
                        ("delta MAE", (t.mae_final - t.mae_clean).mean()),
                        ("min waveform SNR (dB)", t.wave_snr_db.min()), ("max waveform L-inf", t.wave_linf.max()),
                        ("converged", t.converged.mean())):
        print(f"  {name:<26} {value:.4f}")
    return 0


def _attack(args: argparse.Namespace) -> int:
    if args.domain == "waveform":
        return _wave_attack(args)
    if args.threat is not None or args.snr_db is not None:
        raise ParameterError("--threat and --snr-db apply to --domain waveform")


    epsilons = parse_cli_list(args.epsilon if args.epsilon is not None else "0.001")
    runner = _runner(args, variants=[args.variant], seeds=[args.seed], modes=[args.mode],
                     epsilons=epsilons)
    exp = runner.exp
    train_job = runner.train_jobs()[0]
    config = exp.attack_config(args.mode, exp.epsilon)
    job = next(j for j in runner.attack_jobs() if j.config == config)
    assert isinstance(job, AttackJob) and isinstance(train_job, TrainJob)
    trained = runner.train(train_job)
    stored = runner.attack(job)
    t = stored.table
    delta = t.mae_final - t.mae_clean
    print(f"model: {trained.path} ({'trained now' if trained.trained_now else 'stored'})")
    print(f"attack: {config.to_dict()}")
    print(f"table: {stored.path} ({'computed now' if stored.computed_now else 'stored'}), "
          f"{len(t)} {exp.split} clips")
    for name, value in (("MAE clean", t.mae_clean.mean()), ("MAE adversarial (final)", t.mae_final.mean()),
                        ("delta MAE", delta.mean()), ("median SNR (dB)", t.snr_db.median()),
                        ("max L-inf", t.linf.max()), ("converged", t.converged.mean())):
        print(f"  {name:<26} {value:.4f}")
    return 0


def _list_variants() -> int:
    rows = [("name", "label", "head", "concept_w", "objective", "description")]
    rows += [(v.name, v.label, v.head, f"{v.concept_weight:g}", v.objective, v.description)
             for v in VARIANTS.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[5])
    return 0


def _train(args: argparse.Namespace) -> int:
    overrides = dict(epochs=args.epochs, patience=args.patience, width=args.width,
                     batch_size=args.batch_size, lr=args.lr, adv_every=args.adv_every,
                     bf16=args.bf16 or None, channels_last=args.channels_last or None)
    # fail fast, before loading data: every option is checked here
    runner = _runner(args, variants=[args.variant], seeds=[args.seed])
    profile = runner.exp.profile
    TrainConfig.from_profile(profile, args.variant, args.seed, **overrides)
    run_dir, data = runner.run_dir, runner.data
    tm = get_trained(args.variant, args.seed, data, profile, run_dir, device=runner.device,
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
    keep_large_buffers()        # this process, and the Ray workers it may start
    try:
        if args.command == "list-variants":
            return _list_variants()
        commands = {"plan": _plan, "run": _run, "attack": _attack, "train": _train}
        return commands[args.command](args)
    except MerError as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:  # any other I/O failure: one line naming the file, like MerError
        where = f"cannot access {exc.filename}: " if exc.filename else ""
        message = " ".join(f"{where}{exc.strerror or exc}".split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume after the last completed epoch",
              file=sys.stderr)
        return 130
