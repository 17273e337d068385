"""What every ``recsvc`` command shares: the help layout, settings from options, one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from recsvc.config import Settings, load_settings

#: The default server address of the client commands.
DEFAULT_TARGET = "127.0.0.1:50051"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps descriptions as written and appends ``(default: ...)`` to every option that has a value default.

    Options whose default is "not given" (None, an off flag) say in their own help text what happens then.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "(default:" in text or default is None or default is False
                or default is argparse.SUPPRESS):
            return text  # the help says its default itself (e.g. 0 meaning "the setting")
        if isinstance(default, list) and not default:
            return text + " (default: none)"
        if default == "":
            return text if "empty:" in text else text + " (default: empty)"
        return text + " (default: %(default)s)"


def add_parser(sub: Any, name: str, func: Callable[[argparse.Namespace], int], help: str,
               description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand with the shared help layout, running ``func``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description or help,
                                                     formatter_class=HelpFormatter)
    parser.set_defaults(func=func)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from ``--config``/``$RECSVC_CONFIG`` and the environment, overridden by the command's options."""
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


def fail(command: str, message: str) -> int:
    """Print ``recsvc <command>: <message>`` on stderr; returns 1, the exit code of a failed command."""
    print(f"recsvc {command}: {str(message).strip() or 'failed'}", file=sys.stderr)
    return 1
