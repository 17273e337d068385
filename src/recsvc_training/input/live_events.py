"""Bring the events recorded live (``recsvc.v1.Events``) into the data folder before the nightly training run.

``recsvc train`` reads the configured event store itself (the same ``[events]`` settings the servers use)
rather than waiting for a separate export job: there is no second schedule to forget, and a run that cannot
read the store fails before training instead of publishing a model that silently lacks yesterday's live
events (the overlay would then drop them: it ignores everything at or before the model's cut-off).

What is taken: every stored event whose timestamp is before today's midnight UTC, i.e. complete days only, so
the new model's ``data_end_day`` is at most yesterday and the overlay keeps everything recorded today. Events
are appended to the data folder's ``events`` table with an ``event_id`` column (added once, empty for rows that
came from elsewhere); an ``event_id`` already in the table is skipped, so running twice, or an event recorded
twice, adds it once. After a successful import the store drops events older than ``events.retention_days``.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from recsvc.config import Settings
from recsvc.days import MS_PER_DAY, day_of_ms, ms_of_day
from recsvc.events.store import EventStore, StoreUnavailable, open_store
from recsvc.events.validation import FEEDBACK_EVENT_TYPES, EventRecord
from recsvc_training.input.columns import EVENT_COLUMNS, EVENTS
from recsvc_training.input.ingest import InputError, _all_str, find_table_files

logger = logging.getLogger(__name__)

#: The column that carries each live event's idempotency key into the data folder.
EVENT_ID = "event_id"


@dataclass(frozen=True)
class LiveImport:
    """What one import did: events read from the store, appended, already in the folder, purged."""

    read: int
    added: int
    already_present: int
    purged: int
    table: Path

    def summary(self) -> str:
        return (f"live events: {self.added} added to {self.table} ({self.already_present} already there, "
                f"{self.read} read from the store, {self.purged} past retention dropped)")


def _row(e: EventRecord) -> dict[str, str]:
    stamp = datetime.fromtimestamp(e.timestamp_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return {"timestamp": stamp, "customer_id": e.customer_id, "item_id": e.item_id, "event": e.event,
            "channel": e.channel, "store_id": e.store_id, "order_id": e.order_id, "quantity": repr(e.quantity),
            "price": "" if math.isnan(e.price) else repr(e.price), EVENT_ID: e.event_id}


def _read_all(path: Path) -> pd.DataFrame:
    if path.name.endswith(".parquet"):
        return _all_str(pd.read_parquet(path))
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8-sig", index_col=False)


def _write_all(frame: pd.DataFrame, path: Path) -> None:
    """Replace ``path`` atomically (write beside it, then rename), so a crash leaves the old table whole."""
    partial = path.with_name(path.name + ".partial")
    if path.name.endswith(".parquet"):
        frame.to_parquet(partial, index=False)
    else:
        frame.to_csv(partial, index=False, compression="gzip" if path.name.endswith(".gz") else None)
    os.replace(partial, path)


def append_events(table: Path, events: Iterable[EventRecord]) -> tuple[int, int]:
    """Append the events whose ``event_id`` is not in ``table`` yet; returns ``(added, already_present)``.

    A CSV table that already has the ``event_id`` column is appended to in place (plain or as one more gzip
    member); otherwise, and for parquet, the table is rewritten once with the column added.
    """
    header = _read_all(table).head(0) if table.name.endswith(".parquet") else pd.read_csv(
        table, dtype=str, nrows=0, encoding="utf-8-sig", index_col=False)
    columns = [str(c).strip() for c in header.columns]
    present: set[str] = set()
    if EVENT_ID in columns:
        ids = (pd.read_parquet(table, columns=[EVENT_ID]) if table.name.endswith(".parquet") else
               pd.read_csv(table, dtype=str, usecols=[EVENT_ID], keep_default_na=False, encoding="utf-8-sig"))
        present = set(ids[EVENT_ID].astype(str))
    rows, skipped = [], 0
    for event in events:
        if event.event_id in present:
            skipped += 1
            continue
        present.add(event.event_id)
        rows.append(_row(event))
    if not rows:
        return 0, skipped
    if EVENT_ID in columns and not table.name.endswith(".parquet"):
        new = pd.DataFrame(rows).reindex(columns=columns, fill_value="")
        if table.name.endswith(".gz"):
            with gzip.open(table, "at", encoding="utf-8", newline="") as zipped:  # one more gzip member
                new.to_csv(zipped, index=False, header=False)
        else:
            with table.open("rb") as existing:
                existing.seek(max(0, table.stat().st_size - 1))
                needs_newline = existing.read(1) not in (b"\n", b"")
            with table.open("a", encoding="utf-8", newline="") as out:
                if needs_newline:
                    out.write("\n")
                new.to_csv(out, index=False, header=False)
    else:
        old = _read_all(table)
        old.columns = columns
        if EVENT_ID not in old.columns:
            old[EVENT_ID] = ""
        order = [*columns, *(c for c in (*EVENT_COLUMNS, EVENT_ID) if c not in columns)]
        _write_all(pd.concat([old, pd.DataFrame(rows)], ignore_index=True).reindex(columns=order, fill_value=""),
                   table)
    return len(rows), skipped


def import_live_events(data_dir: Path, store: EventStore, *, retention_days: int, now_ms: int | None = None
                       ) -> LiveImport:
    """Append the store's complete-day events to ``data_dir``'s events table, then apply retention.

    Raises
    ------
    recsvc_training.input.ingest.InputError
        The data folder has no events table (nothing to append to).
    recsvc.events.store.StoreUnavailable
        The store cannot be read; nothing was appended.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    before = ms_of_day(day_of_ms(now_ms))  # today's midnight UTC: complete days only
    table = find_table_files(Path(data_dir))[EVENTS]
    # feedback (impressions, clicks, messages sent) stays in the store for the online report: no model learns
    # from it (README, Feedback and experiments), and impressions would outnumber every other row
    events = [e for e in store.export(before) if e.event not in FEEDBACK_EVENT_TYPES]
    added, present = append_events(table, events)
    purged = store.purge(now_ms - retention_days * MS_PER_DAY)
    result = LiveImport(read=len(events), added=added, already_present=present, purged=purged, table=table)
    logger.info("%s", result.summary())
    return result


def import_configured(data_dir: Path, settings: Settings) -> LiveImport | None:
    """:func:`import_live_events` from the store ``settings.events`` names (None when events are off or the
    embedded store was never created, e.g. a trainer on a machine that serves nothing).

    Raises
    ------
    recsvc_training.input.ingest.InputError
        The store cannot be read (Redis down): the run stops before training, saying so.
    """
    from recsvc.artifacts.store import is_url
    from recsvc.events.store import sqlite_path

    if settings.events.backend == "off":
        return None
    root = settings.server.artifact_root
    if settings.events.backend == "sqlite" and not settings.events.sqlite_path and is_url(root):
        return None  # an artifact root on object storage holds no embedded store (servers refuse one there)
    if settings.events.backend == "sqlite" and not sqlite_path(settings.events, root).exists():
        return None
    try:
        store = open_store(settings.events, settings.server.artifact_root)
        if store is None:
            return None
        try:
            return import_live_events(data_dir, store, retention_days=settings.events.retention_days)
        finally:
            store.close()
    except StoreUnavailable as exc:
        # stop before training: a model without yesterday's live events would make the overlay drop them
        raise InputError(f"cannot read the live events: {exc}; nothing was trained, so none are lost. Retry "
                         "when the store is back, or set events.backend = \"off\" to train without them") from exc
