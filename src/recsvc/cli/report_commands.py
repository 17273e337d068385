"""``recsvc report online``: the online report from the event store (needs the trainer's extra, matplotlib)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recsvc.cli.common import add_parser, fail, settings_from

logger = logging.getLogger(__name__)


def _model_resolver(root: Path, verify: bool) -> Callable[[str], str] | None:
    """Alias -> customer id through the model being served, or None when the root has no loadable model."""
    from recsvc.artifacts import ArtifactError, load_current
    from recsvc.ranking.model import LoadedModel

    try:
        model = LoadedModel(load_current(root, verify=verify, mmap=True))
    except (ArtifactError, OSError) as exc:
        logger.warning("no model under %s (%s): aliases resolve through live links only", root, exc)
        return None

    def resolve(customer_id: str) -> str:
        row = model.resolve_customer(customer_id)
        return model.customer_id(row) if row >= 0 else ""

    return resolve


def cmd_report_online(args: argparse.Namespace) -> int:
    from recsvc.events.store import open_store
    from recsvc_training.online_report import build_online_report

    settings = settings_from(args)
    root = Path(settings.server.artifact_root)
    store = open_store(settings.events, root)
    if store is None:
        return fail("report online", "events.backend is off: there is no event store to report on")
    try:
        report = build_online_report(store, args.since, args.out or root / "reports" / f"online-{args.since}",
                                     window_days=settings.feedback.attribution_window_days,
                                     model_resolve=_model_resolver(root, settings.server.verify_checksums),
                                     charts=not args.no_charts)
    except ValueError as exc:
        return fail("report online", f"--since: {exc}")
    finally:
        store.close()
    print(report.files["markdown"])
    return 0


def add_report_commands(sub: Any) -> None:
    p = add_parser(sub, "report", lambda a: (a.report_parser.print_help(), 2)[1],
                   "reports on what the servers did (online: impressions, clicks, conversions, experiment arms)")
    reports = p.add_subparsers(dest="report", metavar="REPORT")
    p.set_defaults(report_parser=p)
    online = add_parser(reports, "online", cmd_report_online,
                        "online metrics per channel, store, policy, model version and arm since a date: Markdown, "
                        "JSON and PNG charts")
    online.add_argument("--since", required=True, metavar="DATE", help="first day (YYYY-MM-DD, UTC)")
    online.add_argument("--out", type=Path, help="output folder (default: <artifact root>/reports/online-DATE)")
    online.add_argument("--artifacts", help="artifact root (the model resolves aliases; the default SQLite store "
                                            "lives there); default: server.artifact_root")
    online.add_argument("--no-charts", action="store_true", help="write no PNG charts")
