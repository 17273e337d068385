"""The campaign job: spec in, who to message about what (Parquet, CSV, summary, chart) out.

Steps, in order: read the published artifact set (the same model the servers load), build every customer's
profile as arrays (:mod:`.rules`) with the event store's events laid over it, evaluate the audience rules,
suppress (:mod:`.suppression`), decide what each remaining customer gets (:mod:`.content`; the channel's
suggestions come from :func:`recsvc.ranking.batch.recommend_many`, the batch path the stored lists share)
and write the files (:mod:`.output`).

``recsvc campaign --spec FILE.toml --out DIR`` calls :func:`run_campaign`; so can a nightly job after
training. The engine is built as the server builds it (the ``[server]`` settings, so channel policies
apply) but without the server's stock watcher: stock is not checked for a campaign (a message is read days
later; the store's stock then is unknown).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsvc.artifacts import load_current
from recsvc.artifacts.parts.customer_summary import CustomerSummary
from recsvc.config import Settings
from recsvc.days import iso_of_day, ms_of_day
from recsvc.events.store import EventStore, open_store, sqlite_path
from recsvc.events.validation import MESSAGE_SENT, EventRecord
from recsvc.ids import clean_id
from recsvc.ranking import LoadedModel, RecommendationEngine
from recsvc.ranking.batch import recommend_many
from recsvc.ranking.results import RecommendQuery, Suggestion
from recsvc_training.campaigns.content import Item, contact_aliases, launch_affinity, launch_why, reminder
from recsvc_training.campaigns.output import RowWriter, write_summary
from recsvc_training.campaigns.rules import (
    CustomerTable,
    DueEntry,
    Evaluation,
    LiveActivity,
    PurchaseTable,
    RuleEvaluator,
)
from recsvc_training.campaigns.spec import CampaignSpec, Rule, SpecError, load_spec
from recsvc_training.campaigns.suppression import Suppression, last_messaged, opt_out_mask, sent_log_days

logger = logging.getLogger(__name__)

#: Customers of the batch handled per progress step.
_STEP = 4096


@dataclass(frozen=True)
class CampaignResult:
    """What a run wrote and its summary (the same dict as ``<name>.summary.json``)."""

    files: dict[str, Path]
    summary: dict[str, Any]


def purchase_table(model: LoadedModel) -> PurchaseTable:
    """The model's purchase history and item rhythm as a :class:`PurchaseTable`."""
    return PurchaseTable(indptr=np.asarray(model.hist_indptr), items=np.asarray(model.hist_items),
                         count=np.asarray(model.hist_count), first_day=np.asarray(model.hist_first_day),
                         last_day=np.asarray(model.hist_last_day),
                         item_interval=np.asarray(model.item_repurchase_days, dtype=np.float64),
                         item_category=np.asarray(model.category_codes),
                         category_names=np.asarray(model.category_names))


def read_live(store: EventStore | None, model: LoadedModel, until_ms: int) -> tuple[LiveActivity, int]:
    """Every event the store holds before ``until_ms`` whose customer the model knows (aliases resolved), and
    how many were for customers it does not know."""
    if store is None:
        return LiveActivity.empty(), 0
    customers, items, days, kinds = [], [], [], []
    unknown = 0
    for e in store.export(until_ms):
        row = model.resolve_customer(e.customer_id)
        if row < 0:
            unknown += 1
            continue
        customers.append(row)
        items.append(model.items.row(e.item_id))
        days.append(e.day)
        kinds.append(e.event)
    return LiveActivity(np.array(customers, dtype=np.int64), np.array(items, dtype=np.int64),
                        np.array(days, dtype=np.int64), np.array(kinds, dtype=str)), unknown


def customer_table(model: LoadedModel, today: int, live: LiveActivity,
                   attributes: dict[str, np.ndarray] | None = None) -> CustomerTable:
    """Every customer's profile as arrays (see :mod:`.rules`): the model's, with live purchases laid over it."""
    purchases = purchase_table(model)
    n = model.n_customers
    owner = purchases.owner
    last_day = np.full(n, -1, dtype=np.int64)
    last_channel = np.full(n, -1, dtype=np.int64)
    last_store = np.full(n, "", dtype=object)
    if owner.size:
        # the latest entry per customer (ties: the larger item row, a stable choice)
        order = np.lexsort((purchases.items, purchases.last_day, owner))
        ends = np.r_[np.flatnonzero(owner[order][1:] != owner[order][:-1]), owner.size - 1]
        pick = order[ends]
        rows = owner[pick]
        last_day[rows] = purchases.last_day[pick]
        last_channel[rows] = np.asarray(model.hist_last_channel)[pick]
        store_rows = np.asarray(model.hist_last_store)[pick]
        last_store[rows] = [model.store_id(int(s)) for s in store_rows]
    bought = live.of("purchase") & (live.day > model.data_end_day)
    if bought.any():
        np.maximum.at(last_day, live.customer[bought], live.day[bought])
    summary = model.parts.get(CustomerSummary)
    if summary is not None:
        segment = np.asarray(summary.rfm_segment, dtype=np.int64)
        names = tuple(summary.segment_name(i) for i in range(int(segment.max(initial=-1)) + 1))
        names = tuple(summary.segment_names) or names
        used = np.asarray(summary.channels, dtype=bool)
    else:
        segment, names = np.full(n, -1, dtype=np.int64), ()
        used = np.zeros((n, len(model.channels)), dtype=bool)
        if owner.size:
            channel = np.asarray(model.hist_last_channel, dtype=np.int64)
            ok = channel >= 0
            used[owner[ok], channel[ok]] = True
    return CustomerTable(purchases=purchases, today=today, segment=segment, segment_names=names,
                         channels_used=used, channel_names=tuple(model.channels), last_day=last_day,
                         last_channel=last_channel, last_store=last_store.astype(str), live=live,
                         item_ids=np.asarray(model.items.ids), attributes=attributes or {},
                         cutoff_day=model.data_end_day)


def read_attributes(path: Path, model: LoadedModel) -> dict[str, np.ndarray]:
    """Customer attributes (every column but ``customer_id``) per customer row, "" where not given."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    if "customer_id" not in frame.columns:
        raise SpecError(f"{path}: the customers file needs a customer_id column")
    rows = np.array([model.resolve_customer(clean_id(v)) for v in frame["customer_id"]], dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for column in frame.columns:
        if column == "customer_id":
            continue
        values = np.full(model.n_customers, "", dtype=object)
        values[rows[rows >= 0]] = frame[column].to_numpy()[rows >= 0]
        out[column] = values.astype(str)
    return out


def _today(model: LoadedModel, clock: Callable[[], datetime]) -> int:
    """The engine's reference day: the data's last day aged by the model's time in service."""
    try:
        created = datetime.fromisoformat(model.created_at)
    except ValueError:
        return model.data_end_day
    return model.data_end_day + max(0, (clock() - created).days)


def _clock_for(model: LoadedModel, today: int, clock: Callable[[], datetime]) -> Callable[[], datetime]:
    """A clock under which the engine's reference day is ``today`` (``clock`` itself when it already is)."""
    if _today(model, clock) == today:
        return clock
    try:
        created = datetime.fromisoformat(model.created_at)
    except ValueError:
        return clock
    moment = created + timedelta(days=max(0, today - model.data_end_day), hours=1)
    return lambda: moment


def _rule_fail(spec: CampaignSpec) -> Callable[[Rule, str], SpecError]:
    return lambda rule, message: SpecError(f"{spec.source}:{rule.line}: {rule.path}: {message}")


def _why(spec: CampaignSpec, evaluation: Evaluation, row: int, table: CustomerTable, model: LoadedModel) -> str:
    """The audience rules customer ``row`` matched, in words (the top-level rules; a due rule with its item)."""
    if spec.audience is None:
        return "everyone (no audience rules)"
    grouped = spec.audience.kind in ("all", "any") and not spec.audience.name
    top = spec.audience.children if grouped else (spec.audience,)
    said = []
    for rule in top:
        if not evaluation.masks[rule.path][row]:
            continue
        if rule.kind == "due":
            due = evaluation.due[rule.path]
            days = int(due.due_day[row]) - table.today
            kind = "the item's" if due.category[row] < 0 else "the category's"
            rhythm = "their rhythm" if due.own[row] else f"{kind} usual interval"
            if due.category[row] >= 0:
                rhythm += f" in {table.purchases.category_names[int(due.category[row])]}"
            when = f"due in {days} days" if days > 0 else ("due today" if days == 0 else f"{-days} days overdue")
            said.append(f"{model.item_title(int(due.item[row]))} {when} by {rhythm} (every ~{due.interval[row]:.0f} "
                        f"days, last bought {table.today - int(due.last_day[row])} days ago)")
        else:
            said.append(rule.label())
    return "; ".join(said)


def run_campaign(spec: CampaignSpec | str | Path, artifacts_root: str | Path, out_dir: str | Path, *,
                 settings: Settings | None = None, event_store: EventStore | None = None,
                 clock: Callable[[], datetime] | None = None, progress: bool = False,
                 record_sent: bool = False) -> CampaignResult:
    """Run one campaign and write its files into ``out_dir``.

    Parameters
    ----------
    spec
        A parsed spec or the path of its TOML file.
    artifacts_root
        The artifact root; the version ``CURRENT`` names is used.
    settings
        ``[server]`` (channel policies) and ``[events]`` (which event store) settings; defaults when None.
    event_store
        The store to read live events from (None: the one ``settings.events`` configures, when the spec's
        ``use_event_store`` is on and the store exists).
    clock
        "Now" (UTC), for the reference day and the engine; defaults to the wall clock.
    progress
        Show a progress bar (tqdm) over the customers being ranked.
    record_sent
        Append one ``message_sent`` event per customer written to the event store, so the next campaign's
        frequency cap sees them.

    Raises
    ------
    SpecError
        The spec is invalid, or names an item, category or attribute the data lacks (with its line).
    recsvc.artifacts.ArtifactError
        Nothing published, or the set is unusable.
    """
    started = time.perf_counter()
    spec = spec if isinstance(spec, CampaignSpec) else load_spec(spec)
    settings = settings or Settings()
    clock = clock or (lambda: datetime.now(UTC))
    root = Path(artifacts_root)
    out = Path(out_dir)
    model = LoadedModel(load_current(root))
    today = spec.today if spec.today is not None else _today(model, clock)
    # the suggestions' reasons ("last bought 3 days ago") count to the same day as the rules
    engine = RecommendationEngine(model, settings.server, clock=_clock_for(model, today, clock))

    store, own_store = event_store, False
    # read the configured store when it exists; create the embedded one only to record what is sent
    exists = not (settings.events.backend == "sqlite" and not sqlite_path(settings.events, root).exists())
    if store is None and settings.events.backend != "off" and (
            (spec.use_event_store and exists) or record_sent):
        store, own_store = open_store(settings.events, root), True
    try:
        # everything up to now (or the end of the reference day, when that is later)
        until_ms = max(ms_of_day(today + 1), int(clock().timestamp() * 1000) + 1)
        live, unknown_live = read_live(store if spec.use_event_store else None, model, until_ms)
        attributes = read_attributes(spec.customers_file, model) if spec.customers_file else None
        table = customer_table(model, today, live, attributes)
        evaluator = RuleEvaluator(table, model.items.row, dict(zip(
            np.asarray(model.category_names).tolist(), range(len(model.category_names)), strict=True)),
            _rule_fail(spec))
        evaluation = evaluator.evaluate(spec.audience)
        result, sent = _finish(spec, model, engine, table, evaluation, evaluator, out, progress, unknown_live)
        if record_sent and store is not None:
            _record_sent(store, spec, sent, clock)
    finally:
        if own_store and store is not None:
            store.close()
    result.summary["seconds"] = round(time.perf_counter() - started, 3)
    write_summary(result.summary, out, spec.name)
    logger.info("campaign %s: %d customers to send (%s)", spec.name, result.summary["sent"],
                ", ".join(f"{k} {v}" for k, v in result.summary["suppressed"].items()))
    return result


def _finish(spec: CampaignSpec, model: LoadedModel, engine: RecommendationEngine, table: CustomerTable,
            evaluation: Evaluation, evaluator: RuleEvaluator, out: Path, progress: bool,
            unknown_live: int) -> tuple[CampaignResult, list[tuple[str, str]]]:
    """Suppress, decide what each customer gets, write the rows; returns the result and (customer id, first
    item id or the campaign's name) per customer written."""
    n = table.n
    audience = evaluation.audience.copy()
    sup = Suppression(kept=audience.copy())
    if spec.first_purchase_offer:
        sup.apply("existing_buyer", table.is_buyer())
    if spec.opt_out is not None:
        mask, sup.unmatched["opt_out"] = opt_out_mask(spec.opt_out, spec.channel, n, model.resolve_customer)
        sup.apply("opted_out", mask)
    if spec.messaged_within_days > 0:
        messages = table.live.of(MESSAGE_SENT)
        logs: dict[str, np.ndarray] = {}
        if spec.sent_log is not None:
            logs["sent_log"], sup.unmatched["sent_log"] = sent_log_days(spec.sent_log, n, model.resolve_customer)
        last = last_messaged(n, table.live.customer[messages], table.live.day[messages], logs)
        sup.apply("messaged_recently", (last >= 0) & (last >= table.today - spec.messaged_within_days))
    due_rules = spec.due_rules()
    due: DueEntry | None = None
    if due_rules:
        # a customer's reminder comes from the first due rule (in spec order) they match
        due = _merged_due(due_rules, evaluation, n)
        if spec.bought_since_due:
            sup.apply("bought_since_due", _bought_after(table, due, model))
    target_item, target_category = -1, -1
    if spec.target is not None:
        rule = Rule("target", "target", spec.target.line, args={"item": spec.target.item,
                                                              "category": spec.target.category})
        target_item = evaluator.item_row(rule, spec.target.item) if spec.target.item else -1
        target_category = evaluator.category_code(rule, spec.target.category) if spec.target.category else -1
        if spec.bought_within_days > 0:
            sup.apply("bought_recently", _bought_target_within(table, target_item, target_category,
                                                               spec.bought_within_days))
    contacts = contact_aliases(model, spec.alias_prefix, spec.use_customer_id)
    sup.apply("no_contact", contacts == "")
    rows = np.flatnonzero(sup.kept)
    affinity = None
    if spec.target is not None:
        affinity = launch_affinity(model, table, rows, target_item, target_category, dict(spec.target.weights))
        order = np.lexsort((rows, -affinity.score))[:spec.target.top]
        rows = rows[order]
        affinity = type(affinity)(rows, affinity.score[order], affinity.cf[order], affinity.due[order],
                                  affinity.category_share[order])

    channel_row = model.channel_row(spec.channel)
    ids = [model.customer_id(int(r)) for r in rows]
    bar = _progress_bar(len(ids), spec.name) if progress else None
    suggestions = (recommend_many(engine, ids, spec.channel, spec.num_suggestions, spec.store_id)
                   if spec.num_suggestions > 0 else iter(()))
    writer = RowWriter(out, spec.name)
    segment_names = table.segment_names
    by_segment: dict[str, int] = {}
    by_channel: dict[str, int] = {}
    category_name = (str(model.category_names[target_category]) if target_category >= 0 else
                     str(model.item_categories[target_item]) if target_item >= 0 else "")
    for i, row in enumerate(rows.tolist()):
        seg = int(table.segment[row])
        seg_name = segment_names[seg] if 0 <= seg < len(segment_names) else "none"
        chan = model.channel_name(int(table.last_channel[row])) or "none"
        by_segment[seg_name] = by_segment.get(seg_name, 0) + 1
        by_channel[chan] = by_channel.get(chan, 0) + 1
        values: dict[str, Any] = {"customer_id": ids[i], "contact_alias": str(contacts[row]), "channel": spec.channel,
                                  "segment": seg_name}
        items: list[Any] = []
        if spec.kind == "rebuy" and due is not None and due.due[row]:
            items = reminder(model, table, due, row, channel_row, spec.num_addons)
            values["due_item_id"] = model.item_id(int(due.item[row]))
            values["due_in_days"] = int(due.due_day[row]) - table.today
        if affinity is not None:
            values["score"] = float(affinity.score[i])
            values["why"] = launch_why(affinity, i, category_name)
            items = _launch_items(engine, model, spec, ids[i], target_item, category_name)
        else:
            values["why"] = _why(spec, evaluation, row, table, model)
        if spec.num_suggestions > 0:
            result = next(suggestions)
            values["suggestion_items"] = [s.item_id for s in result.items]
            values["suggestion_reasons"] = [s.reason.text for s in result.items]
            values["suggestion_scores"] = [float(s.score) for s in result.items]
            if spec.kind == "suggest":
                items = [_as_item(s) for s in result.items]
        values["items"] = [it.item_id for it in items]
        values["titles"] = [it.title for it in items]
        values["reasons"] = [it.reason for it in items]
        values["reason_kinds"] = [it.kind for it in items]
        values["scores"] = [it.score for it in items]
        if "score" not in values and items:
            values["score"] = float(items[0].score)
        writer.add(**values)
        writer.sent.append((ids[i], values["items"][0] if values["items"] else spec.name))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    writer.close()
    files = dict(writer.paths)
    rule_sizes = ([{"label": r.label(), "path": r.path, "line": r.line,
                    "customers": int(evaluation.masks[r.path].sum())}
                   for r in spec.audience.walk()] if spec.audience is not None else [])
    summary: dict[str, Any] = {
        "campaign": spec.name, "kind": spec.kind, "channel": spec.channel,
        "channel_known": channel_row >= 0, "model_version": model.version, "today": iso_of_day(table.today),
        "customers": n, "audience": int(audience.sum()), "rules": rule_sizes,
        "suppressed": {r: sup.removed.get(r, 0) for r in _reasons_used(spec)},
        "unmatched_ids": sup.unmatched, "live_events": int(table.live.kind.size),
        "live_events_unknown_customer": unknown_live, "sent": writer.written,
        "by_segment": dict(sorted(by_segment.items(), key=lambda kv: -kv[1])),
        "by_channel": dict(sorted(by_channel.items(), key=lambda kv: -kv[1])),
        "files": {k: str(v) for k, v in files.items()},
    }
    sent = writer.sent
    files.update({"summary_json": out / f"{spec.name}.summary.json", "summary_md": out / f"{spec.name}.summary.md",
                  "chart": out / f"{spec.name}.audience.png"})
    return CampaignResult(files, summary), sent


def _reasons_used(spec: CampaignSpec) -> list[str]:
    used = []
    if spec.first_purchase_offer:
        used.append("existing_buyer")
    if spec.opt_out is not None:
        used.append("opted_out")
    if spec.messaged_within_days > 0:
        used.append("messaged_recently")
    if spec.due_rules() and spec.bought_since_due:
        used.append("bought_since_due")
    if spec.target is not None and spec.bought_within_days > 0:
        used.append("bought_recently")
    used.append("no_contact")
    return used


def _merged_due(rules: list[Rule], evaluation: Evaluation, n: int) -> DueEntry:
    """One due entry per customer: from the first due rule (spec order) that flags them."""
    entries = [evaluation.due[r.path] for r in rules if r.path in evaluation.due]
    merged = DueEntry(due=np.zeros(n, dtype=bool), item=np.full(n, -1, dtype=np.int64),
                      due_day=np.zeros(n, dtype=np.int64), interval=np.full(n, np.nan),
                      last_day=np.full(n, -1, dtype=np.int64), count=np.zeros(n), own=np.zeros(n, dtype=bool),
                      category=np.full(n, -1, dtype=np.int64))
    for entry in entries:
        take = entry.due & ~merged.due
        for name in ("due", "item", "due_day", "interval", "last_day", "count", "own", "category"):
            getattr(merged, name)[take] = getattr(entry, name)[take]
    return merged


def _bought_after(table: CustomerTable, due: DueEntry, model: LoadedModel) -> np.ndarray:
    """Customers with a live purchase of their due item (for a category's rhythm: of anything in the category)
    after the purchase the due date counts from."""
    live = table.live
    hit = np.zeros(table.n, dtype=bool)
    bought = live.of("purchase")
    if not bought.any():
        return hit
    c, item, day = live.customer[bought], live.item[bought], live.day[bought]
    category = table.purchases.item_category[np.maximum(item, 0)]
    same_item = np.where(due.category[c] >= 0, category == due.category[c], due.item[c] == item)
    same = same_item & (item >= 0) & (day > due.last_day[c])
    hit[c[same]] = True
    return hit


def _bought_target_within(table: CustomerTable, item: int, category: int, days: int) -> np.ndarray:
    """Customers who bought the launch's item (or anything in its category) within ``days`` of today."""
    p = table.purchases
    keep = (p.items == item) if item >= 0 else (p.item_category[p.items] == category)
    keep &= p.last_day >= table.today - days
    hit = np.zeros(table.n, dtype=bool)
    hit[p.owner[keep]] = True
    live = table.live
    bought = live.of("purchase") & (live.day >= table.today - days) & (live.item >= 0)
    about = (live.item == item) if item >= 0 else (p.item_category[np.maximum(live.item, 0)] == category)
    hit[live.customer[bought & about]] = True
    return hit


def _as_item(s: Suggestion) -> Item:
    return Item(s.item_id, s.title, float(s.score), s.reason.text, s.reason.kind.name.lower())


def _launch_items(engine: RecommendationEngine, model: LoadedModel, spec: CampaignSpec, customer_id: str,
                  item: int, category: str) -> list[Item]:
    """A launch's message: the item itself, or the category's best items for the customer by ``Recommend``
    with the category filter (the same ranking, restricted to the category)."""
    if item >= 0:
        return [Item(model.item_id(item), model.item_title(item), 1.0,
                      f"New for you: {model.item_title(item)}", "launch")]
    n = max(1, spec.num_addons)
    result = engine.recommend(RecommendQuery(customer_id=customer_id, channel=spec.channel, store_id=spec.store_id,
                                             num_items=n, include_categories=[category]))
    return [_as_item(s) for s in result.items]


def _progress_bar(total: int, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=f"campaign {name}", unit="customer", mininterval=1.0)


def _record_sent(store: EventStore, spec: CampaignSpec, sent: list[tuple[str, str]],
                 clock: Callable[[], datetime]) -> None:
    """One ``message_sent`` event per customer messaged (item: the first item sent, or the campaign name)."""
    now_ms = int(clock().timestamp() * 1000)
    run = uuid.uuid4().hex[:12]
    events = [EventRecord(event_id=f"campaign:{spec.name}:{run}:{customer}", customer_id=customer, item_id=item,
                          event=MESSAGE_SENT, channel=spec.channel, store_id="", order_id=spec.name, quantity=1.0,
                          price=float("nan"), timestamp_ms=now_ms, recorded_ms=now_ms) for customer, item in sent]
    for start in range(0, len(events), 1000):
        store.append(events[start:start + 1000])
    logger.info("recorded %d message_sent events for campaign %s", len(events), spec.name)
