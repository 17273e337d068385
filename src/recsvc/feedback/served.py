"""One served answer as the log keeps it: the value the event stores write and the attribution reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

#: ``kind`` of an answer of Recommend and of RecommendBundle.
RECOMMEND: Final = "recommend"
BUNDLE: Final = "bundle"
_FIELD_SEPARATOR: Final = "\x1f"
_ITEM_SEPARATOR: Final = "\x1e"


@dataclass(frozen=True)
class ServedRecommendation:
    """What one Recommend / RecommendBundle answer was, under its ``recommendation_id``.

    ``customer_id`` is the resolved customer (the model's id, or the id live links resolve an unknown one to;
    "" for an anonymous request); ``items`` are the suggested item ids in the order shown, so an item's
    position is its index + 1 (a bundle answer lists its completions, then the bundle's items not among them).
    ``timestamp_ms`` is the server's clock when it answered (ms since 1970 UTC).
    """

    recommendation_id: str
    timestamp_ms: int
    kind: str
    model_version: str
    policy: str
    arm: str
    channel: str
    store_id: str
    customer_id: str
    items: tuple[str, ...]

    def position(self, item_id: str) -> int:
        """1-based position of ``item_id`` in the answer; 0 when it was not suggested."""
        try:
            return self.items.index(item_id) + 1
        except ValueError:
            return 0

    def encode(self) -> str:
        """The answer as one string for a store: fields joined by a unit separator (a tenth of JSON's cost on
        the log's writer thread); JSON when some id holds a separator character."""
        fields = (self.recommendation_id, str(self.timestamp_ms), self.kind, self.model_version, self.policy,
                  self.arm, self.channel, self.store_id, self.customer_id, _ITEM_SEPARATOR.join(self.items))
        text = _FIELD_SEPARATOR.join(fields)
        if (text.count(_FIELD_SEPARATOR) != len(fields) - 1 or text.startswith("[")
                or fields[-1].count(_ITEM_SEPARATOR) != max(0, len(self.items) - 1)):
            return json.dumps([self.recommendation_id, self.timestamp_ms, self.kind, self.model_version,
                               self.policy, self.arm, self.channel, self.store_id, self.customer_id,
                               list(self.items)], separators=(",", ":"))
        return text

    @classmethod
    def decode(cls, payload: str | bytes) -> ServedRecommendation:
        text = payload.decode() if isinstance(payload, bytes) else payload
        if text.startswith("["):
            rid, ts, kind, version, policy, arm, channel, store, customer, items = json.loads(text)
            return cls(str(rid), int(ts), str(kind), str(version), str(policy), str(arm), str(channel), str(store),
                       str(customer), tuple(str(i) for i in items))
        rid, ts, kind, version, policy, arm, channel, store, customer, joined = text.split(_FIELD_SEPARATOR)
        return cls(rid, int(ts), kind, version, policy, arm, channel, store, customer,
                   tuple(joined.split(_ITEM_SEPARATOR)) if joined else ())
