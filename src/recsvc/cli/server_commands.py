"""The server's commands: serve, rollback, stock, and the demo that runs the whole job end to end."""

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
from pathlib import Path

from recsvc.cli.common import add_parser, fail, settings_from
from recsvc.cli.trainer_commands import quiet_openmp_waits

logger = logging.getLogger(__name__)


def cmd_serve(args: argparse.Namespace) -> int:
    from recsvc.server.workers import limit_blas_threads, run_workers, worker_index

    limit_blas_threads()  # before numpy is imported: one BLAS thread per server process
    settings = settings_from(args)
    try:
        if settings.server.workers > 1 and worker_index() < 0:
            return run_workers(settings)  # the worker parent imports no numpy and serves nothing itself
        from recsvc.server.app import serve

        return serve(settings)
    except (RuntimeError, OSError) as exc:
        # The server says why it cannot start (a port in use, an address not available) in its message.
        logger.debug("serve failed", exc_info=True)
        return fail("serve", str(exc))


def cmd_rollback(args: argparse.Namespace) -> int:
    """Point CURRENT at the previous (or the given) published version, after checking that it loads."""
    from recsvc.artifacts.store import store_for
    from recsvc.server.stock import describe_stock
    from recsvc.server.versions import rollback_current

    root = store_for(settings_from(args).server)
    old, new = rollback_current(root, to=args.to)
    print(f"CURRENT under {root.location}: {old} -> {new}. Running servers switch at their next poll "
          "(server.reload_poll_seconds), on SIGHUP, or on Admin/ReloadModel; in stores they filter by "
          f"{describe_stock(root, new)}.")
    return 0


def cmd_stock(args: argparse.Namespace) -> int:
    """Publish a stock file for the catalog of the model CURRENT names; servers of that catalog use it at once."""
    from recsvc.artifacts.stock import STOCK_DIR, current_catalog, publish_stock, read_stock_csv
    from recsvc.artifacts.store import store_for

    root = store_for(settings_from(args).server)
    table, report = read_stock_csv(Path(args.file))
    catalog = current_catalog(root)
    unknown = catalog.unknown_items(table)
    where = publish_stock(root, table, source=str(args.file), catalog=catalog)
    print(f"Published stock snapshot {where.rstrip('/').rsplit('/', 1)[-1]} under {root.location}/{STOCK_DIR}: "
          f"{report}. It belongs to catalog "
          f"{catalog.catalog_id} (of version {catalog.model_version}, CURRENT now)"
          + (f"; {unknown:,} item(s) the catalog does not know are ignored" if unknown else "")
          + ". Servers of that catalog pick it up on their next request.")
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def demo_customers(artifact_root: Path) -> tuple[str, str, list[str]]:
    """An alias whose customer has the richest history, that customer's store, and their last basket."""
    import numpy as np

    from recsvc.artifacts import load_current
    from recsvc.ranking.model import LoadedModel

    model = LoadedModel(load_current(artifact_root, mmap=True))
    counts = np.diff(model.hist_indptr)
    alias_counts = counts[model.alias_customer]
    best_alias = int(np.argmax(alias_counts)) if alias_counts.size else -1
    row = int(model.alias_customer[best_alias]) if best_alias >= 0 else int(np.argmax(counts))
    history = model.history(row)
    store_rows = history.last_store[history.last_store >= 0]
    store = model.store_id(int(np.bincount(store_rows).argmax())) if store_rows.size else ""
    basket = [model.item_id(int(i)) for i in history.items[np.argsort(-history.last_day)][:2]]
    alias = str(model.aliases.ids[best_alias]) if best_alias >= 0 else ""
    return alias or model.customer_id(row), store, basket


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate the sample, train, start the server, ask it what a web backend and a clerk would, stop."""
    quiet_openmp_waits()
    from recsvc.client import RecsvcClient, format_bundle, format_recommendation
    from recsvc_training.pipeline import train
    from recsvc_training.sample import generate_sample

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="recsvc-demo-"))
    data_dir, artifact_root = workdir / "data", workdir / "artifacts"
    settings = settings_from(args)
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
            alias, store, basket = demo_customers(artifact_root)
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
    print("Ask it yourself (these ids exist in the sample): recsvc serve --artifacts "
          f"{artifact_root} --port 50051, then\n"
          f"  recsvc recommend --customer {alias} --channel store --store {store}\n"
          f"  recsvc profile --customer {alias}\n"
          f"  recsvc bundle --basket {' '.join(basket)}\n"
          f"  recsvc similar --item {basket[0] if basket else '<item id>'}\n"
          "  recsvc info")
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


def add_server_commands(sub: argparse._SubParsersAction) -> None:
    """Register serve, rollback, stock and demo."""
    p = add_parser(sub, "serve", cmd_serve, "serve the current artifact set over gRPC")
    p.add_argument("--artifacts", help="artifact root, a folder or a URL such as s3://bucket/prefix "
                                        "(default: the setting server.artifact_root, artifacts)")
    p.add_argument("--host", help="address to listen on (default: the setting server.host, 127.0.0.1)")
    p.add_argument("--port", type=int,
                   help="port to listen on; 0 picks a free port, logged at start-up "
                        "(default: the setting server.port, 50051)")

    p = add_parser(sub, "rollback", cmd_rollback, "point CURRENT at the previous published version; servers follow")
    p.add_argument("--artifacts", help="artifact root, a folder or a URL such as s3://bucket/prefix "
                                        "(default: the setting server.artifact_root)")
    p.add_argument("--to", help="version to roll back to (default: the one before CURRENT)")

    p = add_parser(sub, "stock", cmd_stock,
                   "publish per-store stock (store_id,item_id,quantity_on_hand) without retraining")
    p.add_argument("--artifacts", help="artifact root, a folder or a URL such as s3://bucket/prefix "
                                        "(default: the setting server.artifact_root)")
    p.add_argument("--file", required=True, help="stock CSV (.csv or .csv.gz)")

    p = add_parser(sub, "demo", cmd_demo, "the main job on the bundled sample: generate, train, serve, ask, stop")
    p.add_argument("--workdir", help="where data and artifacts go (default: a new temporary folder)")
    p.add_argument("--seed", type=int, default=7, help="seed of the sample data")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
