"""Bad input on the trainer's side: implausible timestamps are set aside, ids are trimmed by the server's rule.

Pins issue 12 ("Bad input"): one otherwise valid event dated 2062-10-20 moved the test window to 2062 and the
quality gate refused the night's model; it is now quarantined as ``future_timestamp`` and the run goes on.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from recsvc.artifacts import load_current
from recsvc.config import ConfigError, TrainingSettings
from recsvc.days import day_of_iso
from recsvc.ids import clean_id
from recsvc_training.input import columns as C
from recsvc_training.input.ingest import load_training_data
from recsvc_training.input.tables import clean_id_series
from recsvc_training.pipeline import train

NOW = pd.Timestamp("2026-12-03T11:00:00Z")
HEADER = ["timestamp", "customer_id", "item_id", "event", "channel", "quantity"]


def _events(extra: list[list[str]]) -> list[list[str]]:
    rows = []
    for day in range(1, 29):  # a month of ordinary purchases, November 2026
        for c in range(5):
            rows.append([f"2026-11-{day:02d}T10:00:00Z", f"c{c}", f"i{(day + c) % 7}", "purchase", "web", "1"])
    return rows + extra


def _folder(root: Path, extra: list[list[str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, header, rows in (("events", HEADER, _events(extra)),
                               ("items", ["item_id", "title"], [[f"i{i}", f"Item {i}"] for i in range(7)])):
        with open(root / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    return root


TYPO_ROWS = [
    ["2062-10-20T10:00:00Z", "c1", "i1", "purchase", "web", "1"],  # future_timestamp (a typo for 2026)
    ["1970-01-01T00:00:00Z", "c2", "i2", "purchase", "web", "1"],  # ancient_timestamp (a zero epoch)
    ["1900-01-01", "c3", "i3", "view", "web", ""],  # ancient_timestamp (an unset date field)
    ["2026-12-04T10:59:00Z", "c4", "i4", "view", "web", ""],  # kept: within max_future_hours (24) of NOW
    ["2026-12-04T11:01:00Z", "c4", "i5", "view", "web", ""],  # future_timestamp: just beyond it
]


def test_future_and_ancient_timestamps_are_quarantined_counted_and_do_not_move_the_log_end(tmp_path: Path) -> None:
    settings = TrainingSettings(progress=False)
    data = load_training_data(_folder(tmp_path / "data", TYPO_ROWS), settings, tmp_path / "q", now=NOW)
    assert data.report.quarantined["events"] == {"ancient_timestamp": 2, "future_timestamp": 2}
    assert data.report.rows_kept["events"] == 28 * 5 + 1
    assert int(data.events[C.DAY].max()) == day_of_iso("2026-12-04")  # the kept row, not 2062
    assert int(data.events[C.DAY].min()) == day_of_iso("2026-11-01")
    quarantined = pd.read_csv(tmp_path / "q" / "events.quarantine.csv", dtype=str)
    assert quarantined[["timestamp", "reason"]].values.tolist() == [
        ["2062-10-20T10:00:00Z", "future_timestamp"], ["1970-01-01T00:00:00Z", "ancient_timestamp"],
        ["1900-01-01", "ancient_timestamp"], ["2026-12-04T11:01:00Z", "future_timestamp"]]
    assert data.report.newest_plausible.startswith("2026-12-04T11:00:00")
    assert data.report.earliest_plausible.startswith("1990-01-01")


def test_the_plausible_window_is_configurable(tmp_path: Path) -> None:
    settings = TrainingSettings(progress=False, max_future_hours=0.0, earliest_event_date="1900-01-01")
    data = load_training_data(_folder(tmp_path / "data", TYPO_ROWS), settings, tmp_path / "q", now=NOW)
    # 1970 and 1900 are plausible now; with no margin both December rows are in the future
    assert data.report.quarantined["events"] == {"future_timestamp": 3}


@pytest.mark.parametrize(("change", "message"), [
    ({"earliest_event_date": "01/01/1990"}, "training.earliest_event_date: expected a date as YYYY-MM-DD"),
    ({"earliest_event_date": "1990-13-01"}, "training.earliest_event_date: expected a date as YYYY-MM-DD"),
    ({"max_future_hours": -1.0}, "training.max_future_hours: expected a number of hours >= 0"),
    ({"earliest_event_date": "2100-01-01"}, "training.earliest_event_date 2100-01-01 is after the newest"),
])
def test_unusable_plausible_time_settings_name_the_setting(tmp_path: Path, change: dict[str, object],
                                                            message: str) -> None:
    settings = TrainingSettings(progress=False, **change)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        load_training_data(_folder(tmp_path / "data", []), settings, tmp_path / "q", now=NOW)


def test_a_2062_event_does_not_block_the_night_and_the_summary_names_it(tmp_path: Path) -> None:
    """The whole run: the set is published, its log ends with the real data, the summary says what was set
    aside and which settings decide it."""
    settings = TrainingSettings(als_factors=4, als_iterations=3, progress=False, copurchase_min_support=1,
                                evaluate=False, learn_ranker=False)
    data_dir = _folder(tmp_path / "data", [["2062-10-20T10:00:00Z", "c1", "i1", "purchase", "web", "1"]])
    result = train(data_dir, tmp_path / "art", settings)
    assert load_current(tmp_path / "art").data_end_day == day_of_iso("2026-11-28")
    text = result.summary()
    assert "events/future_timestamp 1" in text
    assert "1 events dated after" in text and "(future_timestamp)" in text
    assert "training.max_future_hours" in text


TRICKY_IDS = [" C001223 ", "\tC1\t", "\u00a0C2\u00a0", "C3\r\n", "\u2003C4\u3000", "\x1cC5\x1f", "\x85C6\x0b",
              "C 7", "\u200bC8\u200b", "\ufeffC9", "", "   ", "c10"]


def test_the_trainers_vectorised_trim_equals_clean_id() -> None:
    """One rule for trainer and server: what ingest keeps of an id is what the server looks up."""
    expected = [clean_id(value) for value in TRICKY_IDS]
    for dtype in (str, object):
        assert clean_id_series(pd.Series(TRICKY_IDS, dtype=dtype)).tolist() == expected


def test_ingested_ids_are_clean_id_of_the_file_values(tmp_path: Path) -> None:
    ids = [value for value in TRICKY_IDS if clean_id(value)]
    extra = [["2026-11-10T10:00:00Z", value, "i1", "purchase", "web", "1"] for value in ids]
    data = load_training_data(_folder(tmp_path / "data", extra), TrainingSettings(progress=False), tmp_path / "q",
                              now=NOW)
    assert {clean_id(value) for value in ids} <= set(data.events[C.CUSTOMER_ID])
    assert not any(value != clean_id(value) for value in data.events[C.CUSTOMER_ID])
