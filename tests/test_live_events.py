"""The nightly trainer picks recorded events up (deduplicated by event_id), and the overlay then ignores them."""

from __future__ import annotations

import gzip
import socket
import time
from pathlib import Path

import pandas as pd
import pytest

from recsvc.artifacts import load_current
from recsvc.cli import main
from recsvc.days import MS_PER_DAY
from recsvc.events.overlay import EventOverlay
from recsvc.events.recording import record_events
from recsvc.events.sqlite_store import SqliteEventStore
from recsvc.events.validation import EventRecord, RawEvent
from recsvc.ranking import LoadedModel
from recsvc_training.input.live_events import EVENT_ID, append_events

FAST_TRAINING = {"ALS_FACTORS": "4", "ALS_ITERATIONS": "3", "PROGRESS": "false", "COPURCHASE_MIN_SUPPORT": "1",
                 "POPULARITY_STORE_TOP_K": "5", "EVALUATE": "false", "LEARN_RANKER": "false"}


def _tiny_folder(data_dir: Path) -> int:
    """The tiny shop of tests/test_pipeline.py: 120 purchases in March 2024."""
    data_dir.mkdir()
    lines = ["timestamp,customer_id,item_id,event,channel,store_id,order_id,quantity,price"]
    for day in range(1, 21):
        for customer in ("c1", "c2", "c3"):
            for item in (day % 4, (day + 1) % 4):
                lines.append(f"2024-03-{day:02d}T10:00:00Z,{customer},i{item},purchase,web,,o{day}{customer},1,2.0")
    (data_dir / "events.csv").write_text("\n".join(lines))  # no final newline: appending must not glue rows
    (data_dir / "items.csv").write_text("item_id,title,category,price,channels\n"
                                        + "".join(f"i{i},Item {i},cat,2.0,\n" for i in range(5)))
    return len(lines) - 1


def test_train_includes_recorded_events_once_and_the_overlay_then_ignores_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, art = tmp_path / "data", tmp_path / "art"
    n_batch = _tiny_folder(data_dir)
    store_path = tmp_path / "events.sqlite"
    store = SqliteEventStore(store_path)
    now = int(time.time() * 1000)
    yesterday, today = now - MS_PER_DAY, now
    live = [RawEvent(event_id="pos-1:1", customer_id="c1", item_id="i4", event="purchase", channel="store",
                     store_id="s1", timestamp_ms=yesterday),
            RawEvent(event_id="app-2:1", customer_id="n1", item_id="i2", event="purchase", channel="app",
                     timestamp_ms=yesterday + 1000),
            RawEvent(event_id="web-3:1", customer_id="c1", item_id="i3", event="purchase", channel="web",
                     timestamp_ms=today)]
    record_events(store, live, now_ms=now, default_channel="web", max_future_seconds=300, max_per_call=1000)
    monkeypatch.setenv("RECSVC_EVENTS__SQLITE_PATH", str(store_path))
    for name, value in FAST_TRAINING.items():
        monkeypatch.setenv(f"RECSVC_TRAINING__{name}", value)

    assert main(["train", "--data", str(data_dir), "--artifacts", str(art), "--force"]) == 0
    model = LoadedModel(load_current(art))
    assert model.row_counts["events"] == n_batch + 2  # yesterday's two; today's waits for tomorrow's run
    assert model.data_end_day == yesterday // MS_PER_DAY
    assert model.resolve_customer("n1") >= 0  # the customer who first appeared live is in the model now
    table = pd.read_csv(data_dir / "events.csv", dtype=str, keep_default_na=False)
    assert table[EVENT_ID].tolist().count("pos-1:1") == 1 and len(table) == n_batch + 2

    overlay = EventOverlay(store)
    overlay.poll_once()
    activity = overlay.activity(model, "c1")
    assert activity is not None and [e.event_id for e in activity.events] == ["web-3:1"]  # pos-1:1 is in the model
    assert overlay.activity(model, "n1") is None

    assert main(["train", "--data", str(data_dir), "--artifacts", str(art), "--force"]) == 0
    assert len(pd.read_csv(data_dir / "events.csv", dtype=str)) == n_batch + 2  # nothing twice


def _record(event_id: str) -> EventRecord:
    return EventRecord(event_id=event_id, customer_id="c1", item_id="i1", event="view", channel="web", store_id="",
                       order_id="", quantity=1.0, price=float("nan"), timestamp_ms=1_700_000_000_000,
                       recorded_ms=1_700_000_000_000)


@pytest.mark.parametrize("name", ["events.csv.gz", "events.parquet"])
def test_append_keeps_the_tables_format_and_dedupes(tmp_path: Path, name: str) -> None:
    frame = pd.DataFrame({"timestamp": ["2024-03-01T10:00:00Z"], "customer_id": ["c0"], "item_id": ["i0"],
                          "event": ["purchase"], "channel": [""], "store_id": [""]})
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        with gzip.open(path, "wt") as out:
            frame.to_csv(out, index=False)
    assert append_events(path, [_record("a"), _record("b"), _record("a")]) == (2, 1)
    assert append_events(path, [_record("b"), _record("c")]) == (1, 1)
    back = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path, dtype=str,
                                                                               keep_default_na=False)
    assert back[EVENT_ID].tolist() == ["", "a", "b", "c"] and back["store_id"].tolist() == [""] * 4


def test_train_stops_with_a_clear_line_when_the_store_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Redis down at training time: no model that lacks yesterday's live events (the overlay would drop them)."""
    from recsvc.artifacts import current_version

    data_dir = tmp_path / "data"
    _tiny_folder(data_dir)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("RECSVC_EVENTS__BACKEND", "redis")
    monkeypatch.setenv("RECSVC_EVENTS__REDIS_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setenv("RECSVC_EVENTS__REDIS_TIMEOUT_SECONDS", "0.3")
    assert main(["train", "--data", str(data_dir), "--artifacts", str(tmp_path / "art")]) == 1
    assert "cannot read the live events" in capsys.readouterr().err
    assert current_version(tmp_path / "art") is None
