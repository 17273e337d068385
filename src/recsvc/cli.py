"""The ``recsvc`` command: sample data, import public data sets, train, evaluate, serve and ask.

Training commands import the trainer (``recsvc_training``) lazily, so a serving image without the training
extra still runs ``recsvc serve`` and the client commands.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from recsvc.config import ConfigError, Settings, load_settings
from recsvc.logs import configure_logging

logger = logging.getLogger("recsvc")


def _settings(args: argparse.Namespace) -> Settings:
    env = dict(os.environ)
    if getattr(args, "artifacts", None):
        env["RECSVC_SERVER__ARTIFACT_ROOT"] = str(args.artifacts)
    if getattr(args, "port", None) is not None:
        env["RECSVC_SERVER__PORT"] = str(args.port)
    if getattr(args, "host", None):
        env["RECSVC_SERVER__HOST"] = args.host
    if getattr(args, "no_progress", False):
        env["RECSVC_TRAINING__PROGRESS"] = "false"
    return load_settings(args.config, env=env)


def _day_of_date(text: str) -> int:
    """An ISO date as days since 1970-01-01, the unit of the events' ``day`` column."""
    from recsvc.days import day_of_iso

    try:
        return day_of_iso(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _quiet_openmp_waits() -> None:
    """Let idle OpenMP threads sleep instead of spinning (unless the caller chose otherwise).

    LightGBM's (and implicit's) OpenMP threads spin-wait for work by default; on a machine whose cores are
    busy with other jobs the spinning threads compete with the one doing the work: a Ta Feng evaluation took
    3 min 45 s under load, 1 min 43 s with passive waits, same results. Only read when the OpenMP runtime
    loads, so this runs before the trainer is imported.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cmd_sample(args: argparse.Namespace) -> int:
    from recsvc_training.sample import generate_sample

    summary = generate_sample(Path(args.out), seed=args.seed, n_customers=args.customers, n_items=args.items)
    print(summary)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from recsvc_training.input.importers import IMPORTERS

    summary = IMPORTERS[args.dataset](Path(args.src), Path(args.out))
    print(summary)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    _quiet_openmp_waits()
    from recsvc_training.pipeline import train

    settings = _settings(args)
    logger.info("training settings: %s", settings.describe())
    from recsvc_training.input.live_events import import_configured  # events recorded live since the last run

    live = import_configured(Path(args.data), settings)
    print(live.summary() if live is not None else "live events: none (events off or no store yet)")
    result = train(Path(args.data), Path(settings.server.artifact_root), settings.training, force=args.force,
                   echo=print)
    print(result.summary())
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate on a time split without publishing: report files go to --out."""
    _quiet_openmp_waits()
    import dataclasses

    from threadpoolctl import threadpool_limits

    from recsvc.artifacts import ArtifactSet
    from recsvc_training.evaluation.quality import evaluate_and_learn
    from recsvc_training.input.ingest import load_training_data
    from recsvc_training.pipeline import build_artifacts

    settings = _settings(args).training
    if args.test_days:
        settings = dataclasses.replace(settings, eval_test_days=args.test_days)
    if args.k:
        settings = dataclasses.replace(settings, eval_k=args.k)
    settings = dataclasses.replace(settings, evaluate=True)
    out = Path(args.out)
    data = load_training_data(Path(args.data), settings, out / "quarantine")
    if args.as_of is not None:
        data = data.before(args.as_of)
    artifacts: ArtifactSet = build_artifacts(data, settings)
    with threadpool_limits(1, "blas"):  # see make_quality_hook
        report = evaluate_and_learn(data, artifacts, settings)
    if report is None:
        print("the log is too short to evaluate with these windows", file=sys.stderr)
        return 1
    from recsvc_training.evaluation import format_table, write_report

    paths = write_report(report, out)
    print(format_table(report))
    print(f"report: {', '.join(str(p) for p in paths.values())}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from recsvc.server.workers import limit_blas_threads, run_workers, worker_index

    limit_blas_threads()  # before numpy is imported: one BLAS thread per server process
    settings = _settings(args)
    if settings.server.workers > 1 and worker_index() < 0:
        return run_workers(settings)  # the worker parent imports no numpy and serves nothing itself
    from recsvc.server.app import serve

    return serve(settings)


def cmd_rollback(args: argparse.Namespace) -> int:
    """Point CURRENT at the previous (or the given) published version, after checking that it loads."""
    from recsvc.server.lifecycle import rollback_current

    root = Path(_settings(args).server.artifact_root)
    old, new = rollback_current(root, to=args.to)
    print(f"CURRENT under {root}: {old} -> {new}. Running servers switch at their next poll "
          "(server.reload_poll_seconds), on SIGHUP, or on Admin/ReloadModel.")
    return 0


def cmd_stock(args: argparse.Namespace) -> int:
    """Publish a stock file as the current snapshot under the artifact root; running servers use it at once."""
    from recsvc.stock import publish_stock, read_stock_csv

    root = Path(_settings(args).server.artifact_root)
    table, report = read_stock_csv(Path(args.file))
    path = publish_stock(root, table, source=str(args.file))
    print(f"Published stock snapshot {path.name} under {root / 'stock'}: {report}. Servers pick it up on their "
          "next request.")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from recsvc.client import RecsvcClient, format_recommendation

    with RecsvcClient(args.target) as client:
        response = client.recommend(args.customer, args.channel, args.store, args.n, args.context, args.exclude)
        print(format_recommendation(args.customer, args.channel, args.store, response))
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from recsvc.client import RecsvcClient, format_bundle

    with RecsvcClient(args.target) as client:
        response = client.bundle(args.basket, args.customer, args.channel, args.store, args.n, args.size)
        print(format_bundle(args.basket, response))
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    from recsvc.client import RecsvcClient, format_items

    with RecsvcClient(args.target) as client:
        response = client.similar(args.item, args.n, args.channel)
        print(f"Similar to {args.item} — model {response.model_version}")
        print("\n".join(format_items(response.items)))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from recsvc.client import RecsvcClient

    with RecsvcClient(args.target) as client:
        print(client.model_info())
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _demo_customers(artifact_root: Path) -> tuple[str, str, list[str]]:
    """An alias whose customer has the richest history, that customer's store, and their last basket."""
    import numpy as np

    from recsvc.artifacts import load_current

    arts = load_current(artifact_root)
    counts = np.diff(arts["hist_indptr"])
    alias_counts = counts[arts["alias_customer"]]
    alias = str(arts["alias_ids"][int(np.argmax(alias_counts))]) if alias_counts.size else ""
    row = int(arts["alias_customer"][int(np.argmax(alias_counts))]) if alias_counts.size else int(np.argmax(counts))
    lo, hi = arts["hist_indptr"][row], arts["hist_indptr"][row + 1]
    last = arts["hist_last_day"][lo:hi]
    stores = arts["hist_last_store"][lo:hi]
    store_rows = stores[stores >= 0]
    store = str(arts["store_ids"][int(np.bincount(store_rows).argmax())]) if store_rows.size else ""
    recent = arts["hist_items"][lo:hi][np.argsort(-last)][:2]
    basket = [str(arts["item_ids"][i]) for i in recent]
    return alias or str(arts["customer_ids"][row]), store, basket


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate the sample, train, start the server, ask it what a web backend and a clerk would, stop."""
    _quiet_openmp_waits()
    from recsvc.client import RecsvcClient, format_bundle, format_recommendation
    from recsvc_training.pipeline import train
    from recsvc_training.sample import generate_sample

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="recsvc-demo-"))
    data_dir, artifact_root = workdir / "data", workdir / "artifacts"
    settings = _settings(args)
    print(f"== 1/4 generating the bundled sample retailer into {data_dir}")
    print(generate_sample(data_dir, seed=args.seed))
    print(f"== 2/4 training into {artifact_root}")
    result = train(data_dir, artifact_root, settings.training, echo=print)
    print(result.summary())
    port = _free_port()
    print(f"== 3/4 starting the server on 127.0.0.1:{port}")
    env = dict(os.environ, RECSVC_SERVER__ARTIFACT_ROOT=str(artifact_root), RECSVC_SERVER__PORT=str(port),
               RECSVC_SERVER__HOST="127.0.0.1")
    server = subprocess.Popen([sys.executable, "-m", "recsvc", "serve"], env=env)
    try:
        target = f"127.0.0.1:{port}"
        with RecsvcClient(target) as client:
            client.wait_ready(timeout=60)
            _wait_serving(target)
            print("== 4/4 asking the server")
            alias, store, basket = _demo_customers(artifact_root)
            for channel, store_id in (("web", ""), ("store", store)):
                response = client.recommend(alias, channel, store_id, num_items=5)
                print(format_recommendation(alias, channel, store_id, response), end="\n\n")
            unknown = client.recommend("no-such-customer", "app", num_items=5)
            print(format_recommendation("no-such-customer", "app", "", unknown), end="\n\n")
            print(format_bundle(basket, client.bundle(basket, customer_id=alias, channel="web", num_items=5)))
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    print(f"\nserver stopped (exit code {code}); artifacts and data stay in {workdir}")
    return 0 if code == 0 else 1


def _wait_serving(target: str, timeout: float = 60.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server at {target} did not report SERVING within {timeout:.0f} s")
            time.sleep(0.2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsvc", description=__doc__)
    parser.add_argument("--config", help="TOML settings file (else $RECSVC_CONFIG; env RECSVC_<SECTION>__<KEY>)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-json", action="store_true", help="JSON log lines")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="generate the bundled sample retailer data set")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--customers", type=int, default=2000)
    p.add_argument("--items", type=int, default=400)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("import", help="turn a public data set into the input contract")
    p.add_argument("dataset", choices=["tafeng", "online_retail", "movielens100k"])
    p.add_argument("--src", required=True, help="the data set file (or folder for movielens100k)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("train", help="train every model from a data folder and publish an artifact set")
    p.add_argument("--data", required=True)
    p.add_argument("--artifacts", help="artifact root (default: server.artifact_root)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--force", action="store_true", help="publish even if the quality gate refuses (recorded)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate the default ranking against baselines on a time split")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="folder for evaluation.json/.md and charts")
    p.add_argument("--test-days", type=int, default=0, help="test window (default: training.eval_test_days)")
    p.add_argument("-k", type=int, default=0, help="extra cut-off besides 10")
    p.add_argument("--as-of", type=_day_of_date, default=None, metavar="YYYY-MM-DD",
                   help="back-test: leave out events from this date on, so the test window ends the day before")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("serve", help="serve the current artifact set over gRPC")
    p.add_argument("--artifacts")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("rollback", help="point CURRENT at the previous published version; servers follow")
    p.add_argument("--artifacts", help="artifact root (default: server.artifact_root)")
    p.add_argument("--to", help="version to roll back to (default: the one before CURRENT)")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("stock", help="publish per-store stock (store_id,item_id,quantity_on_hand) without retraining")
    p.add_argument("--artifacts", help="artifact root (default: server.artifact_root)")
    p.add_argument("--file", required=True, help="stock CSV (.csv or .csv.gz)")
    p.set_defaults(func=cmd_stock)

    target = {"default": "127.0.0.1:50051", "help": "server address (host:port)"}
    p = sub.add_parser("recommend", help="ask for suggestions for a customer (a clerk's tablet view)")
    p.add_argument("--target", **target)  # type: ignore[arg-type]
    p.add_argument("--customer", required=True, help="customer id or any alias (loyalty card, app id)")
    p.add_argument("--channel", required=True)
    p.add_argument("--store", default="")
    p.add_argument("-n", type=int, default=10)
    p.add_argument("--context", nargs="*", default=[], help="items viewed or in the cart right now")
    p.add_argument("--exclude", nargs="*", default=[])
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("bundle", help="ask what completes a basket")
    p.add_argument("--target", **target)  # type: ignore[arg-type]
    p.add_argument("--basket", nargs="+", required=True)
    p.add_argument("--customer", default="")
    p.add_argument("--channel", default="")
    p.add_argument("--store", default="")
    p.add_argument("-n", type=int, default=10)
    p.add_argument("--size", type=int, default=3)
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("similar", help="ask for items similar to one item")
    p.add_argument("--target", **target)  # type: ignore[arg-type]
    p.add_argument("--item", required=True)
    p.add_argument("-n", type=int, default=10)
    p.add_argument("--channel", default="")
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("info", help="which model the server is serving")
    p.add_argument("--target", **target)  # type: ignore[arg-type]
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="the main job on the bundled sample: generate, train, serve, ask, stop")
    p.add_argument("--workdir", help="where data and artifacts go (default: a new temporary folder)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, json_lines=args.log_json or os.environ.get("RECSVC_SERVER__LOG_JSON") == "true")
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"recsvc: configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the entry point turns known failures into one clear line
        from recsvc.artifacts import ArtifactError
        from recsvc.stock import StockError

        known: tuple[type[BaseException], ...] = (ArtifactError, StockError, FileNotFoundError)
        try:
            from recsvc_training.evaluation.quality import QualityGateError
            from recsvc_training.input.ingest import InputError

            known += (InputError, QualityGateError)
        except ImportError:  # serving image without the trainer
            pass
        if isinstance(exc, known):
            print(f"recsvc {args.command}: {exc}", file=sys.stderr)
            return 1
        raise
