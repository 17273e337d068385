"""The recsvc command: the entry point, its options, and one clear line for every known failure.

The commands live beside this module by who they talk to: trainer_commands (sample, import, train, evaluate,
campaign),
server_commands (serve, rollback, stock, demo) and client_commands (recommend, bundle, similar, profile,
info, which ask a running server).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import grpc

from recsvc.cli.client_commands import add_client_commands, rpc_error_line
from recsvc.cli.common import HelpFormatter, fail
from recsvc.cli.report_commands import add_report_commands
from recsvc.cli.server_commands import add_server_commands
from recsvc.cli.trainer_commands import add_trainer_commands
from recsvc.config import ConfigError
from recsvc.logs import configure_logging

logger = logging.getLogger("recsvc")

DESCRIPTION = """\
recsvc: recommendations for a retailer selling on the web, in an app and in stores.

Train on a data folder, serve the newest artifact set over gRPC, and ask it from a terminal.
Settings: defaults, then a TOML file (--config or RECSVC_CONFIG), then environment variables
RECSVC_<SECTION>__<FIELD> (e.g. RECSVC_SERVER__PORT=50051); see README, Configuration.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsvc", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--config", metavar="FILE",
                        help="TOML settings file (default: $RECSVC_CONFIG, else built-in defaults); environment "
                             "variables RECSVC_<SECTION>__<KEY> override it")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        type=str.upper, help="log level")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines (also RECSVC_SERVER__LOG_JSON)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_trainer_commands(sub)
    add_server_commands(sub)
    add_client_commands(sub)
    add_report_commands(sub)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    """Failures that are the user's to fix and say how in their message: printed as one line, no traceback."""
    from recsvc.artifacts import ArtifactError
    from recsvc.artifacts.stock_table import StockError

    known: tuple[type[BaseException], ...] = (ArtifactError, StockError, FileNotFoundError)
    try:
        from recsvc_training.campaigns.spec import SpecError
        from recsvc_training.evaluation.gate import QualityGateError
        from recsvc_training.input.ingest import InputError
    except ImportError:  # a serving image without the trainer
        return known
    return (*known, InputError, QualityGateError, SpecError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, json_lines=args.log_json or os.environ.get("RECSVC_SERVER__LOG_JSON") == "true")
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"recsvc {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        logger.debug("%s failed", args.command, exc_info=True)
        return fail(args.command, rpc_error_line(exc, getattr(args, "target", None)))
    except Exception as exc:  # the entry point turns known failures into one clear line
        if isinstance(exc, _known_errors()):
            return fail(args.command, str(exc))
        raise
