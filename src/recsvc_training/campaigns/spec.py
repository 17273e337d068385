"""A campaign spec (TOML): what it says, checked once, with every mistake named by its line.

A spec names the campaign (kind, channel), its audience as rules over the customer profile, its suppression
and where the contact alias of the channel comes from. The whole format, with every field and its default,
is the README section "Campaigns" and ``examples/campaigns/*.toml``. :func:`load_spec` parses and validates
it; a bad spec raises :class:`SpecError` whose message names the file and line, what is wrong and what to
write instead, e.g. ``spec.toml:12: audience.rule[1].segment: unknown segment 'vip'; write one of:
champion, loyal, ...``.

Checks that need the model (an item or category the catalog lacks, a channel the model never saw) happen
when the campaign runs (:mod:`.run`) and name the line the same way: every rule keeps its line.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsvc.days import day_of_iso
from recsvc.ids import clean_channel, clean_id
from recsvc_training.models.rfm import RFM_SEGMENTS

#: Campaign kinds: the channel's suggestions for every audience member; a repurchase reminder (the due item,
#: its add-ons, optionally the suggestions); a launch (who should hear about one item or category).
KINDS = ("suggest", "rebuy", "launch")
#: How a due rule times a customer's next purchase: their own rhythm only, the item's typical interval only,
#: or their own when they bought it at least twice and the item's otherwise.
RHYTHMS = ("own", "item", "own_or_item")
BROWSE_EVENTS = ("view", "cart")
COMPOSITES = ("all", "any", "not")
LEAVES = ("segment", "channels_used", "last_channel", "last_store", "days_since_last_purchase", "bought", "due",
          "browsed_not_bought", "attribute")
RULE_KEYS = (*COMPOSITES, *LEAVES, "name")

_TOP = ("campaign", "audience", "suppression", "contact", "target", "inputs")
_CAMPAIGN = ("name", "kind", "channel", "store_id", "num_suggestions", "num_addons", "first_purchase_offer",
             "today")
_AUDIENCE = ("match", "rule")
_SUPPRESSION = ("bought_since_due", "bought_within_days", "messaged_within_days", "sent_log", "opt_out",
                "use_event_store")
_CONTACT = ("alias_prefix", "use_customer_id")
_TARGET = ("item", "category", "top", "weights")
_INPUTS = ("customers",)
_WEIGHTS = ("cf", "due", "category")
_LEAF_FIELDS: dict[str, tuple[str, ...]] = {
    "days_since_last_purchase": ("min", "max"),
    "bought": ("item", "category", "min_times"),
    "due": ("item", "category", "within_days", "rhythm", "max_overdue"),
    "browsed_not_bought": ("days", "events", "item", "category"),
    "attribute": ("name", "values"),
}


class SpecError(ValueError):
    """A campaign spec that cannot run; the message names the file, the line and what to write instead."""


@dataclass(frozen=True)
class Rule:
    """One node of the audience: a composite (``all``/``any`` of ``children``, ``not`` of one) or a leaf.

    ``kind`` is one of :data:`COMPOSITES` or :data:`LEAVES`; ``args`` the leaf's fields (validated);
    ``path`` the dotted name in the spec (``audience.rule[0].due``) and ``line`` its line, for messages and
    the summary's audience size per rule.
    """

    kind: str
    path: str
    line: int
    name: str = ""
    args: Mapping[str, Any] = field(default_factory=dict)
    children: tuple[Rule, ...] = ()

    def label(self) -> str:
        """A short human label: the rule's ``name``, else its kind and fields (``due(category=hygiene, ...)``)."""
        if self.name:
            return self.name
        if self.kind in ("all", "any"):
            return f"{self.kind}({', '.join(c.label() for c in self.children)})"
        if self.kind == "not":
            return f"not {self.children[0].label()}"
        if self.kind in ("segment", "channels_used", "last_channel", "last_store"):
            return f"{self.kind} in {', '.join(self.args['values'])}"
        parts = [f"{k}={v}" for k, v in self.args.items() if v not in (None, "", ())]
        return f"{self.kind}({', '.join(parts)})"

    def walk(self) -> list[Rule]:
        """This rule and every rule below it, depth first."""
        return [self, *(r for c in self.children for r in c.walk())]


@dataclass(frozen=True)
class Target:
    """A launch's item or category, how many customers to pick and the weights of the affinity score."""

    item: str
    category: str
    top: int
    weights: Mapping[str, float]
    line: int


@dataclass(frozen=True)
class CampaignSpec:
    """A validated campaign spec; relative file paths are resolved against the spec's folder."""

    name: str
    kind: str
    channel: str
    store_id: str
    num_suggestions: int
    num_addons: int
    first_purchase_offer: bool
    today: int | None
    audience: Rule | None
    target: Target | None
    bought_since_due: bool
    bought_within_days: int
    messaged_within_days: int
    sent_log: Path | None
    opt_out: Path | None
    use_event_store: bool
    alias_prefix: str
    use_customer_id: bool
    customers_file: Path | None
    source: str = "<spec>"
    lines: Mapping[str, int] = field(default_factory=dict)

    def due_rules(self) -> list[Rule]:
        """The due rules of the audience that select customers (not under a ``not``), in spec order."""
        def positive(rule: Rule) -> list[Rule]:
            if rule.kind == "not":
                return []
            return [rule] if rule.kind == "due" else [r for c in rule.children for r in positive(c)]

        return positive(self.audience) if self.audience is not None else []

    def error(self, path: str, message: str) -> SpecError:
        """A :class:`SpecError` for the field ``path`` (dotted), naming its line when known."""
        return SpecError(f"{self.source}:{self.lines.get(path, _nearest_line(self.lines, path))}: {path}: {message}")


# --- where each field is -------------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(#.*)?$")
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|#.*$|([A-Za-z0-9_\-]+)\s*=|[\[\]{}]')


def field_lines(text: str) -> dict[str, int]:
    """Line (1-based) of each table and key, by dotted path: ``campaign.kind``, ``audience.rule[1]``,
    ``audience.rule[1].due``; keys inside inline tables as ``audience.rule[1].due.rhythm`` and, inside an
    array of inline tables, also with the element: ``audience.rule[0].any[1].segment``. First occurrence wins.
    Used only to point messages at a line."""
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    table, top_key, depth, element, array_top = "", "", 0, -1, False
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(raw)
        if depth == 0 and header:
            name = header.group(2).replace(" ", "")
            if header.group(1) == "[[":
                counts[name] = counts.get(name, 0) + 1
                name = f"{name}[{counts[name] - 1}]"
            table, top_key = name, ""
            lines.setdefault(table, number)
            continue
        for token in _TOKEN.finditer(raw):
            text_ = token.group(0)
            if token.group(1):
                key = token.group(1)
                if depth == 0:
                    top_key = f"{table}.{key}" if table else key
                    element, array_top = -1, False
                    lines.setdefault(top_key, number)
                elif top_key:
                    lines.setdefault(f"{top_key}.{key}", number)
                    if array_top and element >= 0:
                        lines.setdefault(f"{top_key}[{element}].{key}", number)
            elif text_ in "[{":
                if depth == 0 and text_ == "[":
                    array_top = True
                if depth == 1 and array_top and text_ == "{":
                    element += 1
                depth += 1
            elif text_ in "]}":
                depth = max(0, depth - 1)
    return lines


def _nearest_line(lines: Mapping[str, int], path: str) -> int:
    """The line of ``path`` or of the nearest enclosing field that has one (1 when none does)."""
    probe = path
    while probe:
        squashed = re.sub(r"\[\d+\](?=\.)", "", probe.split(".", 2)[-1])
        for candidate in (probe, ".".join([*probe.split(".", 2)[:-1], squashed])):
            if candidate in lines:
                return lines[candidate]
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return 1


# --- parsing -------------------------------------------------------------------------------------------------

class _Checker:
    """Reads one parsed TOML document field by field, raising :class:`SpecError` at the first mistake."""

    def __init__(self, source: str, lines: Mapping[str, int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, path: str, message: str) -> SpecError:
        return SpecError(f"{self.source}:{self.lines.get(path, _nearest_line(self.lines, path))}: {path}: {message}")

    def known(self, table: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
        for key in table:
            if key not in allowed:
                where = f"{path}.{key}" if path else key
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.fail(where, f"unknown field {key!r}; {hint}write one of: {', '.join(allowed)}")

    def table(self, doc: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a table ([{path}] or {key} = {{ ... }}), got {type(value).__name__}")
        return value

    def text(self, table: Mapping[str, Any], key: str, path: str, default: str = "") -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self.fail(f"{path}.{key}", f"expected a string in quotes, got {value!r}")
        return value

    def integer(self, table: Mapping[str, Any], key: str, path: str, default: int, low: int = 0,
                high: int = 10**9) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{path}.{key}", f"expected a whole number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(f"{path}.{key}", f"must be between {low} and {high}, got {value}")
        return value

    def number(self, table: Mapping[str, Any], key: str, path: str, default: float, low: float = 0.0) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"{path}.{key}", f"expected a number, got {value!r}")
        if value < low:
            raise self.fail(f"{path}.{key}", f"must be at least {low:g}, got {value}")
        return float(value)

    def flag(self, table: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{path}.{key}", f"expected true or false, got {value!r}")
        return value

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(path, f"expected a non-empty list of names, e.g. [\"a\", \"b\"], got {value!r}")
        return tuple(v.strip() for v in value)

    def rule(self, value: Any, path: str) -> Rule:
        line = self.lines.get(path, _nearest_line(self.lines, path))
        if not isinstance(value, Mapping):
            raise self.fail(path, "a rule is a table with one of: " + ", ".join((*COMPOSITES, *LEAVES)))
        self.known(value, RULE_KEYS, path)
        name = self.text(value, "name", path)
        kinds = [k for k in value if k != "name"]
        if len(kinds) != 1:
            raise self.fail(path, f"a rule has exactly one of {', '.join((*COMPOSITES, *LEAVES))} (found "
                                  f"{', '.join(kinds) or 'none'}); combine several with all = [ ... ] or "
                                  "any = [ ... ]")
        kind = kinds[0]
        body = value[kind]
        here = f"{path}.{kind}"
        line = self.lines.get(here, line)
        if kind in ("all", "any"):
            if not isinstance(body, list) or not body:
                raise self.fail(here, f"{kind} needs a non-empty list of rules, e.g. {kind} = [ {{ segment = "
                                      "[\"loyal\"] }, { due = { within_days = 14 } } ]")
            children = tuple(self.rule(child, f"{here}[{i}]") for i, child in enumerate(body))
            return Rule(kind, here, line, name, children=children)
        if kind == "not":
            return Rule(kind, here, line, name, children=(self.rule(body, here),))
        return Rule(kind, here, line, name, args=self.leaf(kind, body, here))

    def leaf(self, kind: str, body: Any, path: str) -> dict[str, Any]:
        if kind in ("segment", "channels_used", "last_channel", "last_store"):
            values = self.strings(body, path)
            if kind == "segment":
                for v in values:
                    if v not in RFM_SEGMENTS:
                        close = difflib.get_close_matches(v, RFM_SEGMENTS, n=1)
                        hint = f"did you mean {close[0]!r}? " if close else ""
                        raise self.fail(path, f"unknown segment {v!r}; {hint}write one of: "
                                              f"{', '.join(RFM_SEGMENTS)}")
            clean = clean_channel if kind in ("channels_used", "last_channel") else clean_id
            return {"values": tuple(clean(v) for v in values)}
        if not isinstance(body, Mapping):
            example = ", ".join(f"{f} = ..." for f in _LEAF_FIELDS[kind][:2])
            raise self.fail(path, f"{kind} takes a table, e.g. {kind} = {{ {example} }}")
        self.known(body, _LEAF_FIELDS[kind], path)
        if kind == "days_since_last_purchase":
            low = self.integer(body, "min", path, 0)
            high = self.integer(body, "max", path, 10**6)
            if "min" not in body and "max" not in body:
                raise self.fail(path, "give min, max or both, e.g. days_since_last_purchase = { min = 30, max = 90 }")
            if low > high:
                raise self.fail(path, f"impossible rule: min ({low}) is above max ({high}); no customer can match. "
                                      f"Write min <= max, e.g. {{ min = {high}, max = {low} }}")
            return {"min": low, "max": high}
        if kind == "attribute":
            name = self.text(body, "name", path).strip()
            if not name:
                raise self.fail(path, "attribute needs name = \"<column of the customers table>\"")
            return {"name": name, "values": self.strings(body.get("values"), f"{path}.values")}
        item = clean_id(self.text(body, "item", path))
        category = self.text(body, "category", path).strip()
        if item and category:
            raise self.fail(path, "give item or category, not both (write two rules joined by any = [ ... ])")
        if kind == "bought":
            if not item and not category:
                raise self.fail(path, "bought needs item = \"...\" or category = \"...\"")
            return {"item": item, "category": category, "min_times": self.integer(body, "min_times", path, 1, low=1)}
        if kind == "due":
            rhythm = self.text(body, "rhythm", path, "own")
            if rhythm not in RHYTHMS:
                raise self.fail(f"{path}.rhythm", f"unknown rhythm {rhythm!r}; write one of: {', '.join(RHYTHMS)}")
            within = self.integer(body, "within_days", path, 14, low=0, high=3650)
            overdue = self.number(body, "max_overdue", path, 0.5)
            return {"item": item, "category": category, "within_days": within, "rhythm": rhythm,
                    "max_overdue": overdue}
        # browsed_not_bought
        days = self.integer(body, "days", path, 7, low=1, high=3650)
        events = self.strings(body.get("events", list(BROWSE_EVENTS)), f"{path}.events")
        for e in events:
            if e not in BROWSE_EVENTS:
                raise self.fail(f"{path}.events", f"unknown event {e!r}; write one or both of: "
                                                  f"{', '.join(BROWSE_EVENTS)}")
        return {"days": days, "events": events, "item": item, "category": category}


def parse_spec(text: str, source: str = "<spec>", base_dir: Path | None = None) -> CampaignSpec:
    """Parse and validate a spec's TOML text (see the module docstring); paths resolve against ``base_dir``.

    Raises
    ------
    SpecError
        Invalid TOML, an unknown field or segment, a wrong type, or an impossible rule; the message names the
        line and what to write instead.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML: {exc}") from None
    lines = field_lines(text)
    c = _Checker(source, lines)
    c.known(doc, _TOP, "")
    campaign = c.table(doc, "campaign", "campaign")
    c.known(campaign, _CAMPAIGN, "campaign")
    name = c.text(campaign, "name", "campaign").strip()
    if not name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise c.fail("campaign.name", f"required: a file-safe name (letters, digits, . _ -), got {name!r}")
    kind = c.text(campaign, "kind", "campaign", "suggest")
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise c.fail("campaign.kind", f"unknown kind {kind!r}; {hint}write one of: {', '.join(KINDS)}")
    channel = clean_channel(c.text(campaign, "channel", "campaign"))
    if not channel:
        raise c.fail("campaign.channel", "required: the channel the message goes out on and whose ranking it uses, "
                                         "e.g. channel = \"line\"")
    today_text = c.text(campaign, "today", "campaign")
    today: int | None = None
    if today_text:
        try:
            today = day_of_iso(today_text)
        except ValueError:
            raise c.fail("campaign.today", f"expected a date YYYY-MM-DD, got {today_text!r}") from None
    num_suggestions = c.integer(campaign, "num_suggestions", "campaign", 10 if kind == "suggest" else 0, high=100)
    num_addons = c.integer(campaign, "num_addons", "campaign", 3, high=20)
    first_purchase_offer = c.flag(campaign, "first_purchase_offer", "campaign", False)

    audience_table = c.table(doc, "audience", "audience")
    c.known(audience_table, _AUDIENCE, "audience")
    match = c.text(audience_table, "match", "audience", "all")
    if match not in ("all", "any"):
        raise c.fail("audience.match", f"write \"all\" (every rule holds) or \"any\" (at least one), got {match!r}")
    raw_rules = audience_table.get("rule", [])
    if isinstance(raw_rules, Mapping):
        raw_rules = [raw_rules]
    if not isinstance(raw_rules, list):
        raise c.fail("audience.rule", "write each rule as a [[audience.rule]] table")
    rules = tuple(c.rule(r, f"audience.rule[{i}]") for i, r in enumerate(raw_rules))
    audience = (None if not rules else rules[0] if len(rules) == 1
                else Rule(match, "audience", lines.get("audience", rules[0].line), children=rules))

    suppression = c.table(doc, "suppression", "suppression")
    c.known(suppression, _SUPPRESSION, "suppression")
    contact = c.table(doc, "contact", "contact")
    c.known(contact, _CONTACT, "contact")
    inputs = c.table(doc, "inputs", "inputs")
    c.known(inputs, _INPUTS, "inputs")
    base = base_dir or Path(".")

    def path_of(table: Mapping[str, Any], key: str, where: str) -> Path | None:
        value = c.text(table, key, where).strip()
        return (base / value) if value else None

    target: Target | None = None
    if "target" in doc:
        t = c.table(doc, "target", "target")
        c.known(t, _TARGET, "target")
        weights_table = c.table(t, "weights", "target.weights")
        c.known(weights_table, _WEIGHTS, "target.weights")
        weights = {"cf": 0.6, "due": 0.25, "category": 0.15}
        weights.update({k: c.number(weights_table, k, "target.weights", weights[k]) for k in weights_table})
        if sum(weights.values()) <= 0:
            raise c.fail("target.weights", "impossible: every weight is 0; give at least one a positive weight")
        item, category = clean_id(c.text(t, "item", "target")), c.text(t, "category", "target").strip()
        if bool(item) == bool(category):
            raise c.fail("target", "give exactly one of item = \"...\" or category = \"...\"")
        target = Target(item, category, c.integer(t, "top", "target", 1000, low=1), weights,
                        lines.get("target", 1))
    if kind == "launch" and target is None:
        raise c.fail("campaign.kind", "a launch needs a [target] table with item = \"...\" or category = \"...\"")
    if kind != "launch" and target is not None:
        raise c.fail("target", f"[target] is for kind = \"launch\"; this campaign is {kind!r} (remove [target] or "
                               "write kind = \"launch\")")

    spec = CampaignSpec(
        name=name, kind=kind, channel=channel, store_id=clean_id(c.text(campaign, "store_id", "campaign")),
        num_suggestions=num_suggestions, num_addons=num_addons, first_purchase_offer=first_purchase_offer,
        today=today, audience=audience, target=target,
        bought_since_due=c.flag(suppression, "bought_since_due", "suppression", True),
        bought_within_days=c.integer(suppression, "bought_within_days", "suppression", 0, high=3650),
        messaged_within_days=c.integer(suppression, "messaged_within_days", "suppression", 0, high=3650),
        sent_log=path_of(suppression, "sent_log", "suppression"),
        opt_out=path_of(suppression, "opt_out", "suppression"),
        use_event_store=c.flag(suppression, "use_event_store", "suppression", True),
        alias_prefix=c.text(contact, "alias_prefix", "contact"),
        use_customer_id=c.flag(contact, "use_customer_id", "contact", False),
        customers_file=path_of(inputs, "customers", "inputs"), source=source, lines=lines)
    _check_whole(spec, c)
    return spec


def _check_whole(spec: CampaignSpec, c: _Checker) -> None:
    """Rules that span fields: what a kind needs, and combinations no customer can satisfy."""
    for rule in spec.audience.walk() if spec.audience is not None else ():
        if rule.kind != "all":
            continue
        leaves = {r.kind: r for r in rule.children}
        if spec.first_purchase_offer and any(k in leaves for k in ("due", "bought", "days_since_last_purchase")):
            bad = next(k for k in ("due", "bought", "days_since_last_purchase") if k in leaves)
            raise c.fail(leaves[bad].path, f"impossible rule: a first-purchase offer goes to customers who never "
                                           f"bought, and {bad} selects buyers; remove it or the offer")
        seg = [r for r in rule.children if r.kind == "segment"]
        if len(seg) > 1 and not set.intersection(*(set(r.args["values"]) for r in seg)):
            raise c.fail(seg[1].path, "impossible rule: these segment rules share no segment and a customer has "
                                      "one; join them with any = [ ... ] instead")
    if spec.first_purchase_offer and spec.audience is not None and spec.audience.kind in (
            "due", "bought", "days_since_last_purchase"):
        raise c.fail(spec.audience.path, f"impossible rule: a first-purchase offer goes to customers who never "
                                         f"bought, and {spec.audience.kind} selects buyers")
    if spec.kind == "rebuy" and not spec.due_rules():
        raise c.fail("campaign.kind", "a rebuy campaign needs a due rule in its audience, e.g. "
                                      "[[audience.rule]] due = { category = \"...\", within_days = 14 }")
    if spec.first_purchase_offer and spec.kind == "rebuy":
        raise c.fail("campaign.first_purchase_offer", "impossible: a rebuy reminder goes to buyers and a "
                                                      "first-purchase offer never does; remove one of them")
    if not spec.alias_prefix and not spec.use_customer_id:
        raise c.fail("contact", "say where the contact comes from: alias_prefix = \"LINE:\" (the identity "
                                "links whose alias starts with it) or use_customer_id = true")


def load_spec(path: str | Path) -> CampaignSpec:
    """Read and validate the spec file ``path`` (see :func:`parse_spec`); relative paths in it are relative to
    its folder. Raises :class:`SpecError` (bad spec) or ``FileNotFoundError``."""
    path = Path(path)
    return parse_spec(path.read_text(encoding="utf-8"), source=str(path), base_dir=path.parent)
