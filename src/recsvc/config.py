"""All settings of the trainer and the server, in one typed object.

Settings come from defaults, then an optional TOML file (``--config`` or ``RECSVC_CONFIG``), then environment
variables ``RECSVC_<SECTION>__<FIELD>`` (e.g. ``RECSVC_SERVER__PORT=50051``,
``RECSVC_TRAINING__ALS_FACTORS=128``). The server and trainer print the result at start-up, so an operator
can see what a process actually runs with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "RECSVC_"


class ConfigError(ValueError):
    """A setting is unknown or has a value of the wrong type; the message names it."""


@dataclass(frozen=True)
class TrainingSettings:
    """How the trainer reads the logs and builds the models."""

    #: Interest weight of one event of each type; ``return`` events cancel purchases instead of adding.
    event_weights: Mapping[str, float] = field(
        default_factory=lambda: {"view": 1.0, "cart": 4.0, "purchase": 10.0})
    #: Channel assumed for events whose ``channel`` column is missing or empty.
    default_channel: str = "web"
    #: Events dated later than the run's start plus this many hours are quarantined (``future_timestamp``):
    #: one typo such as 2062 for 2026 would otherwise move the test window and every recency decay to 2062.
    #: Measured from the run time (the trainer's clock, UTC), not from the data; the margin allows for tills
    #: and servers whose clocks run ahead and for time zones written without an offset.
    max_future_hours: float = 24.0
    #: Events dated before this day (YYYY-MM-DD, UTC) are quarantined (``ancient_timestamp``): a year typed as
    #: 1026 or a date field defaulted to 1900-01-01. Set it earlier to train on older logs.
    earliest_event_date: str = "1990-01-01"
    #: Half-life (days) of the recency decay applied to ALS confidence and popularity.
    recency_half_life_days: float = 60.0
    #: Popularity counts only the last this-many days of the log.
    popularity_window_days: int = 28
    #: Items kept per store in the per-store popularity list.
    popularity_store_top_k: int = 200
    als_factors: int = 64
    als_regularization: float = 0.05
    als_iterations: int = 15
    #: ALS confidence of a customer-item cell = alpha * log1p(weighted, recency-decayed interactions).
    als_alpha: float = 8.0
    als_random_state: int = 42
    #: A pair of items must share at least this many baskets to count as bought together.
    copurchase_min_support: int = 2
    copurchase_top_k: int = 50
    #: The co-purchase score of b for anchor a is the lower end of the Wilson interval for P(b | a) at this
    #: normal quantile (1.96: 95 %), from n_ab baskets holding both out of n_a holding a, so a pair seen in
    #: few baskets ranks below an equally frequent pair seen in many; cart completion improved on Ta Feng and
    #: Online Retail and barely moved with z (README, Quality: cart completion).
    copurchase_confidence_z: float = 1.96
    #: Baskets bigger than this are skipped for co-purchase (wholesale orders say little about pairs).
    copurchase_max_basket: int = 60
    #: Catalogs of at least this many items get an approximate nearest-neighbour index (faiss IVF) for
    #: ALS scoring; smaller ones are scored exactly (see ``recsvc.ranking.ann``), because below this size an
    #: exact pass costs a request little (benchmarks/README.md has the per-request cost of both).
    ann_min_items: int = 50_000
    #: Inverted lists of the ANN index (0 = about 4 * sqrt(n_items)).
    ann_nlist: int = 0
    #: How the index stores vectors: ``SQ8`` (1 byte per dimension), ``SQfp16`` or ``Flat`` (float32);
    #: candidates are re-scored exactly, so compression costs little recall.
    ann_encoding: str = "SQ8"
    #: The smallest nprobe reaching this recall@10 against exact scoring is chosen; below it at any nprobe,
    #: no index is shipped.
    ann_target_recall: float = 0.95
    #: Customers sampled to tune nprobe, and as many others to measure the recall the manifest records.
    ann_recall_users: int = 1000
    #: Versions kept under the artifact root (the current one always stays).
    keep_versions: int = 5
    #: Show progress bars (only ever on a terminal).
    progress: bool = True
    #: Evaluate every run on a time split (metrics, baselines, cart completion, report) before publishing.
    evaluate: bool = True
    #: Length of the evaluation (test) window at the end of the log, in days.
    eval_test_days: int = 28
    #: Metrics are reported at 10 and at this k.
    eval_k: int = 10
    #: Learn the blend: fit a LightGBM learning-to-rank model (objective ``rank_xendcg``) over every source's
    #: candidates (else rank fusion).
    learn_ranker: bool = True
    #: Length of the window whose purchases label the ranker's training examples, in days, and ...
    ranker_label_days: int = 14
    #: ... how many consecutive such windows are pooled to train the ranker: six of 14 days (the last 12
    #: weeks) ranked better than one window of 28 on Online Retail and Ta Feng (README, Quality).
    ranker_label_windows: int = 6
    #: An older label window is used only when at least this many days of log precede it (the newest one
    #: always is): on a short log the older windows' customers have too little history to learn from.
    ranker_min_history_days: int = 60
    #: At most this many customers (queries) train the ranker, shared evenly by the label windows; a seeded
    #: sample keeps runs reproducible.
    ranker_max_customers: int = 10000
    #: Candidates each source proposes to the ranker's pool.
    ranker_pool_per_source: int = 100
    ranker_trees: int = 150
    #: Two-stage scoring (:mod:`recsvc.ranking.cascade`): the first trees score every pool row and the rest
    #: only each pool's best rows. The trainer takes the cheapest first stage (trees, and rows kept: the stored
    #: list's length or twice it) whose top-10 lists share at least ``ranker_cascade_min_agreement`` of their
    #: items with the whole ensemble's on the validation window (README, Serving: the cascade).
    ranker_cascade: bool = True
    ranker_cascade_min_agreement: float = 0.995
    #: Quality gate: refuse a set whose NDCG@10 is below buy-it-again times this ratio on its own split ...
    gate_min_ratio_to_buy_it_again: float = 1.0
    #: ... or more than this fraction below the NDCG@10 of the version it replaces (0.05 = 5 % worse).
    gate_max_drop: float = 0.05
    #: ... or below the best baseline of its own split times this ratio (issue 14: the default must never be
    #: worse than a baseline the evaluation computed).
    gate_min_ratio_to_best_baseline: float = 1.0
    #: Customers with attributes and at most this many purchase baskets are served by the LightFM cold-start
    #: model (policy ``coldstart``); -1 turns the cold-start model off. 0: on Ta Feng, serving customers with
    #: 1-2 baskets this way lowered the returning customers' NDCG@10 (README, Quality).
    coldstart_max_purchases: int = 0
    #: LightFM (WARP, hybrid: customer and item attributes) size, epochs, step and threads. One thread by
    #: default: with more, LightFM updates without locks (Hogwild) and two runs with one seed differ.
    lfm_components: int = 32
    lfm_epochs: int = 10
    lfm_learning_rate: float = 0.05
    lfm_threads: int = 1
    #: Nightly ranking (issue 16): rank, with the served engine's code, every chosen customer's top list per
    #: channel and store it in the set, so the server answers customers without fresh events from it.
    stored_lists: bool = True
    #: Items stored per customer and channel: requests asking more, or whose filters leave fewer, rank live
    #: (README, Serving: how deep the benchmark's filters read).
    stored_list_length: int = 50
    #: Only customers with a purchase in the last this-many days of the log get a list (0: every customer
    #: with history); the others are ranked live when they come.
    stored_lists_active_days: int = 0
    #: Processes that rank the stored lists (forked after the set is loaded, so they share its memory-mapped
    #: pages; each takes chunks of customers): 1 ranks in the training process, 0 uses every core.
    stored_lists_workers: int = 1


@dataclass(frozen=True)
class ChannelPolicy:
    """How Recommend ranks for known customers on one channel (``[server.policies.<channel>]`` in TOML).

    ``weights`` override the blend weight of the named candidate sources (``repurchase``, ``copurchase``,
    ``als``, ``popularity``, ``coldstart``; a model with a learned ranker orders candidates itself);
    ``repurchase`` False hides everything the customer bought before; ``exclude_bought_within_days`` > 0
    hides items last bought that recently. ``name`` is reported as the response's ``policy`` (the channel
    name when empty).
    """

    name: str = ""
    weights: Mapping[str, float] = field(default_factory=dict)
    repurchase: bool = True
    exclude_bought_within_days: int = 0


@dataclass(frozen=True)
class ServerSettings:
    """How the gRPC server listens and what it serves."""

    host: str = "127.0.0.1"
    port: int = 50051
    #: Folder holding ``CURRENT`` and ``versions/`` (written by the trainer), or a URL (``s3://bucket/prefix``).
    artifact_root: str = "artifacts"
    max_workers: int = 8
    default_num_items: int = 10
    max_num_items: int = 100
    max_ids_per_request: int = 1000
    max_context_items: int = 100
    #: Seconds in-flight requests get to finish after SIGTERM.
    shutdown_grace_seconds: float = 10.0
    #: Seconds a client connection may live before the server sends GOAWAY and the client reconnects, so
    #: long-lived channels spread over replicas (or workers) started after them; grpc adds up to 10 % jitter.
    #: 0 = no limit.
    max_connection_age_seconds: float = 300.0
    #: Seconds the calls still running on an aged connection get to finish before it is closed.
    max_connection_age_grace_seconds: float = 30.0
    #: Verify every artifact checksum at load (refuse corrupt sets).
    verify_checksums: bool = True
    #: Log JSON lines, plus one access line per request (rpc, code, latency, channel, request id, caller).
    log_json: bool = False
    #: Server processes sharing ``port`` (SO_REUSEPORT), one BLAS thread each: 2 on a 2-core host, 1 per pod.
    workers: int = 1
    #: Let other processes bind the same port (SO_REUSEPORT); the worker parent sets it for its children.
    reuse_port: bool = False
    #: Recommender calls ranked at once per process; one more gets RESOURCE_EXHAUSTED as it arrives (0 = no cap).
    max_concurrent_rpcs: int = 6
    #: With no cap (``max_concurrent_rpcs`` 0): admitted calls that may wait for a ranking thread per process.
    max_queued_rpcs: int = 64
    #: Largest request message accepted, in bytes (``grpc.max_receive_message_length``).
    max_request_bytes: int = 1_048_576
    #: Seconds between reads of ``CURRENT`` for a new version (0 = only on SIGHUP or the Admin API).
    reload_poll_seconds: float = 30.0
    #: Memory-map artifact arrays (fast load, pages shared by workers); see README before using NFS.
    mmap_artifacts: bool = True
    #: Port of the Prometheus ``/metrics`` endpoint on ``host`` (0 = off); worker ``i`` uses port + ``i``.
    metrics_port: int = 0
    #: PEM certificate chain the server presents; with ``tls_key_file`` it turns TLS on.
    tls_cert_file: str = ""
    #: PEM private key of ``tls_cert_file``.
    tls_key_file: str = ""
    #: PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS).
    tls_client_ca_file: str = ""
    #: TOML file of callers (sha256 of the token, name, role ``read``/``admin``); empty = no token check.
    tokens_file: str = ""
    #: Channel name -> :class:`ChannelPolicy`; a channel without one gets the default blend.
    policies: Mapping[str, ChannelPolicy] = field(default_factory=dict)
    # Object storage (``artifact_root`` a URL such as ``s3://bucket/prefix``; README, Object storage). Credentials
    # and the endpoint (``AWS_ENDPOINT_URL``) come from the cloud SDK's own environment and files, not from here.
    #: Local folder holding the versions downloaded from a URL root (empty: ``<temp dir>/recsvc-cache``).
    artifact_cache_dir: str = ""
    #: Downloaded versions kept in that cache, the ones used last (the serving one and a rollback target).
    artifact_cache_keep: int = 3
    #: With a URL root: seconds between checks of ``stock/CURRENT`` (a local root is checked on every request).
    stock_poll_seconds: float = 5.0


@dataclass(frozen=True)
class EventsSettings:
    """Where live events (``recsvc.v1.Events``) are kept and how fast servers see them (``[events]`` in TOML).

    One backend per deployment: ``sqlite`` (embedded, the default: one file shared by every worker on the
    machine, durable across restarts), ``redis`` (several replicas on several machines share one Redis) or
    ``off`` (no Events service, no overlay). See README, Real time.
    """

    backend: str = "sqlite"
    #: SQLite file (WAL mode); empty = ``events.sqlite`` inside ``server.artifact_root``.
    sqlite_path: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Prefix of every Redis key, so several deployments can share one Redis.
    redis_prefix: str = "recsvc"
    #: Seconds a Redis call may take before the store counts as down (the caller gets UNAVAILABLE).
    redis_timeout_seconds: float = 1.0
    #: Seconds between the overlay's reads of new events and links (every worker and replica polls).
    poll_seconds: float = 0.1
    #: Recent events kept per customer (the Redis list; the overlay's memory).
    recent_per_customer: int = 200
    #: Events older than this many days are dropped from the store (and the Redis dedupe keys expire).
    retention_days: int = 90
    #: An event more than this many seconds ahead of the server's clock is rejected (future_timestamp).
    max_future_seconds: float = 300.0
    #: Events (and links) accepted per call; more is INVALID_ARGUMENT.
    max_per_call: int = 1000


@dataclass(frozen=True)
class FeedbackSettings:
    """Recommendation ids, the served-answer log and attribution (``[feedback]`` in TOML; README, Feedback and
    experiments). The log needs an event store (``events.backend`` not ``off``)."""

    #: Log every Recommend / RecommendBundle answer (id, model version, policy, arm, items) to the event store.
    log_served: bool = True
    #: Answers waiting for the log's writer thread; beyond it new ones are dropped and counted, never waited for.
    log_queue_size: int = 50_000
    #: Seconds between the writer's batches (also the longest an answer waits to become visible in the store).
    log_flush_seconds: float = 0.2
    #: A purchase or cart without a recommendation_id counts for an answer that suggested the item to the same
    #: customer at most this many days before it (attributed "by window").
    attribution_window_days: float = 7.0


@dataclass(frozen=True)
class ExperimentArm:
    """One arm of an experiment (``[experiments.arms.<name>]``): who gets it and how they are served.

    ``share`` is the fraction of customers (0..1). ``ranker`` ``""`` serves as configured, ``"blend"`` without
    the model's learned ranker (rank fusion of the sources), ``"learned"`` with it. ``weights``,
    ``repurchase`` and ``exclude_bought_within_days`` (as in a channel policy) make a policy applied on every
    channel, reported under the arm's name. ``holdout`` serves popular items only (measures the lift of
    personalization; RecommendBundle is served as usual). ``model_version`` serves a published version kept
    loaded beside the current one (the new model against the old: budget its memory), with its own live
    events; "" or the serving version itself: the serving model.
    """

    share: float = 0.0
    ranker: str = ""
    model_version: str = ""
    weights: Mapping[str, float] = field(default_factory=dict)
    repurchase: bool = True
    exclude_bought_within_days: int = 0
    holdout: bool = False


@dataclass(frozen=True)
class ExperimentsSettings:
    """A/B experiment arms (``[experiments]`` in TOML). A customer's arm is a stable hash of ``name`` and the
    resolved customer id, so it is the same on every channel, replica and restart; shares summing below 1
    leave the rest outside the experiment (arm ``""``). No arms: no experiment."""

    #: Names the experiment and salts the hash: a new name reshuffles customers over the arms.
    name: str = "default"
    arms: Mapping[str, ExperimentArm] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    training: TrainingSettings = field(default_factory=TrainingSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    experiments: ExperimentsSettings = field(default_factory=ExperimentsSettings)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One JSON line for the start-up log."""
        return json.dumps(self.as_dict(), sort_keys=True, default=str)


def _coerce(section: str, name: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    where = f"{section}.{name}"
    if isinstance(value, str) and hint is not str:
        text = value.strip()
        if hint is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        if origin in (Mapping, dict):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: expected a JSON object, got {value!r}") from exc
        else:
            try:
                return hint(text)
            except (TypeError, ValueError) as exc:
                expected = getattr(hint, "__name__", hint)
                raise ConfigError(f"{where}: expected {expected}, got {value!r}") from exc
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table/object, got {value!r}")
        value_hint = typing.get_args(hint)[1]
        # a table of tables, e.g. [server.policies.<channel>]: each inner table is checked like a section
        if isinstance(value_hint, type) and dataclasses.is_dataclass(value_hint):
            return {str(k): _section(value_hint, f"{where}.{k}", _table(f"{where}.{k}", v)) for k, v in value.items()}
        return {str(k): float(v) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def _table(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table/object, got {value!r}")
    return value


def _section(cls: type, section: str, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{section}]: {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    return cls(**{k: _coerce(section, k, hints[k], v) for k, v in values.items()})


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Defaults, overridden by the TOML file at ``path`` (or ``$RECSVC_CONFIG``), then by environment."""
    env = os.environ if env is None else env
    raw: dict[str, dict[str, Any]] = {"training": {}, "server": {}, "events": {}, "feedback": {}, "experiments": {}}
    path = path or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        for key, value in data.items():
            if key not in raw or not isinstance(value, dict):
                raise ConfigError(f"config file {path}: unknown section [{key}]; use [training], "
                                  "[server], [events], [feedback] or [experiments]")
            raw[key].update(value)
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, name = key[len(ENV_PREFIX):].partition("__")
        section = section.lower()
        if section not in raw:
            raise ConfigError(f"environment variable {key}: unknown section {section!r}")
        raw[section][name.lower()] = value
    return Settings(training=_section(TrainingSettings, "training", raw["training"]),
                    server=_section(ServerSettings, "server", raw["server"]),
                    events=_section(EventsSettings, "events", raw["events"]),
                    feedback=_section(FeedbackSettings, "feedback", raw["feedback"]),
                    experiments=_section(ExperimentsSettings, "experiments", raw["experiments"]))
