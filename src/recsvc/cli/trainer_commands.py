"""The trainer's commands: sample, import, train, evaluate, campaign.

They import the trainer (recsvc_training) inside each command, not at the top: a serving image installed
without the train extra has no trainer, and must still run the server and the client commands. The commands
only parse options and print; the work is the pipeline's (recsvc_training.pipeline).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from recsvc.cli.common import add_parser, settings_from
from recsvc.config import Settings, TrainingSettings


def day_of_date(text: str) -> int:
    """An ISO date as days since 1970-01-01, the unit of the events' ``day`` column."""
    from recsvc.days import day_of_iso

    try:
        return day_of_iso(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def quiet_openmp_waits() -> None:
    """Let idle OpenMP threads sleep instead of spinning (unless the caller chose otherwise).

    LightGBM's (and implicit's) OpenMP threads spin-wait for work by default; on a machine whose cores are
    busy with other jobs the spinning threads compete with the one doing the work (README, Performance). Only
    read when the OpenMP runtime loads, so this runs before the trainer is imported.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cmd_sample(args: argparse.Namespace) -> int:
    from recsvc_training.sample import generate_sample

    print(generate_sample(Path(args.out), seed=args.seed, n_customers=args.customers, n_items=args.items))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from recsvc_training.input.importers import IMPORTERS

    print(IMPORTERS[args.dataset](Path(args.src), Path(args.out)))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    quiet_openmp_waits()
    import logging

    from recsvc_training.input.live_events import import_configured
    from recsvc_training.pipeline import train

    settings = settings_from(args)
    logging.getLogger("recsvc").info("training settings: %s", settings.describe())
    if args.engine == "spark":
        return train_on_spark(args, settings)
    live = import_configured(Path(args.data), settings)  # events recorded live since the last run
    print(live.summary() if live is not None else "live events: none (events off or no store yet)")
    result = train(Path(args.data), settings.server.artifact_root, settings.training, force=args.force,
                   echo=print)
    print(result.summary())
    return 0


def train_on_spark(args: argparse.Namespace, settings: Settings) -> int:
    """``recsvc train --engine spark``: the Spark trainer (recsvc_training.spark), the `spark` extra."""
    from recsvc.cli.common import fail

    try:
        from recsvc_training.spark.session import SparkUnavailableError, require_pyspark
        require_pyspark()
        from recsvc_training.spark.train import train_spark
    except SparkUnavailableError as exc:
        return fail("train", str(exc))
    try:
        result = train_spark(Path(args.data), Path(settings.server.artifact_root), settings.training,
                             master=args.master)
    except SparkUnavailableError as exc:
        return fail("train", str(exc))
    print(result.summary())
    return 0


def evaluation_settings(base: TrainingSettings, test_days: int, k: int) -> TrainingSettings:
    """``base`` with evaluation on and the command line's window and cut-off (0 keeps the setting)."""
    settings = dataclasses.replace(base, evaluate=True)
    if test_days:
        settings = dataclasses.replace(settings, eval_test_days=test_days)
    if k:
        settings = dataclasses.replace(settings, eval_k=k)
    return settings


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate on a time split without publishing: report files go to --out."""
    quiet_openmp_waits()
    from recsvc.cli.common import fail
    from recsvc_training.evaluation.report import format_table
    from recsvc_training.pipeline import evaluate

    settings = evaluation_settings(settings_from(args).training, args.test_days, args.k)
    result = evaluate(Path(args.data), Path(args.out), settings, as_of=args.as_of)
    if result is None:
        return fail("evaluate", "the log is too short to evaluate with these windows (see --test-days and "
                                "training.ranker_label_days)")
    report, paths = result
    print(format_table(report))
    print(f"report: {', '.join(str(p) for p in paths.values())}")
    return 0


def cmd_campaign(args: argparse.Namespace) -> int:
    """Run a campaign spec against the published artifact set: who to message, about what."""
    from recsvc_training.campaigns import run_campaign

    settings = settings_from(args)
    result = run_campaign(Path(args.spec), Path(settings.server.artifact_root), Path(args.out), settings=settings,
                          progress=not args.no_progress and os.isatty(2), record_sent=args.record_sent)
    s = result.summary
    print(f"campaign {s['campaign']} ({s['kind']}, {s['channel']}): {s['audience']:,} in the audience, "
          f"{s['sent']:,} to send; suppressed " + (", ".join(f"{k} {v:,}" for k, v in s["suppressed"].items())
                                                   or "none"))
    print(f"files: {', '.join(str(p) for p in result.files.values())}")
    return 0


def add_trainer_commands(sub: argparse._SubParsersAction) -> None:
    """Register sample, import, train, evaluate and campaign."""
    p = add_parser(sub, "sample", cmd_sample, "generate the bundled sample retailer data set")
    p.add_argument("--out", required=True, help="folder to write the tables into")
    p.add_argument("--seed", type=int, default=7, help="random seed (the same seed gives the same data)")
    p.add_argument("--customers", type=int, default=2000, help="number of customers")
    p.add_argument("--items", type=int, default=400, help="number of catalog items")

    p = add_parser(sub, "import", cmd_import, "turn a public data set into the input contract")
    p.add_argument("dataset", choices=["tafeng", "online_retail", "movielens100k"], help="which data set")
    p.add_argument("--src", required=True, help="the data set file (or folder for movielens100k)")
    p.add_argument("--out", required=True, help="data folder to write")

    p = add_parser(sub, "train", cmd_train, "train every model from a data folder and publish an artifact set")
    p.add_argument("--data", required=True, help="data folder (events, items, ...; see README, Input contract)")
    p.add_argument("--artifacts", help="artifact root, a folder or a URL such as s3://bucket/prefix "
                                        "(default: the setting server.artifact_root)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="publish even if the quality gate refuses (recorded)")
    p.add_argument("--engine", choices=["single", "spark"], default="single",
                   help="single: this process (numpy, implicit); spark: Spark jobs (the spark extra, Java 17+; "
                        "no evaluation, ranker or LightFM, see README, Trainer on Spark)")
    p.add_argument("--master", default="local[*]",
                   help="Spark master URL with --engine spark (local[N], spark://host:7077, yarn, k8s://...)")

    p = add_parser(sub, "evaluate", cmd_evaluate, "evaluate the default ranking against baselines on a time split")
    p.add_argument("--data", required=True, help="data folder (events, items, ...; see README, Input contract)")
    p.add_argument("--out", required=True, help="folder for evaluation.json/.md, the charts and quarantined rows")
    p.add_argument("--test-days", type=int, default=0,
                   help="test window in days (default: the setting training.eval_test_days, 28)")
    p.add_argument("-k", type=int, default=0, help="extra cut-off besides 10 (default: training.eval_k, 10)")
    p.add_argument("--as-of", type=day_of_date, default=None, metavar="YYYY-MM-DD",
                   help="back-test: leave out events from this date on, so the test window ends the day before "
                        "(default: use the whole log)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = add_parser(sub, "campaign", cmd_campaign,
                   "who to message about what: a campaign spec's audience, suppression and messages as files")
    p.add_argument("--spec", required=True, help="campaign spec (TOML; see README, Campaigns)")
    p.add_argument("--out", required=True, help="folder for <name>.parquet/.csv, the summary and the chart")
    p.add_argument("--artifacts", help="artifact root (default: the setting server.artifact_root)")
    p.add_argument("--record-sent", action="store_true",
                   help="record a message_sent event per customer in the event store (the next frequency cap "
                        "sees them)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
