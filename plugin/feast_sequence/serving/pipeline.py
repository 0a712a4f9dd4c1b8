"""The serving pipeline of a use case: retrieve → filter → size → enrich → arrange → (ODFVs) → featurize.

Each stage is its own module and works on ``SequenceBatch``es; this module composes them for one
request (``serve``: plan, retrieve, shape, enrich, arrange, respond, one function each), checks the
use case's limits and records metrics. Reads are planned by the same planner as Feast's path
(read_plan.py), at one request time. It is written without I/O: the request
is a generator that yields the Redis round trips it needs (two at most: the sequences and regular
views, then every enrichment lookup not answered by an enrichment cache) and receives their
replies, so the sync and async store methods drive the same code (storage/drivers.py).

Sizing runs before enrichment: filters only read event fields, so the output is the same, and only
events that are served are looked up.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Generator, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from feast import FeatureService
from feast.online_response import OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.repo_config import RepoConfig
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from feast_sequence import feast_internals
from feast_sequence.definitions.enrichment import Enrichment, EnrichmentCache
from feast_sequence.definitions.use_case import (
    OutputFormat,
    UseCaseSettings,
)
from feast_sequence.errors import SequenceRequestError
from feast_sequence.serving import candidates, metrics, serving_log
from feast_sequence.serving.arrange import oldest_first, with_age
from feast_sequence.serving.enrich import KeyValues, factorize_together, join_values
from feast_sequence.serving.enrichment_cache import CachedLookup
from feast_sequence.serving.featurize import (
    PAD_VALUES,
    length_name,
    mask,
    mask_name,
    mask_rows,
    pad_response_vector,
    padded_rows,
)
from feast_sequence.serving.filter import filter_events
from feast_sequence.serving.read_plan import ReadPlan, ServingStore, plan_reads
from feast_sequence.serving.response_values import BULK_FROM, list_value_entries, merge_entries
from feast_sequence.serving.retrieve import decode_batch, newest_seconds
from feast_sequence.serving.size import first_n
from feast_sequence.serving.views import ServedView, ViewPlan
from feast_sequence.storage.codec import list_field_name
from feast_sequence.storage.lookup import decode_columns, lookup_commands, one_call_per_key
from feast_sequence.storage.read import add_view_metadata
from feast_sequence.storage.redis_io import Command, RoundTrip, retry_policy

Request = Generator[RoundTrip, List[Any], OnlineResponse]


class _StageTimer:
    """Stage timings of one request, and its time budget."""

    def __init__(self, use_case: UseCaseSettings):
        self.use_case = use_case
        self.start = self.mark = time.perf_counter()

    def stage(self, stage: metrics.Stage) -> None:
        name = stage.value  # labels and messages show the text (str() of the enum is "Stage.X")
        now = time.perf_counter()
        metrics.STAGE_SECONDS.labels(self.use_case.name, name).observe(now - self.mark)
        self.mark = now
        budget = self.use_case.limits.time_budget_ms
        elapsed_ms = (now - self.start) * 1000
        if budget is not None and elapsed_ms > budget:
            metrics.LIMIT_REJECTIONS.labels(self.use_case.name, metrics.Limit.TIME_BUDGET_MS.value).inc()
            # 429, not 413: the same request usually fits its budget once the load drops, so a
            # client should back off and retry (or shed it), not split it.
            raise SequenceRequestError(
                f"Use case '{self.use_case.name}' exceeded its time budget: {elapsed_ms:.1f} ms after "
                f"stage '{name}' (time_budget_ms={budget:g}). Lower its length or entities per request, "
                "or move serving-time enrichments to index time.",
                http_status=429,
            )


@dataclass
class _UseCaseRequest:
    """One request of a use case, resolved by Feast and planned: what the stages work from."""

    use_case: UseCaseSettings
    columns: Dict[str, List[Any]]  # the entity rows, column-wise
    feast: feast_internals.OnlineRequest
    reads: ReadPlan
    request_values: Dict[str, List[Any]]  # checked values of the request columns filters read (candidates.py)


def serve(
    store: ServingStore,
    config: RepoConfig,
    service: FeatureService,
    entity_rows: Any,
    registry: Any,
    project: str,
    full_feature_names: bool,
    include_version_metadata: bool,
) -> Request:
    """One online request of a use case; see the module docstring for how it is driven."""
    use_case = store.plan_cache.use_case(service)
    with _errors_counted(use_case):
        timer = _StageTimer(use_case)
        request = _plan(store, config, service, use_case, entity_rows, registry, project, full_feature_names)
        replies = yield RoundTrip(request.reads.commands, _serving(use_case), retry_policy(config.online_store))
        views = _retrieve(request.reads, replies, use_case.fail_closed)
        timer.stage(metrics.Stage.RETRIEVE)
        _shape(views, timer, request.request_values)
        yield from _enrich(store, config, project, use_case, views, timer)
        _arrange(views, request.reads.now_us)
        response = _respond(request, views, replies, full_feature_names, include_version_metadata, timer)
        logged = {**request.columns, **request.request_values}  # candidates as checked
        serving_log.record(config, service, logged, views, request.reads.now_us)  # a queue put at most
        return response


def _plan(
    store: ServingStore,
    config: RepoConfig,
    service: FeatureService,
    use_case: UseCaseSettings,
    entity_rows: Any,
    registry: Any,
    project: str,
    full_feature_names: bool,
) -> _UseCaseRequest:
    """Check ``max_entities``, resolve the request as Feast does, and plan every view's reads (the
    use case's window, and its length when there are no filters, go into the read)."""
    columns = _columnar(entity_rows)
    row_count = len(next(iter(columns.values()))) if columns else 0
    limit = use_case.limits.max_entities
    if limit is not None and row_count > limit:
        metrics.LIMIT_REJECTIONS.labels(use_case.name, metrics.Limit.MAX_ENTITIES.value).inc()
        raise SequenceRequestError(
            f"Use case '{use_case.name}': request for {row_count:,} entity rows exceeds its "
            f"max_entities={limit:,}; split the request."
        )
    asked = candidates.request_column_names(use_case)
    to_feast = {k: v for k, v in columns.items() if k not in asked}  # Feast reads keys, not candidates
    feast = feast_internals.prepare_online_request(registry, project, service, to_feast, full_feature_names)
    reads = plan_reads(
        store,
        config,
        project,
        feast.grouped_refs,
        feast.join_key_values,
        feast.entity_name_to_join_key_map,
        use_case.spec,
    )
    views = {plan.name: plan.settings for plan in reads.sequence_views}
    store.plan_cache.validate(use_case, views)
    # Checked before any read (the request's commands are sent after planning): a bad value refuses it.
    request_values = candidates.check_request_values(
        use_case.name, candidates.request_columns(use_case, views), columns
    )
    return _UseCaseRequest(use_case, columns, feast, reads, request_values)


def _retrieve(reads: ReadPlan, replies: List[Any], fail_closed: bool) -> List[ServedView]:
    """Every sequence view's replies decoded into a batch, in plan order (a corrupt stored sequence
    served empty, or failing the request if the use case is ``fail_closed``)."""
    return [
        ServedView(
            read.view,
            decode_batch(
                read.view.settings,
                reads.commands[read.start : read.end],
                replies[read.start : read.end],
                read.view.decoded,
                fail_closed,
            ),
        )
        for read in reads.views
        if isinstance(read.view, ViewPlan)
    ]


def _shape(views: List[ServedView], timer: _StageTimer, request_values: Dict[str, List[Any]]) -> None:
    """Filter, then size: each stage over every view. A view filtered by request values becomes one
    row per request row, each with its own events (candidates.py)."""
    for index, view in enumerate(views):
        view.batch = filter_events(view.batch, view.plan.spec.fixed_conditions)
        if view.plan.spec.request_conditions:
            views[index] = candidates.serve_per_row(view, request_values)
    timer.stage(metrics.Stage.FILTER)
    for view in views:
        view.batch = first_n(view.batch, view.plan.spec.length)
    timer.stage(metrics.Stage.SIZE)


def _enrich(
    store: ServingStore,
    config: RepoConfig,
    project: str,
    use_case: UseCaseSettings,
    views: List[ServedView],
    timer: _StageTimer,
) -> Generator[RoundTrip, List[Any], None]:
    """Serving-time enrichments: one round trip for every distinct key of every enrichment not in
    its cache (none when every key was cached or there is nothing to enrich)."""
    users: Dict[_Lookup, List[Tuple[int, Enrichment]]] = {}  # each lookup's (view index, enrichment)s
    for index, view in enumerate(views):
        for enrichment in view.plan.serving_enrichments:
            users.setdefault(_lookup_of(enrichment), []).append((index, enrichment))
    if not users:
        return
    keyed = {
        lookup: factorize_together([views[index].batch.columns[e.on] for index, e in pairs])
        for lookup, pairs in users.items()
    }
    codes = {pair: c for lookup, pairs in users.items() for pair, c in zip(pairs, keyed[lookup][0])}
    values = yield from _enrich_lookups(store, config, project, use_case, {k: keys for k, (_, keys) in keyed.items()})
    for index, view in enumerate(views):
        for enrichment in view.plan.serving_enrichments:
            lookup = _lookup_of(enrichment)
            view.batch, misses = join_values(view.batch, enrichment, codes[index, enrichment], values[lookup])
            if misses:
                metrics.ENRICHMENT_MISSES.labels(use_case.name, view.plan.name, enrichment.view).inc(misses)
    timer.stage(metrics.Stage.ENRICH)


def _arrange(views: List[ServedView], now_us: int) -> None:
    """Ages from the request's time, then the order the use case asks for."""
    for view in views:
        spec, timestamps = view.plan.spec, view.plan.settings.timestamp_field
        view.newest = newest_seconds(view.batch, timestamps)
        if spec.age_field is not None:
            request_seconds = np.full(view.batch.rows, now_us // 1_000_000, dtype=np.int64)
            view.batch = with_age(view.batch, spec.age_field, view.batch.columns[timestamps], request_seconds)
        if spec.oldest_first:
            view.batch = oldest_first(view.batch)


def _respond(
    request: _UseCaseRequest,
    views: List[ServedView],
    replies: List[Any],
    full_feature_names: bool,
    include_version_metadata: bool,
    timer: _StageTimer,
) -> OnlineResponse:
    """Feast's layout (regular views as Feast fills them), then on-demand views, then the output format."""
    use_case, feast, response = request.use_case, request.feast, request.feast.response
    # On-demand views must see unpadded lists; without them, lists are padded as they are written.
    final = not feast.on_demand_feature_views  # the lists are written as served
    pad_in_fill = use_case.output == OutputFormat.PADDED and final
    served = iter(views)  # in plan order, as the sequence views of request.reads.views
    for read in request.reads.views:
        if isinstance(read.view, ViewPlan):
            view = next(served)
            _fill(view, response, full_feature_names, include_version_metadata, pad_in_fill, final)
            metrics.observe_sequences(use_case.name, view.plan.name, view.batch.lengths, view.newest)
        else:
            read.view(replies[read.start : read.end], response, full_feature_names, include_version_metadata)
    feature_types = feast_internals.feature_types(feast.grouped_refs)
    if feast.on_demand_feature_views:
        feast_internals.apply_on_demand_transforms(
            response, feast.feature_refs, feast.on_demand_feature_views, full_feature_names, feature_types
        )
        timer.stage(metrics.Stage.TRANSFORM)
    kept = set(feast.result_names)
    for view in views:
        kept.update(_output_name(view.plan, n, full_feature_names) for n in view.plan.outputs)
        kept.update(featurize_response(use_case, view, response, full_feature_names, pad_in_fill))
    feast_internals.drop_unneeded_columns(response, kept)
    timer.stage(metrics.Stage.FEATURIZE)
    return OnlineResponse(response, feature_types=feature_types)


@contextmanager
def _errors_counted(use_case: UseCaseSettings) -> Iterator[None]:
    """Count the request's error by type (what reaches the caller, the request's own or Redis's)."""
    try:
        yield
    except Exception as error:
        metrics.REQUEST_ERRORS.labels(use_case.name, type(error).__name__).inc()
        raise


def _serving(use_case: UseCaseSettings) -> str:
    return f"serving use case '{use_case.name}'"


#: One lookup of a request: an enrichment without prefix, and its cache settings.
_Lookup = Tuple[Enrichment, Optional[EnrichmentCache]]


def _lookup_of(enrichment: Enrichment) -> _Lookup:
    """Enrichments that read the same view features with the same cache share one lookup, whatever
    their prefix."""
    plain = Enrichment(enrichment.view, enrichment.join_key, enrichment.key_type, "", enrichment.features)
    return plain, enrichment.cache


@dataclass
class _LookupSpan:
    """One lookup of a request: its cache, the cached rows (in key order, ``NOT_CACHED`` at the
    ``missing`` positions), the keys read from Redis, and their commands' span in the round trip."""

    lookup: _Lookup
    cache: Optional[CachedLookup]
    rows: List[Any]
    missing: List[int]
    read: List[Any]
    start: int
    end: int


def _enrich_lookups(
    store: ServingStore, config: RepoConfig, project: str, use_case: UseCaseSettings, lookups: Dict[_Lookup, List[Any]]
) -> Generator[RoundTrip, List[Any], Dict[_Lookup, KeyValues]]:
    """The values of every lookup's (distinct) keys: from the lookup's cache if it has one, the rest
    read in one round trip (none if every key was cached) and put in the caches."""
    per_key = one_call_per_key(config.online_store)
    spans = []
    commands: List[Command] = []
    for lookup, keys in lookups.items():
        enrichment, cache_settings = lookup
        cache, read = None, keys
        rows: List[Any] = []
        missing: List[int] = []
        if cache_settings is not None:
            cache = store.enrichment_caches.lookup(project, enrichment, cache_settings)
            rows, missing = cache.rows(keys)
            read = [keys[position] for position in missing] if len(missing) < len(keys) else keys
        start = len(commands)
        if read:
            commands.extend(
                lookup_commands(enrichment, project, config.entity_key_serialization_version, read, per_key)
            )
        spans.append(_LookupSpan(lookup, cache, rows, missing, read, start, len(commands)))
    # Read the caches' clocks before sending: a TTL counted from here bounds the values' age.
    sent_at = {id(span.cache): span.cache.clock() for span in spans if span.cache is not None and span.read}
    replies = (yield RoundTrip(commands, _serving(use_case), retry_policy(config.online_store))) if commands else []
    values: Dict[_Lookup, KeyValues] = {}
    for span in spans:
        enrichment = span.lookup[0]
        if not span.read:  # every key cached, or no key
            values[span.lookup] = KeyValues.of_rows(enrichment, span.rows)
            continue
        present, columns = decode_columns(enrichment, len(span.read), replies[span.start : span.end])
        if span.cache is not None:
            read_rows = [row if hit else None for row, hit in zip(zip(*columns), present.tolist())]
            span.cache.put_rows(sent_at[id(span.cache)], span.read, read_rows)
            if len(span.read) < len(span.rows):  # some keys came from the cache
                for position, row in zip(span.missing, read_rows):
                    span.rows[position] = row
                values[span.lookup] = KeyValues.of_rows(enrichment, span.rows)
                continue
        values[span.lookup] = KeyValues.of_columns(enrichment, present, columns)  # every key read
    return values


def _output_name(plan: ViewPlan, name: str, full_feature_names: bool) -> str:
    return f"{plan.name}__{name}" if full_feature_names else name


def _fill(
    view: ServedView, response: Any, full_feature_names: bool, include_version_metadata: bool, pad: bool, final: bool
) -> None:
    """Append one view's shaped sequences to the response, in Feast's layout (padded if ``pad``),
    each feature's lists from its whole column (response_values.py). ``final``: no on-demand view
    reads them, so null timestamps are written as served (null_timestamps.py) rather than as
    Feast's sentinel, which on-demand views read."""
    plan, batch = view.plan, view.batch
    outputs = plan.outputs
    response.metadata.feature_names.val.extend(_output_name(plan, n, full_feature_names) for n in outputs)
    add_view_metadata(response, plan.table, include_version_metadata)
    owner = plan.owner()
    newest = [0] * batch.rows
    non_empty = np.flatnonzero(batch.lengths > 0).tolist()
    for row, seconds in zip(non_empty, view.newest.tolist()):
        newest[row] = seconds
    # Padded as arrays when large enough for numpy to pay (BULK_FROM), else row by row. Sized
    # rows always fit their padding; a longer row (none is read) would keep its length.
    bulk = batch.rows * plan.length >= BULK_FROM
    padded = pad and bulk and bool((batch.lengths <= plan.length).all())
    lengths = np.full(batch.rows, plan.length, dtype=np.int64) if padded else batch.lengths
    slots = mask_rows(batch.lengths, plan.length, plan.spec.left_padded) if padded else None
    timestamps = None  # every feature of the view has the same event timestamps: built once, copied
    for name in outputs:
        value_type = batch.types[name]
        values = batch.columns[name]
        vector = response.results.add()
        vector.statuses.extend([FieldStatus.PRESENT] * plan.output_len)
        entries = None
        if (padded or not pad) and values.dtype != object:
            if padded:
                pad_value = PAD_VALUES[value_type]
                values = padded_rows(values, batch.lengths, plan.length, pad_value, slots=slots).ravel()
            entries = list_value_entries(values, lengths, value_type, final, BULK_FROM)
        if entries is not None:
            merge_entries(vector, entries, owner)
        else:  # strings, bytes and small columns: Feast's format takes them value by value
            rows = _row_lists(values, batch.lengths)
            padding = _Padding(plan.length, PAD_VALUES[value_type], plan.spec.left_padded) if pad else None
            _extend_rows(vector, list_field_name(value_type), [rows[unique] for unique in owner], padding)
        if timestamps is None:
            for unique in owner:
                vector.event_timestamps.add(seconds=newest[unique])
            timestamps = vector.event_timestamps
        else:
            vector.event_timestamps.MergeFrom(timestamps)


def _row_lists(values: np.ndarray, lengths: np.ndarray) -> List[List[Any]]:
    flat = values.tolist()
    bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
    return [flat[start:end] for start, end in zip(bounds, bounds[1:])]


@dataclass(frozen=True)
class _Padding:
    """Pad each list to ``length`` with ``value``, before its values if ``left``."""

    length: int
    value: Any
    left: bool


def _extend_rows(vector: Any, list_field: str, rows: Sequence[List[Any]], padding: Optional[_Padding] = None) -> None:
    """One list per row, each padded by ``padding`` if given (``featurize.pad``, without building the
    padded list: padding an object array costs more than extending the response with the padding)."""
    pads: Dict[int, List[Any]] = {}
    for row in rows:
        target = getattr(vector.values.add(), list_field)
        if padding is not None and len(row) < padding.length:
            missing = padding.length - len(row)
            filler = pads.get(missing) or pads.setdefault(missing, [padding.value] * missing)
            target.val.extend(filler if padding.left else row)
            target.val.extend(row if padding.left else filler)
        elif row:
            target.val.extend(row)
        else:  # an empty list, not a null: the oneof must be set
            target.SetInParent()


def featurize_response(
    use_case: UseCaseSettings, view: ServedView, response: Any, full_feature_names: bool, padded: bool
) -> List[str]:
    """Apply the use case's output format to one view's features in the response (``padded``: its
    lists already are); returns the names of the features it added (masks, lengths)."""
    if use_case.output == OutputFormat.LISTS:
        return []
    plan, batch = view.plan, view.batch
    counts = batch.lengths[plan.owner()].tolist()
    if use_case.output == OutputFormat.PADDED:
        if not padded:
            names = list(response.metadata.feature_names.val)
            for name in plan.outputs:
                vector = response.results[names.index(_output_name(plan, name, full_feature_names))]
                pad_response_vector(vector, plan.length, PAD_VALUES[batch.types[name]], plan.spec.left_padded)
        added = mask_name(plan.name)
        left = plan.spec.left_padded
        response.metadata.feature_names.val.append(added)
        vector = response.results.add()
        vector.statuses.extend([FieldStatus.PRESENT] * len(counts))
        if batch.rows * plan.length >= BULK_FROM:
            masks = mask_rows(batch.lengths, plan.length, left).ravel()
            entries = list_value_entries(masks, np.full(batch.rows, plan.length), ValueType.BOOL, True, BULK_FROM)
            merge_entries(vector, entries or [], plan.owner())
        else:
            _extend_rows(vector, "bool_list_val", [mask(c, plan.length, left) for c in counts])
        vector.event_timestamps.extend([Timestamp()] * len(counts))
    else:  # jagged
        added = length_name(plan.name)
        _add_vector(response, added, "int64_val", counts)
    return [added]


def _add_vector(response: Any, name: str, kind: str, values: Sequence[Any]) -> None:
    response.metadata.feature_names.val.append(name)
    vector = response.results.add()
    vector.statuses.extend([FieldStatus.PRESENT] * len(values))
    for value in values:
        setattr(vector.values.add(), kind, value)
        vector.event_timestamps.add()


def _columnar(entity_rows: Any) -> Dict[str, List[Any]]:
    if isinstance(entity_rows, list):
        columns: Dict[str, List[Any]] = {k: [] for k in (entity_rows[0].keys() if entity_rows else [])}
        for row in entity_rows:
            if row.keys() != columns.keys():
                raise SequenceRequestError("All entity_rows must have the same keys.", http_status=422)
            for key, value in row.items():
                columns[key].append(value)
        return columns
    return {k: list(v) for k, v in entity_rows.items()}
