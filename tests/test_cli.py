"""The command line as a person meets it: one clear line per failure, short summaries, honest help.

Client commands run in-process (``recsvc.cli.main``) against a real server on 127.0.0.1, port 0, serving the
toy model; ``serve`` on a port in use runs as a real process. Pins issue 12's "The command line" list.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsvc.artifacts import load_current
from recsvc.cli import build_parser, main
from recsvc.config import ServerSettings
from recsvc.ranking import LoadedModel, RecommendationEngine
from recsvc.server.app import ModelHolder
from tests.conftest import LiveServer
from tests.toy_model import CREATED_AT, VERSION, publish_toy


@pytest.fixture(scope="module")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    publish_toy(root)
    return root


@pytest.fixture(scope="module")
def target(artifact_root: Path) -> Iterator[str]:
    settings = ServerSettings(host="127.0.0.1", port=0, artifact_root=str(artifact_root), max_workers=4,
                              shutdown_grace_seconds=1.0)
    engine = RecommendationEngine(LoadedModel(load_current(artifact_root)), settings, clock=lambda: CREATED_AT)
    with LiveServer(settings, holder=ModelHolder(engine)) as server:
        yield server.target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------------------- gRPC errors

@pytest.mark.parametrize(("argv", "expected"), [
    (["recommend", "--customer", "LOY-1", "--channel", "web", "-n", "500"],
     r"^recsvc recommend: INVALID_ARGUMENT: num_items: must be between 1 and 100"),
    (["recommend", "--customer", "LOY-1", "--channel", ""], r"^recsvc recommend: INVALID_ARGUMENT: channel"),
    (["bundle", "--basket", "B01", "--size", "9"], r"^recsvc bundle: INVALID_ARGUMENT: bundle_size"),
    (["similar", "--item", "no-such-item"], r"^recsvc similar: NOT_FOUND: item_id: unknown item 'no-such-item'"),
    (["profile", "--customer", "nobody"], r"^recsvc profile: NOT_FOUND: customer_id: unknown customer 'nobody'"),
])
def test_a_refused_request_is_one_line_and_a_non_zero_exit(target: str, capsys: pytest.CaptureFixture[str],
                                                           argv: list[str], expected: str) -> None:
    code, out, err = run(capsys, *argv, "--target", target)
    assert code == 1 and out == ""
    assert re.search(expected, one_error_line(err)), err


@pytest.mark.parametrize("command", [["recommend", "--customer", "C001", "--channel", "web"],
                                     ["bundle", "--basket", "B01"], ["similar", "--item", "B01"],
                                     ["profile", "--customer", "C001"], ["info"]])
def test_no_server_running_is_one_line_naming_the_address(capsys: pytest.CaptureFixture[str],
                                                          command: list[str]) -> None:
    address = f"127.0.0.1:{_free_port()}"
    code, _, err = run(capsys, *command, "--target", address)
    line = one_error_line(err)
    assert code == 1
    assert line.startswith(f"recsvc {command[0]}: UNAVAILABLE: ")
    assert f"is a recsvc server running at {address}?" in line


# ---------------------------------------------------------------------------------------- what they print

def test_recommend_prints_the_clerks_view(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "recommend", "--customer", "LOY-1", "--channel", "web", "-n", "3",
                         "--target", target)
    assert code == 0, err
    assert out.startswith("Suggestions for LOY-1 (customer C001) on web — known customer")
    assert "Laundry detergent" in out and "[H04]" in out


def test_info_is_a_short_summary_and_the_full_message_is_behind_json(target: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "info", "--target", target)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Model {VERSION}"
    for label in ("trained at", "data", "evaluation", "channels"):
        assert any(line.strip().startswith(label) for line in lines), (label, out)
    assert len(lines) <= 8
    code, out, _ = run(capsys, "info", "--json", "--target", target)
    full = json.loads(out)
    assert code == 0 and full["version"] == VERSION and full["channels"] and "row_counts" in full


def test_profile_shows_segment_and_purchases_by_channel_and_store(target: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "profile", "--customer", "LOY-1", "--target", target)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Customer C001 (asked as LOY-1) — model {VERSION}"
    assert lines[1].strip().startswith("segment")
    assert "recent purchases (newest first):" in out
    assert "[H04]" in out  # the detergent C001 buys every month
    group_lines = [line for line in lines if re.match(r"^    \S", line)]  # one heading per channel / store
    assert group_lines and len(group_lines) == len(set(group_lines))


# ---------------------------------------------------------------------------------------- help

def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_help_has_no_docstring_markup_and_every_option_says_what_it_does(capsys: pytest.CaptureFixture[str]
                                                                         ) -> None:
    parser = build_parser()
    commands = _subparsers(parser)
    assert {"recommend", "bundle", "similar", "profile", "info", "serve", "train", "evaluate"} <= set(commands)
    for name, sub in [("recsvc", parser), *commands.items()]:
        text = sub.format_help()
        assert "``" not in text and not re.search(r":(func|class|mod|meth|attr):", text), (name, text)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, (name, action.dest)
            default = action.default
            if default == "":
                assert "empty" in action.help, (name, action.dest)  # "(empty: ...)" says what it means
            elif default not in (None, False, [], argparse.SUPPRESS):
                assert f"(default: {default})" in " ".join(text.split()), (name, action.dest, default)
            elif default is None and action.option_strings and not action.required:
                assert "default" in action.help, (name, action.dest)  # says what "not given" means


def test_port_0_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(_subparsers(build_parser())["serve"].format_help().split())
    assert "0 picks a free port" in text


def test_a_port_in_use_is_one_line_without_traceback(artifact_root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "recsvc", "--log-level", "ERROR", "serve", "--artifacts",
                               str(artifact_root), "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    # grpc's own core may log its bind failure first; ours is the one line that starts with "recsvc serve:"
    ours = [line for line in done.stderr.splitlines() if line.startswith("recsvc serve: ")]
    # (the wording of why is the server's: src/recsvc/server/app.py says the port is in use)
    assert len(ours) == 1 and f"127.0.0.1:{port}" in ours[0], done.stderr
