"""The optional customer summary the profile shows: RFM scores and segment, net spend, channels used.

=================  ==========================  =============================================
array              dtype, shape                meaning
=================  ==========================  =============================================
rfm_scores         int8, [n_customers, 3]      recency, frequency, monetary score 1..5
                                               (0 = no purchase); rule in
                                               ``recsvc_training.models.rfm``
rfm_segment        int8, [n_customers]         index into ``extra.rfm_segments`` (-1 = none)
cust_monetary      float32, [n_customers]      net spend, returns subtracted
cust_channels      bool, [n_customers, n_ch]   any event on channel ``c``
=================  ==========================  =============================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsvc.artifacts.part import Part, SetContext, array
from recsvc.artifacts.parts.customers import Customers

RFM_SCORES = "rfm_scores"
RFM_SEGMENT = "rfm_segment"
CUST_MONETARY = "cust_monetary"
CUST_CHANNELS = "cust_channels"
#: ``extra`` key: segment names, indexed by ``rfm_segment``.
SEGMENTS_EXTRA = "rfm_segments"


@dataclass(frozen=True, eq=False)
class CustomerSummary(Part):
    NAME = "customer_summary"
    REQUIRED = False
    ARRAYS = (RFM_SCORES, RFM_SEGMENT, CUST_MONETARY, CUST_CHANNELS)
    EXTRA_KEYS = (SEGMENTS_EXTRA,)

    rfm_scores: np.ndarray
    rfm_segment: np.ndarray
    monetary: np.ndarray
    channels: np.ndarray
    segment_names: tuple[str, ...] = ()

    def segment_name(self, segment: int) -> str:
        """Name of segment index ``segment`` (its number when the set names fewer segments)."""
        return self.segment_names[segment] if 0 <= segment < len(self.segment_names) else str(segment)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {RFM_SCORES: self.rfm_scores, RFM_SEGMENT: self.rfm_segment, CUST_MONETARY: self.monetary,
                CUST_CHANNELS: self.channels}

    def to_extra(self) -> dict[str, Any]:
        return {SEGMENTS_EXTRA: list(self.segment_names)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], ctx: SetContext) -> CustomerSummary:
        n = ctx.get(Customers).n_customers
        return cls(array(arrays, RFM_SCORES, "iu", (n, 3)), array(arrays, RFM_SEGMENT, "iu", (n,)),
                   array(arrays, CUST_MONETARY, "f", (n,)), array(arrays, CUST_CHANNELS, "b", (n, ctx.n_channels)),
                   tuple(str(s) for s in ctx.extra.get(SEGMENTS_EXTRA, ())))
