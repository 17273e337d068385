"""Online metrics from attributed events: counts per group, rates with intervals, and arm comparisons.

Rates are per impression (an item shown in an answer): CTR = clicks / impressions, add-to-cart rate = carts /
impressions, conversion rate = attributed purchases / impressions. Each is treated as a binomial proportion:
its interval is Wilson's score interval, and two arms are compared by the difference of their rates with a
normal-approximation interval (unpooled standard errors). A difference whose interval holds 0 is *not yet
significant*; the impressions that would settle it are the per-arm sample size of a two-sided test at the
same level with 80 % power for the difference observed so far, minus what each arm has.

Events and answers are grouped by the answer they are credited to (its channel, store, policy, model version
and arm) and by the answer's UTC day, so a day's rates describe that day's answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from recsvc.days import day_of_ms
from recsvc.events.validation import CART, CLICK, IMPRESSION, PURCHASE
from recsvc.feedback.attribution import BY_WINDOW, Attribution
from recsvc.feedback.served import ServedRecommendation

#: What answers and events are grouped by (the labels of the Prometheus metrics too).
DIMENSIONS: Final = ("channel", "store_id", "policy", "model_version", "arm")
#: Normal quantile of the intervals (95 %) and of 80 % power.
Z_95: Final = 1.959963984540054
Z_POWER_80: Final = 0.8416212335729143


@dataclass
class OnlineCounts:
    """What one group of answers got: answers served, events credited to them, attributed revenue."""

    answers: int = 0
    impressions: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    purchases_by_window: int = 0
    revenue: float = 0.0

    def add(self, a: Attribution) -> None:
        kind = a.event.event
        if kind == IMPRESSION:
            self.impressions += 1
        elif kind == CLICK:
            self.clicks += 1
        elif kind == CART:
            self.carts += 1
        elif kind == PURCHASE:
            self.purchases += 1
            self.purchases_by_window += a.how == BY_WINDOW
            self.revenue += a.revenue

    def rate(self, numerator: str) -> Rate:
        return Rate(int(getattr(self, numerator)), self.impressions)


@dataclass(frozen=True)
class Rate:
    """``successes`` of ``trials``; ``value`` NaN with no trials."""

    successes: int
    trials: int

    @property
    def value(self) -> float:
        return self.successes / self.trials if self.trials else math.nan

    def interval(self, z: float = Z_95) -> tuple[float, float]:
        """Wilson's score interval ((nan, nan) with no trials)."""
        return wilson(self.successes, self.trials, z)


def wilson(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``k / n`` (stays inside [0, 1], sane at 0 and n)."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # exact ends at 0 and n (the formula leaves rounding dust there)
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


@dataclass(frozen=True)
class Comparison:
    """Arm ``b`` against arm ``a`` on one rate: the difference b - a, its interval, and the verdict."""

    metric: str
    a: str
    b: str
    rate_a: Rate
    rate_b: Rate
    difference: float
    low: float
    high: float
    #: Impressions each arm would need in all to settle the difference seen so far (0: settled or no data).
    needed_per_arm: int

    @property
    def significant(self) -> bool:
        return not (math.isnan(self.low) or self.low <= 0.0 <= self.high)

    @property
    def more_impressions(self) -> int:
        """How many more impressions, in total over the two arms, would settle it (0 when it is settled)."""
        if self.significant or self.needed_per_arm <= 0:
            return 0
        return (max(0, self.needed_per_arm - self.rate_a.trials) + max(0, self.needed_per_arm - self.rate_b.trials))

    def verdict(self) -> str:
        if self.rate_a.trials == 0 or self.rate_b.trials == 0:
            return "no impressions yet"
        if self.significant:
            return f"{self.b} {'higher' if self.difference > 0 else 'lower'} (significant at 95 %)"
        if self.needed_per_arm <= 0:
            return "no difference seen yet"
        return f"not yet significant: about {self.more_impressions:,} more impressions would settle it"


def compare(metric: str, a: str, rate_a: Rate, b: str, rate_b: Rate, z: float = Z_95,
            z_power: float = Z_POWER_80) -> Comparison:
    """``b`` against ``a`` (see the module docstring)."""
    pa, pb = rate_a.value, rate_b.value
    if rate_a.trials == 0 or rate_b.trials == 0:
        return Comparison(metric, a, b, rate_a, rate_b, math.nan, math.nan, math.nan, 0)
    diff = pb - pa
    se = math.sqrt(pa * (1 - pa) / rate_a.trials + pb * (1 - pb) / rate_b.trials)
    if se == 0:
        low = high = diff
    else:
        low, high = diff - z * se, diff + z * se
    needed = 0
    if diff != 0:
        mean = (pa + pb) / 2
        n = (z * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(pa * (1 - pa) + pb * (1 - pb))) ** 2
        needed = math.ceil(n / (diff * diff))
    return Comparison(metric, a, b, rate_a, rate_b, diff, low, high, needed)


Key = tuple[str, ...]


def dimension_values(served: ServedRecommendation, by: Sequence[str]) -> Key:
    return tuple(getattr(served, name) for name in by)


@dataclass
class OnlineMetrics:
    """Counts grouped by ``by`` (names from :data:`DIMENSIONS`), overall and per UTC day of the answer."""

    by: tuple[str, ...]
    groups: dict[Key, OnlineCounts] = field(default_factory=dict)
    daily: dict[tuple[int, Key], OnlineCounts] = field(default_factory=dict)

    def _at(self, served: ServedRecommendation) -> tuple[OnlineCounts, OnlineCounts]:
        key = dimension_values(served, self.by)
        day = day_of_ms(served.timestamp_ms)
        group = self.groups.setdefault(key, OnlineCounts())
        daily = self.daily.setdefault((day, key), OnlineCounts())
        return group, daily

    def add_served(self, served: ServedRecommendation) -> None:
        for counts in self._at(served):
            counts.answers += 1

    def add(self, attribution: Attribution) -> None:
        for counts in self._at(attribution.served):
            counts.add(attribution)


def online_metrics(served: Iterable[ServedRecommendation], attributed: Iterable[Attribution],
                   by: Sequence[str], since_ms: int = 0) -> OnlineMetrics:
    """Group answers served at or after ``since_ms`` and the events credited to them by ``by``."""
    unknown = sorted(set(by) - set(DIMENSIONS))
    if unknown:
        raise ValueError(f"unknown dimension(s) {', '.join(unknown)}; known: {', '.join(DIMENSIONS)}")
    out = OnlineMetrics(tuple(by))
    for answer in served:
        if answer.timestamp_ms >= since_ms:
            out.add_served(answer)
    for a in attributed:
        if a.served.timestamp_ms >= since_ms:
            out.add(a)
    return out
