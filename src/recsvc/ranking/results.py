"""What the engine is asked and what it answers: frozen value objects, no ranking code.

Queries clean what they are given once, at construction, by the rules the trainer used on its input
(:mod:`recsvc.ids`): ids lose surrounding whitespace (``"C001223 "`` is ``C001223``) and channel names are
trimmed and lower-cased (``WEB`` is ``web``). Validation (limits, required fields) is the engine's public
methods' job; the servicer only copies message fields in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from recsvc.ids import clean_channel, clean_id, clean_ids
from recsvc.ranking.model import LoadedModel
from recsvc.ranking.reasons import Reason

if TYPE_CHECKING:  # the overlay imports the model; queries only carry its value object
    from recsvc.events.overlay import CustomerActivity

#: Policy names reported with every recommendation (``RecommendResponse.policy``): the ranking path.
POLICY_BLEND = "blend"          # known customer: every source, fused by weighted reciprocal rank
POLICY_LEARNED = "learned"      # known customer: every source's candidates ranked by the trained ranker
POLICY_CONTEXT = "context"      # unknown customer with known cart/context items: co-purchase + popularity
POLICY_POPULAR = "popular"      # unknown customer, nothing to go on: popularity
# also: "coldstart" (a customer the trainer marked cold: the LightFM source joins the blend; see
# recsvc.ranking.policies) and the ``name`` of a configured channel policy.

#: What filled an answer the filters left shorter than asked (``fallback`` of a result; "" = nothing needed).
FALLBACK_POPULAR = "popular"                          # popular items the filters allow (in stock here)
FALLBACK_IGNORING_STOCK = "popular_ignoring_stock"    # the channel's popular items, stock not checked


@dataclass(frozen=True)
class RecommendQuery:
    """One Recommend request, as the servicer (or a test) hands it to the engine.

    ``customer_id`` may be a customer id, any alias, or empty (anonymous). ``channel`` is required;
    ``num_items`` 0 means the default. Id lists may be any sequence; they are stored as cleaned tuples.
    ``live`` is what the customer did since the model's cut-off (the servicer looks it up; None: the model
    alone): see :mod:`recsvc.ranking.live`.
    """

    customer_id: str = ""
    channel: str = ""
    store_id: str = ""
    num_items: int = 0
    exclude_item_ids: Sequence[str] = ()
    context_item_ids: Sequence[str] = ()
    include_categories: Sequence[str] = ()
    exclude_categories: Sequence[str] = ()
    live: CustomerActivity | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "customer_id", clean_id(self.customer_id))
        object.__setattr__(self, "channel", clean_channel(self.channel))
        object.__setattr__(self, "store_id", clean_id(self.store_id))
        for name in ("exclude_item_ids", "context_item_ids"):
            object.__setattr__(self, name, tuple(clean_ids(getattr(self, name))))
        for name in ("include_categories", "exclude_categories"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True)
class Suggestion:
    """One suggested item; ``score`` is higher for better items and comparable only within one response."""

    item_id: str
    score: float
    title: str
    category: str
    reason: Reason


@dataclass(frozen=True)
class RecommendResult:
    """Suggestions for one customer, best first, and how they were made.

    ``resolved_customer_id`` is the customer an alias resolved to (empty when unknown); ``policy`` names the
    ranking path (see the ``POLICY_*`` names); ``unknown_item_ids`` lists context and exclude ids the model
    does not know and ``unknown_categories`` the filter categories no item has (both ignored, not an
    error); ``unknown_channel`` is True when the model has no data for the channel (only items sold on every
    channel are suggested); ``fallback`` says what filled an answer the filters left short (``FALLBACK_*``,
    "" when nothing did) and ``notices`` say in words what a caller may want to know about this answer.
    """

    items: tuple[Suggestion, ...]
    model_version: str
    resolved_customer_id: str
    known_customer: bool
    policy: str
    unknown_item_ids: tuple[str, ...] = ()
    unknown_categories: tuple[str, ...] = ()
    unknown_channel: bool = False
    fallback: str = ""
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class BundleQuery:
    """One RecommendBundle request: the basket (1..max_context_items ids) and optional channel/store.

    Bundles are about the basket: ``customer_id`` only matters through ``live`` (the customer's events since
    the model's cut-off, looked up by the servicer), whose purchases not due again are never suggested.
    """

    basket_item_ids: Sequence[str] = ()
    customer_id: str = ""
    channel: str = ""
    store_id: str = ""
    num_items: int = 0
    bundle_size: int = 0
    live: CustomerActivity | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "basket_item_ids", tuple(clean_ids(self.basket_item_ids)))
        object.__setattr__(self, "customer_id", clean_id(self.customer_id))
        object.__setattr__(self, "channel", clean_channel(self.channel))
        object.__setattr__(self, "store_id", clean_id(self.store_id))


@dataclass(frozen=True)
class Bundle:
    """A small set that goes together: the basket item it is built around and the items to add to it.

    ``items`` are in pick order; each item's score is its co-purchase with the anchor plus the items picked
    before it (so a later item can score higher), and ``score`` is their sum. Items filled from the
    completions when co-purchase runs out score just below the item before them and add nothing to ``score``.
    """

    anchor_item_id: str
    items: tuple[Suggestion, ...]
    score: float


@dataclass(frozen=True)
class BundleResult:
    """Completions of a basket (never items already in it), the bundle (``None`` when no basket item is
    known), the basket ids the model does not know, and (as in :class:`RecommendResult`) whether the channel
    was unknown, what filled a short list and notices in words."""

    items: tuple[Suggestion, ...]
    bundle: Bundle | None
    model_version: str
    unknown_item_ids: tuple[str, ...] = ()
    unknown_channel: bool = False
    fallback: str = ""
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimilarResult:
    """Items similar to one item, best first; ``unknown_channel`` as in :class:`RecommendResult`."""

    items: tuple[Suggestion, ...]
    model_version: str
    unknown_channel: bool = False
    notices: tuple[str, ...] = ()


def suggestions(model: LoadedModel, rows: np.ndarray, scores: np.ndarray, reasons: Sequence[Reason]
                ) -> list[Suggestion]:
    """Suggestions for item ``rows`` (ids, titles and categories read in one gather each)."""
    rows = np.asarray(rows, dtype=np.int64)
    return [Suggestion(item_id=item_id, score=score, title=title, category=category, reason=reason)
            for item_id, score, title, category, reason in zip(
                model.items.ids[rows].tolist(), np.asarray(scores, dtype=np.float64).tolist(),
                model.item_titles[rows].tolist(), model.item_categories[rows].tolist(), reasons, strict=True)]
