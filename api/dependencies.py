"""What a route may depend on: the settings, a key with a scope, the Temporal client, the
event router, handles to journeys, support sessions, the gate of event requests and the
census /metrics shows.

create_app and its lifespan put each on `app.state` once; routes take them as `Annotated`
parameters, so this module is the only reader of `app.state`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, HTTPException, Request, status
from starlette.requests import HTTPConnection
from temporalio.client import Client

from api.auth import KEY_IN_URL_REFUSED, has_key_in_url, identify, presented_key
from api.sessions import SupportSessions
from routing.events import EventRouter
from settings import Settings
from workflows.handle import Journeys

if TYPE_CHECKING:
    from api.metrics import StageCensus


class EventGate:
    """Event requests in flight. A stalled Temporal holds each for the whole budget: past
    `limit`, the shop is told at once to come back rather than queueing without end."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    @property
    def full(self) -> bool:
        return self.in_flight >= self.limit

    @contextmanager
    def held(self) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


def settings_of(connection: HTTPConnection) -> Settings:
    """Also for code outside a route's parameters (the bounded body reader)."""
    return cast(Settings, connection.app.state.settings)


def _api_keys(request: Request) -> Mapping[str, frozenset[str]]:
    return cast(Mapping[str, frozenset[str]], request.app.state.api_keys)


def _client(request: Request) -> Client:
    return cast(Client, request.app.state.client)


def _router(request: Request) -> EventRouter:
    return cast(EventRouter, request.app.state.router)


def _support_sessions(request: Request) -> SupportSessions:
    return cast(SupportSessions, request.app.state.support_sessions)


def _event_gate(request: Request) -> EventGate:
    return cast(EventGate, request.app.state.event_gate)


def _stage_census(request: Request) -> StageCensus:
    return cast("StageCensus", request.app.state.stage_census)


SettingsDep = Annotated[Settings, Depends(settings_of)]
ApiKeysDep = Annotated[Mapping[str, frozenset[str]], Depends(_api_keys)]
ClientDep = Annotated[Client, Depends(_client)]
RouterDep = Annotated[EventRouter, Depends(_router)]
SessionsDep = Annotated[SupportSessions, Depends(_support_sessions)]
EventGateDep = Annotated[EventGate, Depends(_event_gate)]
StageCensusDep = Annotated["StageCensus", Depends(_stage_census)]


def _journeys(client: ClientDep, settings: SettingsDep) -> Journeys:
    return Journeys(client, timedelta(seconds=settings.temporal_rpc_timeout_seconds))


def requires(scope: str) -> Callable[[Request, ApiKeysDep], str]:
    """A dependency: the caller's key must carry `scope`. Gives the key's label."""

    def check(request: Request, keys: ApiKeysDep) -> str:
        if has_key_in_url(request):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, KEY_IN_URL_REFUSED, headers={"WWW-Authenticate": "Bearer"}
            )
        presented = presented_key(request)
        if presented is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "an API key is required: send `Authorization: Bearer KEY`",
                headers={"WWW-Authenticate": "Bearer"},
            )
        caller = identify(keys, presented)
        if caller is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "unknown API key", headers={"WWW-Authenticate": "Bearer"}
            )
        if scope not in caller.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key lacks the scope {scope!r}")
        return caller.label

    return check


JourneysDep = Annotated[Journeys, Depends(_journeys)]
"""Handles to journeys whose every call ends within CYKLO_TEMPORAL_RPC_TIMEOUT."""
