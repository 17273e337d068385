from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReloadOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELOAD_OUTCOME_UNSPECIFIED: _ClassVar[ReloadOutcome]
    RELOAD_OUTCOME_SWAPPED: _ClassVar[ReloadOutcome]
    RELOAD_OUTCOME_UNCHANGED: _ClassVar[ReloadOutcome]
    RELOAD_OUTCOME_REJECTED: _ClassVar[ReloadOutcome]
    RELOAD_OUTCOME_SKIPPED: _ClassVar[ReloadOutcome]
RELOAD_OUTCOME_UNSPECIFIED: ReloadOutcome
RELOAD_OUTCOME_SWAPPED: ReloadOutcome
RELOAD_OUTCOME_UNCHANGED: ReloadOutcome
RELOAD_OUTCOME_REJECTED: ReloadOutcome
RELOAD_OUTCOME_SKIPPED: ReloadOutcome

class ReloadModelRequest(_message.Message):
    __slots__ = ("force",)
    FORCE_FIELD_NUMBER: _ClassVar[int]
    force: bool
    def __init__(self, force: _Optional[bool] = ...) -> None: ...

class RollbackModelRequest(_message.Message):
    __slots__ = ("to_version",)
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    to_version: str
    def __init__(self, to_version: _Optional[str] = ...) -> None: ...

class ReloadModelResponse(_message.Message):
    __slots__ = ("outcome", "version", "serving_version", "previous_version", "error", "load_seconds")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVING_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    outcome: ReloadOutcome
    version: str
    serving_version: str
    previous_version: str
    error: str
    load_seconds: float
    def __init__(self, outcome: _Optional[_Union[ReloadOutcome, str]] = ..., version: _Optional[str] = ..., serving_version: _Optional[str] = ..., previous_version: _Optional[str] = ..., error: _Optional[str] = ..., load_seconds: _Optional[float] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FailedVersion(_message.Message):
    __slots__ = ("version", "error", "failed_at")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    version: str
    error: str
    failed_at: str
    def __init__(self, version: _Optional[str] = ..., error: _Optional[str] = ..., failed_at: _Optional[str] = ...) -> None: ...

class ServerStatus(_message.Message):
    __slots__ = ("serving_version", "loaded_at", "created_at", "model_age_seconds", "serving", "current_version", "available_versions", "failed_versions", "reloads_succeeded", "reloads_failed", "last_reload_at", "reload_poll_seconds", "pid", "worker_index", "in_flight_rpcs", "max_concurrent_rpcs", "artifact_root", "event_backend", "overlay_state", "overlay_events", "overlay_lag_seconds", "overlay_error")
    SERVING_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MODEL_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    FAILED_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    RELOADS_SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    RELOADS_FAILED_FIELD_NUMBER: _ClassVar[int]
    LAST_RELOAD_AT_FIELD_NUMBER: _ClassVar[int]
    RELOAD_POLL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    WORKER_INDEX_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_RPCS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_RPCS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ROOT_FIELD_NUMBER: _ClassVar[int]
    EVENT_BACKEND_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_STATE_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_EVENTS_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_ERROR_FIELD_NUMBER: _ClassVar[int]
    serving_version: str
    loaded_at: str
    created_at: str
    model_age_seconds: float
    serving: bool
    current_version: str
    available_versions: _containers.RepeatedScalarFieldContainer[str]
    failed_versions: _containers.RepeatedCompositeFieldContainer[FailedVersion]
    reloads_succeeded: int
    reloads_failed: int
    last_reload_at: str
    reload_poll_seconds: float
    pid: int
    worker_index: int
    in_flight_rpcs: int
    max_concurrent_rpcs: int
    artifact_root: str
    event_backend: str
    overlay_state: str
    overlay_events: int
    overlay_lag_seconds: float
    overlay_error: str
    def __init__(self, serving_version: _Optional[str] = ..., loaded_at: _Optional[str] = ..., created_at: _Optional[str] = ..., model_age_seconds: _Optional[float] = ..., serving: _Optional[bool] = ..., current_version: _Optional[str] = ..., available_versions: _Optional[_Iterable[str]] = ..., failed_versions: _Optional[_Iterable[_Union[FailedVersion, _Mapping]]] = ..., reloads_succeeded: _Optional[int] = ..., reloads_failed: _Optional[int] = ..., last_reload_at: _Optional[str] = ..., reload_poll_seconds: _Optional[float] = ..., pid: _Optional[int] = ..., worker_index: _Optional[int] = ..., in_flight_rpcs: _Optional[int] = ..., max_concurrent_rpcs: _Optional[int] = ..., artifact_root: _Optional[str] = ..., event_backend: _Optional[str] = ..., overlay_state: _Optional[str] = ..., overlay_events: _Optional[int] = ..., overlay_lag_seconds: _Optional[float] = ..., overlay_error: _Optional[str] = ...) -> None: ...
