"""Campaigns (issue 17): due audiences on hand-set rhythms, each suppression counted, output = Recommend, files,
and bad specs named by their line.

The toy set (tests/toy_model.py) with a customer summary, contact aliases (``LINE:<n>`` for C001, C002, C003,
C005; none for C004) and one customer who never bought (C006) added. Rhythms as of the toy's last day:

* C001 laundry detergent H04 ×5 over 120 days (own rhythm 30 days), last 27 days ago: due in 3 days;
* C002 milk D01 once 3 days ago, the item's interval 7 days: due in 4 days by the item's rhythm only;
* C003 oat milk D04 ×2, 40 and 12 days ago (own 28 days): due in 16 days;
* C005 croissants B02 ×3, 60 to 4 days ago (own 28 days): due in 24 days;
* C004 dish soap H01 once 10 days ago, no item interval; as a household purchase the category's interval
  (H04's 30 days) makes it due in 20 days.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsvc.artifacts import ArtifactSet, publish_artifacts, string_array
from recsvc.cli import main
from recsvc.days import ms_of_day
from recsvc.events.sqlite_store import SqliteEventStore
from recsvc.events.validation import EventRecord
from recsvc.ranking import LoadedModel, RecommendationEngine, RecommendQuery
from recsvc_training.campaigns import SpecError, parse_spec, run_campaign
from tests.toy_model import CREATED_AT, DATA_END_DAY, build_synthetic_artifacts, build_toy_artifacts

CONTACTS = {"LINE:1": "C001", "LINE:2": "C002", "LINE:3": "C003", "LINE:5": "C005", "LINE:6": "C006"}
SEGMENTS = ("champion", "loyal", "potential loyalist", "new", "at risk", "hibernating", "lost")
# customer -> segment index (C006 never bought: none)
SEGMENT_OF = {"C001": 0, "C002": 3, "C003": 1, "C004": 3, "C005": 1, "C006": -1}


def _campaign_set() -> ArtifactSet:
    """The toy set plus C006 (no purchases), LINE aliases and a customer summary."""
    toy = build_toy_artifacts()
    a = dict(toy.arrays)
    customers = [*a["customer_ids"].tolist(), "C006"]
    a["customer_ids"] = string_array(customers)
    a["als_user_factors"] = np.vstack([a["als_user_factors"], np.array([[0.5, 0.5, 0.0, 0.0]], dtype=np.float32)])
    a["hist_indptr"] = np.append(a["hist_indptr"], a["hist_indptr"][-1]).astype(np.int64)
    links = {str(k): str(v) for k, v in zip(a["alias_ids"].tolist(),
                                            [customers[i] for i in a["alias_customer"]], strict=True)}
    links.update(CONTACTS)
    aliases = sorted(links)
    a["alias_ids"] = string_array(aliases)
    a["alias_customer"] = np.array([customers.index(links[x]) for x in aliases], dtype=np.int32)
    n = len(customers)
    a["rfm_segment"] = np.array([SEGMENT_OF[c] for c in customers], dtype=np.int8)
    a["rfm_scores"] = np.where(a["rfm_segment"][:, None] >= 0, 3, 0).repeat(3, axis=1).astype(np.int8)
    a["cust_monetary"] = np.full(n, 10.0, dtype=np.float32)
    channels = np.zeros((n, 3), dtype=bool)
    channels[:5, 1] = True   # everyone who bought used the store ...
    channels[2, 2] = True    # ... C003 also the web
    a["cust_channels"] = channels
    extra = dict(toy.extra)
    extra["rfm_segments"] = list(SEGMENTS)
    built = dataclasses.replace(toy, arrays=a, extra=extra,
                                row_counts={**toy.row_counts, "customers": n})
    built.validate()
    return built


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    publish_artifacts(_campaign_set(), tmp_path / "artifacts")
    return tmp_path / "artifacts"


def _clock() -> datetime:
    return CREATED_AT


def _spec(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(tmp_path: Path, root: Path, text: str, **kwargs: object) -> tuple[pd.DataFrame, dict]:
    result = run_campaign(_spec(tmp_path, text), root, tmp_path / "out", clock=_clock, **kwargs)  # type: ignore[arg-type]
    frame = pd.read_parquet(result.files["parquet"])
    return frame, result.summary


HEAD = '[campaign]\nname = "t"\nkind = "{kind}"\nchannel = "{channel}"\n\n[contact]\nalias_prefix = "LINE:"\n\n'


def _head(kind: str = "rebuy", channel: str = "store") -> str:
    return HEAD.format(kind=kind, channel=channel)


# --------------------------------------------------------------------------------------------------- due audience

@pytest.mark.parametrize(("due", "expected"), [
    ('{ within_days = 14 }', {"C001"}),                                   # the own rhythm is the default
    ('{ within_days = 14, rhythm = "own_or_item" }', {"C001", "C002"}),   # C002 by the item's interval
    ('{ within_days = 14, rhythm = "item" }', {"C001", "C002", "C003"}),  # H04's, D01's, D04's intervals
    ('{ within_days = 16 }', {"C001", "C003"}),                           # C003 due in exactly 16 days
    ('{ within_days = 2 }', set()),                                       # C001 is 3 days away
    ('{ within_days = 30, rhythm = "own_or_item" }', {"C001", "C002", "C003", "C005"}),  # H01 has no interval
    ('{ category = "household", within_days = 14 }', {"C001"}),
    ('{ category = "household", within_days = 21 }', {"C001"}),           # C004 bought once: no own rhythm
    ('{ category = "household", within_days = 21, rhythm = "own_or_item" }', {"C001", "C004"}),  # category's
    ('{ item = "D01", within_days = 14 }', set()),
    ('{ item = "D01", within_days = 14, rhythm = "own_or_item" }', {"C002"}),
])
def test_due_audience_is_exactly_the_customers_whose_rhythm_says_so(tmp_path: Path, root: Path, due: str,
                                                                     expected: set[str]) -> None:
    text = _head() + f"[[audience.rule]]\ndue = {due}\n"
    frame, summary = _run(tmp_path, root, text.replace('alias_prefix = "LINE:"', "use_customer_id = true"))
    assert set(frame["customer_id"]) == expected
    assert summary["audience"] == len(expected)


def test_a_rebuy_reminder_is_the_due_item_with_its_addons_and_reasons(tmp_path: Path, root: Path) -> None:
    frame, _ = _run(tmp_path, root, _head() + '[[audience.rule]]\ndue = { item = "D01", within_days = 14, '
                                                  'rhythm = "own_or_item" }\n')
    row = frame.set_index("customer_id").loc["C002"]
    assert row["due_item_id"] == "D01" and row["due_in_days"] == 4
    assert list(row["items"]) == ["D01", "B01", "D02"]          # milk, then what goes with it by co-purchase
    assert row["reasons"][0].startswith("You buy this every ~7 days; last bought 3 days ago (due in 4 days)")
    assert row["reasons"][1] == "Bought together with Milk 1 l (bought in store S02 on 4 May)"
    assert row["contact_alias"] == "LINE:2"
    assert "Milk 1 l due in 4 days by the item's usual interval" in row["why"]
    # a category's rhythm is named as such (the last purchase in it may be another item)
    frame, _ = _run(tmp_path, root, _head() + '[[audience.rule]]\ndue = { category = "household", within_days = 14 }\n')
    row = frame.set_index("customer_id").loc["C001"]
    assert row["reasons"][0] == "You buy household every ~30 days; last bought 27 days ago (due in 3 days)"
    assert list(row["items"]) == ["H04"]      # no co-purchase neighbours of the detergent in the toy set


# --------------------------------------------------------------------------------------------------- suppression

def test_each_suppression_removes_what_it_should_and_is_counted(tmp_path: Path, root: Path) -> None:
    (tmp_path / "optout.csv").write_text("alias_id,channel\nLOY-1,store\nLINE:5,web\nnobody,\n")
    (tmp_path / "sent.csv").write_text("customer_id,timestamp\nLINE:3,2026-05-05T10:00:00Z\nC005,2026-03-01\n")
    store = SqliteEventStore(tmp_path / "events.sqlite")
    day_ms = ms_of_day(DATA_END_DAY)
    after_cutoff = int(CREATED_AT.timestamp() * 1000) - 3_600_000  # the night after the model's last day
    store.append([
        EventRecord("m1", "C005", "B02", "message_sent", "line", "", "t", 1.0, math.nan, day_ms - 86_400_000, day_ms),
        EventRecord("p1", "C002", "D01", "purchase", "store", "S02", "", 1.0, 1.1, after_cutoff, after_cutoff),
    ])
    base = _head() + '[[audience.rule]]\ndue = { within_days = 30, rhythm = "own_or_item" }\n'  # C001-3, C005
    # with no suppression asked for, only the defaults apply: bought since due, and no contact (all have one)
    frame, summary = _run(tmp_path, root, base, event_store=store)
    assert set(frame["customer_id"]) == {"C001", "C003", "C005"}       # C002 bought milk since the cut-off
    assert summary["suppressed"] == {"bought_since_due": 1, "no_contact": 0}
    text = base + ('[suppression]\nopt_out = "optout.csv"\nsent_log = "sent.csv"\nmessaged_within_days = 7\n')
    frame, summary = _run(tmp_path, root, text, event_store=store)
    # C001 opted out on the store channel (through its loyalty alias); C005's opt-out is for the web only, but
    # C005 was messaged yesterday (event store); C003 two days ago (sent log, through the LINE alias); C002
    # bought milk after the model's cut-off, so it is no longer due
    assert set(frame["customer_id"]) == set()
    assert summary["suppressed"] == {"opted_out": 1, "messaged_recently": 2, "bought_since_due": 1, "no_contact": 0}
    assert summary["unmatched_ids"] == {"opt_out": 1, "sent_log": 0}
    # for a category's rhythm, buying anything in the category ends the wait: C001 buys sponges (household)
    sponges = EventRecord("p3", "LOY-1", "H02", "purchase", "store", "S01", "", 1.0, 1.5, after_cutoff, after_cutoff)
    store.append([sponges])
    frame, summary = _run(tmp_path, root, _head() + '[[audience.rule]]\ndue = { category = "household" }\n',
                          event_store=store)
    assert frame.empty and summary["suppressed"]["bought_since_due"] == 1
    # a cap of 1 day keeps C003 (messaged 2 days ago) and still removes C005 (yesterday)
    frame, summary = _run(tmp_path, root, text.replace("messaged_within_days = 7", "messaged_within_days = 1"),
                          event_store=store)
    assert set(frame["customer_id"]) == {"C003"}
    assert summary["suppressed"]["messaged_recently"] == 1
    store.close()


def test_customers_without_a_contact_alias_are_suppressed_and_counted(tmp_path: Path, root: Path) -> None:
    frame, summary = _run(tmp_path, root, _head() + '[[audience.rule]]\ndue = { category = "household", '
                                                    'within_days = 21, rhythm = "own_or_item" }\n')
    assert set(frame["customer_id"]) == {"C001"}        # C004 has no LINE alias
    assert summary["suppressed"]["no_contact"] == 1 and summary["audience"] == 2


def test_a_first_purchase_offer_never_reaches_a_buyer(tmp_path: Path, root: Path) -> None:
    text = _head("suggest") + "[[audience.rule]]\nnot = { segment = [\"lost\"] }\n"
    text = text.replace('channel = "store"', 'channel = "store"\nfirst_purchase_offer = true')
    frame, summary = _run(tmp_path, root, text)
    assert list(frame["customer_id"]) == ["C006"]       # the only customer who never bought
    assert summary["suppressed"]["existing_buyer"] == 5
    # a purchase since the model's cut-off makes C006 a buyer too
    store = SqliteEventStore(tmp_path / "events.sqlite")
    after_cutoff = int(CREATED_AT.timestamp() * 1000) - 3_600_000
    store.append([EventRecord("p6", "LINE:6", "B01", "purchase", "web", "", "", 1.0, 2.5, after_cutoff,
                              after_cutoff)])
    frame, summary = _run(tmp_path, root, text, event_store=store)
    assert frame.empty and summary["suppressed"]["existing_buyer"] == 6
    store.close()


# --------------------------------------------------------------------------------------------- same as Recommend

@pytest.mark.parametrize("channel", ["app", "store", "web"])
def test_the_campaign_list_equals_recommend_on_that_channel_for_every_customer(tmp_path: Path, root: Path,
                                                                              channel: str) -> None:
    text = _head("suggest", channel).replace('alias_prefix = "LINE:"', "use_customer_id = true")
    frame, _ = _run(tmp_path, root, text)
    engine = RecommendationEngine(LoadedModel(_campaign_set()), clock=_clock)
    assert len(frame) == 6
    for row in frame.itertuples():
        alone = engine.recommend(RecommendQuery(customer_id=row.customer_id, channel=channel, num_items=10))
        assert list(row.items) == [s.item_id for s in alone.items]
        assert list(row.suggestion_reasons) == [s.reason.text for s in alone.items]
        np.testing.assert_allclose(list(row.scores), [s.score for s in alone.items], rtol=1e-9)


def test_the_campaign_list_equals_recommend_on_many_customers_of_a_larger_set(tmp_path: Path) -> None:
    publish_artifacts(build_synthetic_artifacts(n_items=3000, n_customers=400, factors=16,
                                                history_per_customer=12, copurchase_per_item=10), tmp_path / "a")
    text = ('[campaign]\nname = "many"\nkind = "suggest"\nchannel = "web"\nnum_suggestions = 8\n'
            '[contact]\nalias_prefix = "A"\n')
    frame, summary = _run(tmp_path, tmp_path / "a", text)
    assert summary["sent"] == 400
    engine = RecommendationEngine(LoadedModel(build_synthetic_artifacts(
        n_items=3000, n_customers=400, factors=16, history_per_customer=12, copurchase_per_item=10)), clock=_clock)
    for row in frame.itertuples():
        alone = engine.recommend(RecommendQuery(customer_id=row.customer_id, channel="web", num_items=8))
        assert list(row.items) == [s.item_id for s in alone.items], row.customer_id
        assert row.contact_alias == "A" + row.customer_id[1:]


# ------------------------------------------------------------------------------------------------------ launch

def test_who_should_hear_about_an_item_ranks_customers_by_affinity(tmp_path: Path, root: Path) -> None:
    text = _head("launch") + ('[target]\nitem = "D03"\ntop = 2\nweights = { cf = 1.0, due = 0.0, category = 0.0 }\n'
                              '[suppression]\nbought_within_days = 30\n')
    frame, summary = _run(tmp_path, root, text)
    # yoghurt sits with the dairy customers: C002 (0.94), C003 (0.87), then C006 and C005
    assert list(frame["customer_id"]) == ["C002", "C003"]
    assert list(frame["items"].iloc[0]) == ["D03"]
    assert frame["score"].iloc[0] >= frame["score"].iloc[1]
    assert summary["suppressed"]["bought_recently"] == 0
    # a category launch sends the category's best items for the customer and skips recent buyers of it
    text = _head("launch") + '[target]\ncategory = "dairy"\ntop = 10\n[suppression]\nbought_within_days = 30\n'
    frame, summary = _run(tmp_path, root, text)
    assert "C002" not in set(frame["customer_id"]) and "C003" not in set(frame["customer_id"])
    assert summary["suppressed"]["bought_recently"] == 2
    assert all(set(items) <= {"D01", "D02", "D03", "D04"} for items in frame["items"])


# ------------------------------------------------------------------------------------------------------- files

def test_files_open_with_pandas_and_pyarrow_and_the_summary_counts_per_rule(tmp_path: Path, root: Path) -> None:
    text = _head() + ('[[audience.rule]]\nname = "due soon"\n'
                      'due = { within_days = 30, rhythm = "own_or_item" }\n'
                      '[[audience.rule]]\nany = [ { segment = ["champion"] },\n        { last_store = ["S02"] } ]\n')
    result = run_campaign(_spec(tmp_path, text), root, tmp_path / "out", clock=_clock)
    table = pq.read_table(result.files["parquet"])
    assert table.num_rows == 2 and table.schema.field("items").type.value_type.equals("string")
    csv = pd.read_csv(result.files["csv"], dtype=str, keep_default_na=False)
    assert sorted(csv["customer_id"]) == ["C001", "C002"]
    assert csv.set_index("customer_id").loc["C002", "items"] == "D01|B01|D02"
    rules = {r["label"]: (r["line"], r["customers"]) for r in result.summary["rules"]}
    assert rules["due soon"] == (11, 4)   # the due key's line
    assert rules["segment in champion"] == (13, 1)
    assert result.files["chart"].stat().st_size > 1000
    assert "| due soon | 11 | 4 |" in result.files["summary_md"].read_text()


def test_the_cli_runs_a_campaign_and_names_the_line_of_a_bad_spec(tmp_path: Path, root: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    good = _spec(tmp_path, _head("suggest") + "[[audience.rule]]\nsegment = [\"loyal\"]\n")
    code = main(["campaign", "--spec", str(good), "--out", str(tmp_path / "cli"), "--artifacts", str(root),
                 "--no-progress"])
    assert code == 0 and "2 in the audience, 2 to send" in capsys.readouterr().out
    bad = _spec(tmp_path, _head("suggest") + "[[audience.rule]]\nsegment = [\"vip\"]\n", "bad.toml")
    code = main(["campaign", "--spec", str(bad), "--out", str(tmp_path / "cli"), "--artifacts", str(root)])
    err = capsys.readouterr().err
    assert code == 1 and "bad.toml:10: audience.rule[0].segment: unknown segment 'vip'" in err


# --------------------------------------------------------------------------------------------------- bad specs

@pytest.mark.parametrize(("body", "line", "says"), [
    ('[[audience.rule]]\nsegmnt = ["loyal"]\n', 10, "unknown field 'segmnt'; did you mean 'segment'?"),
    ('[[audience.rule]]\nsegment = ["vip"]\n', 10, "write one of: champion, loyal"),
    ('[[audience.rule]]\ndays_since_last_purchase = { min = 90, max = 30 }\n', 10,
     "impossible rule: min (90) is above max (30)"),
    ('[[audience.rule]]\nall = [ { segment = ["loyal"] },\n  { segment = ["lost"] } ]\n', 11,
     "these segment rules share no segment"),
    ('[[audience.rule]]\ndue = { within_days = 14, rhythm = "weekly" }\n', 10,
     "unknown rhythm 'weekly'; write one of: own, item, own_or_item"),
    ('[[audience.rule]]\nsegment = ["loyal"]\n', 3, "a rebuy campaign needs a due rule"),
    ('[suppression]\nmessaged_within = 7\n', 10, "did you mean 'messaged_within_days'?"),
])
def test_a_bad_spec_names_the_line_and_what_to_write_instead(body: str, line: int, says: str) -> None:
    text = _head() + body
    with pytest.raises(SpecError) as raised:
        parse_spec(text, source="s.toml")
    message = str(raised.value)
    assert message.startswith(f"s.toml:{line}: "), message
    assert says in message, message


def test_an_unknown_category_fails_at_run_time_naming_its_line(tmp_path: Path, root: Path) -> None:
    text = _head() + '[[audience.rule]]\ndue = { category = "dairy products", within_days = 14 }\n'
    with pytest.raises(SpecError, match=r"spec.toml:10: audience.rule\[0\].due: unknown category 'dairy products'; "
                                        r"the catalog's categories are: bakery, dairy, household"):
        run_campaign(_spec(tmp_path, text), root, tmp_path / "out", clock=_clock)


def test_the_model_says_when_today_is(tmp_path: Path, root: Path) -> None:
    """Without ``today`` the reference day is the engine's (the data's last day, aged by time in service)."""
    text = _head() + '[[audience.rule]]\ndue = { within_days = 0, max_overdue = 0.0 }\n'
    later = datetime(2026, 5, 11, 3, 0, tzinfo=UTC)  # 3 days later: C001's detergent is due that day
    result = run_campaign(_spec(tmp_path, text), root, tmp_path / "out", clock=lambda: later)
    assert list(pd.read_parquet(result.files["parquet"])["customer_id"]) == ["C001"]


# ------------------------------------------------------------------------------------- examples, message_sent

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "campaigns").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_spec_is_valid(path: Path) -> None:
    from recsvc_training.campaigns import load_spec

    spec = load_spec(path)
    assert spec.name == path.stem.replace("_", "-") and spec.audience is not None


def test_message_sent_rows_are_neither_trained_on_nor_quarantined(tmp_path: Path) -> None:
    from recsvc.config import TrainingSettings
    from recsvc_training.input.ingest import load_training_data

    data = tmp_path / "data"
    data.mkdir()
    (data / "events.csv").write_text(
        "timestamp,customer_id,item_id,event\n2026-05-01T10:00:00Z,C1,A,purchase\n"
        "2026-05-02T10:00:00Z,C1,A,message_sent\n2026-05-02T11:00:00Z,C1,A,wishlist\n")
    (data / "items.csv").write_text("item_id\nA\n")
    loaded = load_training_data(data, TrainingSettings(), tmp_path / "quarantine",
                                now=pd.Timestamp("2026-05-03", tz="UTC"))
    assert list(loaded.events["event"]) == ["purchase"]
    quarantined = pd.read_csv(tmp_path / "quarantine" / "events.quarantine.csv", dtype=str)
    assert list(quarantined["event"]) == ["wishlist"]       # only the unknown type, on its own source row
    assert list(quarantined["source_row"]) == ["3"]


def test_recorded_messages_feed_the_next_campaigns_frequency_cap(tmp_path: Path, root: Path) -> None:
    store = SqliteEventStore(tmp_path / "events.sqlite")
    text = _head("suggest") + '[[audience.rule]]\nsegment = ["loyal"]\n[suppression]\nmessaged_within_days = 3\n'
    first = run_campaign(_spec(tmp_path, text), root, tmp_path / "one", clock=_clock, event_store=store,
                         record_sent=True)
    assert first.summary["sent"] == 2
    assert {e.event for e in store.export(10**15)} == {"message_sent"}
    again = run_campaign(_spec(tmp_path, text), root, tmp_path / "two", clock=_clock, event_store=store)
    assert again.summary["sent"] == 0 and again.summary["suppressed"]["messaged_recently"] == 2
    store.close()


def test_bought_counts_live_purchases_after_the_cut_off_only(tmp_path: Path, root: Path) -> None:
    """The store keeps 90 days of events, so purchases the model already counted are in it too."""
    store = SqliteEventStore(tmp_path / "events.sqlite")
    before = ms_of_day(DATA_END_DAY - 3) + 3_600_000   # C002's milk, already in the model's history
    after = int(CREATED_AT.timestamp() * 1000) - 3_600_000
    store.append([EventRecord("old", "C002", "D01", "purchase", "store", "S02", "", 1.0, 1.1, before, before)])
    text = (_head("suggest").replace('alias_prefix = "LINE:"', "use_customer_id = true")
            + '[[audience.rule]]\nbought = { item = "D01", min_times = 2 }\n')
    frame, _ = _run(tmp_path, root, text, event_store=store)
    assert frame.empty
    store.append([EventRecord("new", "C002", "D01", "purchase", "web", "", "", 1.0, 1.1, after, after)])
    frame, _ = _run(tmp_path, root, text, event_store=store)
    assert list(frame["customer_id"]) == ["C002"]
    store.close()


def test_browsed_not_bought_and_attribute_rules(tmp_path: Path, root: Path) -> None:
    store = SqliteEventStore(tmp_path / "events.sqlite")
    now = int(CREATED_AT.timestamp() * 1000)
    day = 86_400_000
    store.append([
        EventRecord("v1", "APP-4", "B04", "view", "app", "", "", 1.0, math.nan, now - 2 * day, now),   # C004
        EventRecord("v2", "C005", "B04", "cart", "store", "", "", 1.0, math.nan, now - 2 * day, now),
        EventRecord("p2", "C005", "B04", "purchase", "store", "S01", "", 1.0, 3.5, now - day, now),   # bought it
        EventRecord("v3", "C003", "B04", "view", "web", "", "", 1.0, math.nan, now - 20 * day, now),  # too long ago
        EventRecord("v4", "C002", "D03", "view", "web", "", "", 1.0, math.nan, now - day, now),       # not bakery
    ])
    text = (_head("suggest").replace('alias_prefix = "LINE:"', "use_customer_id = true")
            + '[[audience.rule]]\nbrowsed_not_bought = { days = 7, category = "bakery" }\n')
    frame, _ = _run(tmp_path, root, text, event_store=store)
    assert list(frame["customer_id"]) == ["C004"]
    (tmp_path / "customers.csv").write_text("customer_id,age_group\nC001,30-39\nLOY-4,30-39\nC005,50-59\n")
    text = (_head("suggest").replace('alias_prefix = "LINE:"', "use_customer_id = true")
            + '[inputs]\ncustomers = "customers.csv"\n[[audience.rule]]\nattribute = { name = "age_group", '
              'values = ["30-39"] }\n')
    frame, _ = _run(tmp_path, root, text, event_store=store)
    assert sorted(frame["customer_id"]) == ["C001", "C004"]          # C004 through its loyalty alias
    with pytest.raises(SpecError, match=r"spec.toml:12: .*unknown customer attribute 'age'; the customers file "
                                        r"has: age_group"):
        _run(tmp_path, root, text.replace('name = "age_group"', 'name = "age"'))
    store.close()


def test_the_overlay_ignores_messages_sent(tmp_path: Path) -> None:
    """A message is no interest of the customer's: it must not show in their live activity (profile channels,
    live ranking) nor push their real events out of the overlay's per-customer memory."""
    from recsvc.events.overlay import EventOverlay

    model = LoadedModel(_campaign_set())
    store = SqliteEventStore(tmp_path / "events.sqlite")
    after = int(CREATED_AT.timestamp() * 1000)
    store.append([EventRecord("m", "C002", "D03", "message_sent", "line", "", "t", 1.0, math.nan, after, after),
                  EventRecord("v", "C002", "D03", "view", "web", "", "", 1.0, math.nan, after, after)])
    overlay = EventOverlay(store)
    overlay.poll_once()
    live = overlay.activity(model, "C002")
    assert live is not None and [e.event for e in live.events] == ["view"]
    store.close()


def test_rows_are_written_in_batches_that_add_up_to_whole_files(tmp_path: Path) -> None:
    from recsvc_training.campaigns.output import RowWriter

    writer = RowWriter(tmp_path, "b", batch=2)
    for i in range(5):
        writer.add(customer_id=f"C{i}", items=[f"I{i}", "X"], scores=[1.0, 0.5], reasons=["a", "b"], due_in_days=i)
    writer.close()
    table = pq.read_table(writer.paths["parquet"])
    assert table.column("customer_id").to_pylist() == [f"C{i}" for i in range(5)]
    assert table.column("items").to_pylist()[4] == ["I4", "X"]
    csv = pd.read_csv(writer.paths["csv"], dtype=str, keep_default_na=False)
    assert list(csv["customer_id"]) == [f"C{i}" for i in range(5)] and csv["reasons"].iloc[0] == "a | b"
    empty = RowWriter(tmp_path, "e")
    empty.close()
    assert pq.read_table(empty.paths["parquet"]).num_rows == 0
    assert list(pd.read_csv(empty.paths["csv"]).columns)[:2] == ["customer_id", "contact_alias"]


def test_a_given_today_moves_the_suggestions_reference_day_too(tmp_path: Path, root: Path) -> None:
    text = (_head("suggest").replace('channel = "store"', 'channel = "store"\ntoday = "2026-05-10"')
            .replace('alias_prefix = "LINE:"', "use_customer_id = true"))
    frame, _ = _run(tmp_path, root, text)
    later = datetime(2026, 5, 11, 3, 0, tzinfo=UTC)   # the engine's day is then 2026-05-10
    engine = RecommendationEngine(LoadedModel(_campaign_set()), clock=lambda: later)
    for row in frame.itertuples():
        alone = engine.recommend(RecommendQuery(customer_id=row.customer_id, channel="store", num_items=10))
        assert list(row.reasons) == [s.reason.text for s in alone.items]
    assert any("30 days ago" in r for r in frame.set_index("customer_id").loc["C001", "reasons"])  # 27 + 3
