"""Feast's feature server with a ``/push`` whose cost does not grow with the registry (``feast-sequence serve``).

``feast serve``'s ``/push`` calls ``store.push``, which pays for every view in the registry, and its
route cannot be swapped without patching Feast. This command builds Feast's own FastAPI app
(``feast.feature_server.get_app``: every endpoint, auth, the registry refresh timer, audit logging),
replaces only its ``/push`` route by one that calls ``feast_sequence.push_async`` (same request
body, same permission checks, same metrics and statuses), and serves it as ``feast serve`` does:
gunicorn with uvicorn workers, Feast's per-worker metrics hooks, every ``feast serve`` option.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Dict, List, Tuple

import pandas as pd
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from feast import FeatureStore
from feast import metrics as feast_metrics
from feast.data_source import PushMode
from feast.feature_server import PushFeaturesRequest, get_app
from feast.permissions.server.rest import inject_user_details

from feast_sequence.errors import FeastSequenceError, SequenceInputError
from feast_sequence.feast_internals import gunicorn_metrics_hooks
from feast_sequence.online.push import push_async, push_json_async

_logger = logging.getLogger(__name__)
_MODES = {"online": PushMode.ONLINE, "offline": PushMode.OFFLINE, "online_and_offline": PushMode.ONLINE_AND_OFFLINE}


def fast_push_app(store: FeatureStore, registry_ttl_sec: int) -> "FastAPI":
    """Feast's feature-server app for ``store`` with its ``/push`` route replaced by the fast push.

    With ``feature_server.offline_push_batching_enabled``, a push that writes offline goes to
    Feast's own route, whose batcher lives inside ``get_app``.
    """
    app = get_app(store, registry_ttl_sec)
    app.add_exception_handler(FeastSequenceError, _answer_error)
    position, feast_push = _remove_post_route(app, "/push")
    batches_offline = bool(store.config.feature_server and store.config.feature_server.offline_push_batching_enabled)

    @app.post("/push", dependencies=[Depends(inject_user_details)])  # type: ignore[untyped-decorator]
    async def push(request: PushFeaturesRequest) -> Response:
        to = _MODES.get(request.to)
        if to is not None and batches_offline and to != PushMode.ONLINE:
            return await feast_push(request)  # type: ignore[no-any-return]
        with feast_metrics.track_request_latency("/push"):
            if to is None:
                raise ValueError(
                    f"{request.to} is not a supported push format. Please specify one of these "
                    "['online', 'offline', 'online_and_offline']."
                )
            name, allow_cache = request.push_source_name, request.allow_registry_cache
            await push_columns_async(store, name, request.df, to, allow_cache)
            feast_metrics.track_push(name, request.to)
            return Response(status_code=200)

    # Where Feast's route was, not last: Starlette tries the routes in order, per request.
    app.router.routes.insert(position, app.router.routes.pop())
    fast_app: FastAPI = app
    return fast_app


async def push_columns_async(
    store: FeatureStore, push_source_name: str, columns: Dict[str, List[Any]], to: PushMode, allow_cache: bool
) -> None:
    """A ``/push`` request's columns pushed: a small online one without pandas when it can be
    (``push_json_async``), else as a frame (``push_async``). Both check the caller's permissions on
    every view before writing any, and raise the same errors (the small path hands anything doubtful
    to the frame path)."""
    if to == PushMode.ONLINE and await push_json_async(store, push_source_name, columns, allow_cache):
        return
    await push_async(store, push_source_name, _frame(columns), to, allow_cache)


async def _answer_error(request: Request, error: Exception) -> JSONResponse:
    """Answer a FeastSequenceError with its status and Feast's error body, as Feast's own handler does,
    but log it once: a rejected request (4xx: bad input, a limit) as one WARNING line, a failure of
    ours (5xx) as one ERROR with its traceback. Feast's handler for every Exception logs the
    traceback twice, and Starlette re-raises what that handler answered, so uvicorn logs it a third
    time; a handler for this class answers first and ends it."""
    assert isinstance(error, FeastSequenceError)  # registered for this class only
    status = error.http_status_code()
    what = f"{request.method} {request.url.path} answered {status}: {type(error).__name__}: {error}"
    if status < 500:
        _logger.warning(" ".join(what.split()))
    else:
        _logger.error(what, exc_info=error)
    return JSONResponse(status_code=status, content=error.to_error_detail())


def _frame(columns: Dict[str, List[Any]]) -> pd.DataFrame:
    """The pushed columns as a frame; ragged columns are the client's mistake (422), not pandas' ValueError (500)."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise SequenceInputError(
            f"Pushed columns have different lengths ({', '.join(f'{k}: {n}' for k, n in lengths.items())}): "
            "each column of 'df' must hold one value per event. Nothing was written."
        )
    return pd.DataFrame(columns)


def _remove_post_route(app: "FastAPI", path: str) -> Tuple[int, Any]:
    """Remove ``POST path`` from ``app``; return its position among the routes and its endpoint."""
    for position, route in enumerate(app.router.routes):
        if isinstance(route, APIRoute) and route.path == path and "POST" in (route.methods or ()):
            del app.router.routes[position]
            return position, route.endpoint
    raise RuntimeError(f"Feast's feature server has no POST {path} route to replace (Feast version changed?).")


def run_feature_server(
    store: FeatureStore,
    host: str,
    port: int,
    no_access_log: bool,
    workers: int,
    worker_connections: int,
    max_requests: int,
    max_requests_jitter: int,
    keep_alive_timeout: int,
    registry_ttl_sec: int,
    tls_key_path: str,
    tls_cert_path: str,
    metrics: bool,
) -> None:
    """``feast.feature_server.start_server`` (Feast 0.67) with ``fast_push_app``: the metrics
    server, auth and security managers, then gunicorn with uvicorn workers."""
    import gunicorn.app.base
    from feast.permissions.server.utils import (
        ServerType,
        init_auth_manager,
        init_security_manager,
        str_to_auth_manager_type,
    )

    if bool(tls_key_path) != bool(tls_cert_path):
        raise ValueError("Both key and cert file paths are required to start server in TLS mode.")
    metrics_config = store.config.feature_server.metrics if store.config.feature_server else None
    metrics_active = metrics or bool(metrics_config and metrics_config.enabled)
    if metrics_active:
        feast_metrics.start_metrics_server(
            store,
            metrics_config=feast_metrics.build_metrics_flags(metrics_config),
            start_resource_monitoring=False,  # per worker, after the fork (the hooks below)
            start_freshness_monitoring=False,
        )
    auth_type = str_to_auth_manager_type(store.config.auth_config.type)
    init_security_manager(auth_type=auth_type, fs=store)
    init_auth_manager(auth_type=auth_type, server_type=ServerType.REST, auth_config=store.config.auth_config)
    options: Dict[str, Any] = {
        "bind": f"{host}:{port}",
        "accesslog": None if no_access_log else "-",
        "workers": workers,
        "worker_connections": worker_connections,
        "max_requests": max_requests,
        "max_requests_jitter": max_requests_jitter,
        "keepalive": keep_alive_timeout,
        "keyfile": tls_key_path or None,
        "certfile": tls_cert_path or None,
        "worker_class": "uvicorn_worker.UvicornWorker",
    }
    if metrics_active:
        post_worker_init, child_exit = gunicorn_metrics_hooks()
        options["post_worker_init"] = functools.partial(post_worker_init, store)
        options["child_exit"] = child_exit
    app = fast_push_app(store, registry_ttl_sec)

    class Application(gunicorn.app.base.BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    Application().run()
