from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReasonKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_KIND_UNSPECIFIED: _ClassVar[ReasonKind]
    REASON_KIND_BOUGHT_BEFORE: _ClassVar[ReasonKind]
    REASON_KIND_BOUGHT_TOGETHER: _ClassVar[ReasonKind]
    REASON_KIND_CUSTOMERS_LIKE_YOU: _ClassVar[ReasonKind]
    REASON_KIND_SIMILAR_ITEM: _ClassVar[ReasonKind]
    REASON_KIND_POPULAR_ON_CHANNEL: _ClassVar[ReasonKind]
    REASON_KIND_POPULAR_IN_STORE: _ClassVar[ReasonKind]
    REASON_KIND_POPULAR: _ClassVar[ReasonKind]
REASON_KIND_UNSPECIFIED: ReasonKind
REASON_KIND_BOUGHT_BEFORE: ReasonKind
REASON_KIND_BOUGHT_TOGETHER: ReasonKind
REASON_KIND_CUSTOMERS_LIKE_YOU: ReasonKind
REASON_KIND_SIMILAR_ITEM: ReasonKind
REASON_KIND_POPULAR_ON_CHANNEL: ReasonKind
REASON_KIND_POPULAR_IN_STORE: ReasonKind
REASON_KIND_POPULAR: ReasonKind

class Reason(_message.Message):
    __slots__ = ("kind", "source_item_ids", "text", "days_since_last_purchase", "typical_interval_days", "source_channel", "source_store_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DAYS_SINCE_LAST_PURCHASE_FIELD_NUMBER: _ClassVar[int]
    TYPICAL_INTERVAL_DAYS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_STORE_ID_FIELD_NUMBER: _ClassVar[int]
    kind: ReasonKind
    source_item_ids: _containers.RepeatedScalarFieldContainer[str]
    text: str
    days_since_last_purchase: int
    typical_interval_days: float
    source_channel: str
    source_store_id: str
    def __init__(self, kind: _Optional[_Union[ReasonKind, str]] = ..., source_item_ids: _Optional[_Iterable[str]] = ..., text: _Optional[str] = ..., days_since_last_purchase: _Optional[int] = ..., typical_interval_days: _Optional[float] = ..., source_channel: _Optional[str] = ..., source_store_id: _Optional[str] = ...) -> None: ...

class ScoredItem(_message.Message):
    __slots__ = ("item_id", "score", "title", "category", "reason")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    title: str
    category: str
    reason: Reason
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., reason: _Optional[_Union[Reason, _Mapping]] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("customer_id", "channel", "store_id", "num_items", "exclude_item_ids", "context_item_ids", "include_categories", "exclude_categories")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_ITEMS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    channel: str
    store_id: str
    num_items: int
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    context_item_ids: _containers.RepeatedScalarFieldContainer[str]
    include_categories: _containers.RepeatedScalarFieldContainer[str]
    exclude_categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., store_id: _Optional[str] = ..., num_items: _Optional[int] = ..., exclude_item_ids: _Optional[_Iterable[str]] = ..., context_item_ids: _Optional[_Iterable[str]] = ..., include_categories: _Optional[_Iterable[str]] = ..., exclude_categories: _Optional[_Iterable[str]] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "model_version", "resolved_customer_id", "known_customer", "policy", "unknown_item_ids", "unknown_categories", "unknown_channel", "fallback", "notices", "recommendation_id", "experiment_arm")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ARM_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    model_version: str
    resolved_customer_id: str
    known_customer: bool
    policy: str
    unknown_item_ids: _containers.RepeatedScalarFieldContainer[str]
    unknown_categories: _containers.RepeatedScalarFieldContainer[str]
    unknown_channel: bool
    fallback: str
    notices: _containers.RepeatedScalarFieldContainer[str]
    recommendation_id: str
    experiment_arm: str
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., resolved_customer_id: _Optional[str] = ..., known_customer: _Optional[bool] = ..., policy: _Optional[str] = ..., unknown_item_ids: _Optional[_Iterable[str]] = ..., unknown_categories: _Optional[_Iterable[str]] = ..., unknown_channel: _Optional[bool] = ..., fallback: _Optional[str] = ..., notices: _Optional[_Iterable[str]] = ..., recommendation_id: _Optional[str] = ..., experiment_arm: _Optional[str] = ...) -> None: ...

class RecommendBundleRequest(_message.Message):
    __slots__ = ("basket_item_ids", "customer_id", "channel", "store_id", "num_items", "bundle_size")
    BASKET_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_ITEMS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    basket_item_ids: _containers.RepeatedScalarFieldContainer[str]
    customer_id: str
    channel: str
    store_id: str
    num_items: int
    bundle_size: int
    def __init__(self, basket_item_ids: _Optional[_Iterable[str]] = ..., customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., store_id: _Optional[str] = ..., num_items: _Optional[int] = ..., bundle_size: _Optional[int] = ...) -> None: ...

class Bundle(_message.Message):
    __slots__ = ("anchor_item_id", "items", "score")
    ANCHOR_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    anchor_item_id: str
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    score: float
    def __init__(self, anchor_item_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., score: _Optional[float] = ...) -> None: ...

class RecommendBundleResponse(_message.Message):
    __slots__ = ("items", "bundle", "unknown_item_ids", "model_version", "unknown_channel", "fallback", "notices", "recommendation_id", "experiment_arm")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ARM_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    bundle: Bundle
    unknown_item_ids: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    unknown_channel: bool
    fallback: str
    notices: _containers.RepeatedScalarFieldContainer[str]
    recommendation_id: str
    experiment_arm: str
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., bundle: _Optional[_Union[Bundle, _Mapping]] = ..., unknown_item_ids: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ..., unknown_channel: _Optional[bool] = ..., fallback: _Optional[str] = ..., notices: _Optional[_Iterable[str]] = ..., recommendation_id: _Optional[str] = ..., experiment_arm: _Optional[str] = ...) -> None: ...

class SimilarItemsRequest(_message.Message):
    __slots__ = ("item_id", "num_items", "channel")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_ITEMS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    num_items: int
    channel: str
    def __init__(self, item_id: _Optional[str] = ..., num_items: _Optional[int] = ..., channel: _Optional[str] = ...) -> None: ...

class SimilarItemsResponse(_message.Message):
    __slots__ = ("items", "model_version", "unknown_channel", "notices")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    model_version: str
    unknown_channel: bool
    notices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., unknown_channel: _Optional[bool] = ..., notices: _Optional[_Iterable[str]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("version", "created_at", "input_fingerprint", "loaded_at", "evaluation", "row_counts", "num_items", "num_customers", "channels", "forced")
    class EvaluationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class RowCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    INPUT_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNTS_FIELD_NUMBER: _ClassVar[int]
    NUM_ITEMS_FIELD_NUMBER: _ClassVar[int]
    NUM_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    version: str
    created_at: str
    input_fingerprint: str
    loaded_at: str
    evaluation: _containers.ScalarMap[str, float]
    row_counts: _containers.ScalarMap[str, int]
    num_items: int
    num_customers: int
    channels: _containers.RepeatedScalarFieldContainer[str]
    forced: bool
    def __init__(self, version: _Optional[str] = ..., created_at: _Optional[str] = ..., input_fingerprint: _Optional[str] = ..., loaded_at: _Optional[str] = ..., evaluation: _Optional[_Mapping[str, float]] = ..., row_counts: _Optional[_Mapping[str, int]] = ..., num_items: _Optional[int] = ..., num_customers: _Optional[int] = ..., channels: _Optional[_Iterable[str]] = ..., forced: _Optional[bool] = ...) -> None: ...

class GetCustomerProfileRequest(_message.Message):
    __slots__ = ("customer_id", "num_purchases")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_PURCHASES_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    num_purchases: int
    def __init__(self, customer_id: _Optional[str] = ..., num_purchases: _Optional[int] = ...) -> None: ...

class Purchase(_message.Message):
    __slots__ = ("item_id", "title", "category", "channel", "store_id", "date", "count")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    title: str
    category: str
    channel: str
    store_id: str
    date: str
    count: float
    def __init__(self, item_id: _Optional[str] = ..., title: _Optional[str] = ..., category: _Optional[str] = ..., channel: _Optional[str] = ..., store_id: _Optional[str] = ..., date: _Optional[str] = ..., count: _Optional[float] = ...) -> None: ...

class RfmSegment(_message.Message):
    __slots__ = ("recency", "frequency", "monetary", "segment", "days_since_last_purchase", "spend")
    RECENCY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    DAYS_SINCE_LAST_PURCHASE_FIELD_NUMBER: _ClassVar[int]
    SPEND_FIELD_NUMBER: _ClassVar[int]
    recency: int
    frequency: int
    monetary: int
    segment: str
    days_since_last_purchase: int
    spend: float
    def __init__(self, recency: _Optional[int] = ..., frequency: _Optional[int] = ..., monetary: _Optional[int] = ..., segment: _Optional[str] = ..., days_since_last_purchase: _Optional[int] = ..., spend: _Optional[float] = ...) -> None: ...

class CustomerProfile(_message.Message):
    __slots__ = ("customer_id", "recent_purchases", "channels", "rfm", "coldstart", "model_version")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_PURCHASES_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    RFM_FIELD_NUMBER: _ClassVar[int]
    COLDSTART_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    recent_purchases: _containers.RepeatedCompositeFieldContainer[Purchase]
    channels: _containers.RepeatedScalarFieldContainer[str]
    rfm: RfmSegment
    coldstart: bool
    model_version: str
    def __init__(self, customer_id: _Optional[str] = ..., recent_purchases: _Optional[_Iterable[_Union[Purchase, _Mapping]]] = ..., channels: _Optional[_Iterable[str]] = ..., rfm: _Optional[_Union[RfmSegment, _Mapping]] = ..., coldstart: _Optional[bool] = ..., model_version: _Optional[str] = ...) -> None: ...
