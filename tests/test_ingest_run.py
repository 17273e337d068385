"""IngestRun, the start of an ingest both trainers share (recsvc_training.input.ingest): what it checks before
reading a row, how a table's counts enter the report, and what is left in the quarantine folder when a run stops.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recsvc.config import ConfigError, TrainingSettings
from recsvc_training.input.columns import EVENTS, ITEMS, REASON_MISSING_ID
from recsvc_training.input.identity import REASON_COLUMN, SOURCE_ROW_COLUMN
from recsvc_training.input.ingest import QUARANTINE_SUFFIX, IngestRun, InputError

NOW = pd.Timestamp("2024-06-01T00:00:00Z")


def _folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "events.csv").write_text("timestamp,customer_id,item_id,event\n2024-01-01,c1,i1,purchase\n")
    (data / "items.csv").write_text("item_id\ni1\n")
    return data


def _rejected(n: int) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [""] * n, REASON_COLUMN: [REASON_MISSING_ID] * n,
                         SOURCE_ROW_COLUMN: list(range(1, n + 1))})


def test_an_empty_default_channel_is_refused_before_the_folder_is_looked_at(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="default_channel"):
        IngestRun.start(tmp_path / "absent", TrainingSettings(default_channel=" "), tmp_path / "q", now=NOW)
    with pytest.raises(InputError, match="does not exist"):
        IngestRun.start(tmp_path / "absent", TrainingSettings(), tmp_path / "q", now=NOW)


def test_start_fixes_the_window_finds_the_tables_and_lists_only_files(tmp_path: Path) -> None:
    data = _folder(tmp_path)
    run = IngestRun.start(data, TrainingSettings(max_future_hours=24), tmp_path / "q", now=NOW)
    assert run.files == {EVENTS: data / "events.csv", ITEMS: data / "items.csv"}
    assert run.report.newest_plausible == "2024-06-02T00:00:00+00:00"
    assert run.report.earliest_plausible == pd.Timestamp(TrainingSettings().earliest_event_date, tz="UTC").isoformat()
    assert run.report.input_files == [data / "events.csv", data / "items.csv"]
    # a finder of its own (the Spark trainer's accepts an events folder): a folder is not an input file
    (data / "events").mkdir()
    run = IngestRun.start(data, TrainingSettings(), tmp_path / "q", now=NOW,
                          find_tables=lambda d: {EVENTS: d / "events", ITEMS: d / "items.csv"})
    assert run.report.input_files == [data / "items.csv"]


def test_tally_counts_per_reason_and_stops_on_a_table_with_nothing_valid(tmp_path: Path) -> None:
    run = IngestRun.start(_folder(tmp_path), TrainingSettings(), tmp_path / "q", now=NOW)
    run.quarantine[ITEMS] = _rejected(2)
    run.tally(ITEMS, 5, 3, required=True)
    assert (run.report.rows_read[ITEMS], run.report.rows_kept[ITEMS]) == (5, 3)
    assert run.report.quarantined[ITEMS] == {REASON_MISSING_ID: 2}
    run.quarantine[EVENTS] = _rejected(2)
    with pytest.raises(InputError, match="none of the 2 events rows is valid"):
        run.tally(EVENTS, 2, 0, required=True)
    run.quarantine[EVENTS] = _rejected(0)
    with pytest.raises(InputError, match="has no rows"):
        run.tally(EVENTS, 0, 0, required=True)
    run.tally(EVENTS, 0, 0, required=False)  # an optional empty table is fine


def test_a_failed_run_still_writes_its_quarantine_and_a_stale_file_goes(tmp_path: Path) -> None:
    quarantine_dir = tmp_path / "q"
    quarantine_dir.mkdir()
    stale = quarantine_dir / f"{ITEMS}{QUARANTINE_SUFFIX}"
    stale.write_text("left by an earlier run\n")
    run = IngestRun.start(_folder(tmp_path), TrainingSettings(), quarantine_dir, now=NOW)
    with pytest.raises(InputError), run.quarantine_written_on_failure():
        run.quarantine[EVENTS] = _rejected(3)
        run.tally(EVENTS, 3, 0, required=True)
    written = pd.read_csv(quarantine_dir / f"{EVENTS}{QUARANTINE_SUFFIX}", dtype=str, keep_default_na=False)
    assert written[SOURCE_ROW_COLUMN].tolist() == ["1", "2", "3"]
    assert not stale.exists()
    # anything but an InputError is not the run's input at fault: nothing is written for it
    (quarantine_dir / f"{EVENTS}{QUARANTINE_SUFFIX}").unlink()
    with pytest.raises(KeyError), run.quarantine_written_on_failure():
        raise KeyError("a bug")
    assert not any(quarantine_dir.iterdir())
