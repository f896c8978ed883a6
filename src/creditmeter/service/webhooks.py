"""Outgoing webhooks: endpoints managed by superadmins, and delivery of the outbox's
events to them.

The worker that runs an event's job queues one ``webhook.deliver`` job per endpoint that
hears it, in the same transaction; each is tried, logged and retried with the outbox's
backoff on its own, so one failing receiver delays no other. Bodies are signed per the
Standard Webhooks specification with the ``standardwebhooks`` package.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import random
import secrets
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

import httpx2
import orjson
from sqlalchemy.engine import Connection
from standardwebhooks import Webhook

from creditmeter.core import webhooks as rules
from creditmeter.core.audit import SYSTEM, Action, Actor
from creditmeter.core.errors import InvalidRequest, NotFound
from creditmeter.core.ids import new_id
from creditmeter.core.notifications import WEBHOOK
from creditmeter.core.webhooks import Delivery, Event, WebhookEndpoint
from creditmeter.service import audit, jobs
from creditmeter.store import notifications as notifications_store
from creditmeter.store import outbox
from creditmeter.store import webhooks as store
from creditmeter.store.outbox import Job

DELIVER_JOB: Final = "webhook.deliver"
DISABLED_EVENT: Final = "webhook_endpoint.disabled"
SECRET_PREFIX: Final = "whsec_"
EDITABLE: Final = frozenset({"url", "event_types", "description", "enabled"})
log = logging.getLogger(__name__)


def create(
    conn: Connection,
    now: datetime,
    *,
    url: object,
    event_types: object,
    description: object,
    enabled: object,
    actor: Actor,
    allow_private: bool = False,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (the only time the secret leaves the
    database)."""
    if not isinstance(enabled, bool):
        raise InvalidRequest("enabled must be true or false")
    endpoint = WebhookEndpoint(
        id=new_id("whe"),
        url=rules.url(url, allow_private=allow_private),
        event_types=rules.event_types(event_types),
        description=rules.description(description),
        enabled=enabled,
        created_at=now,
        updated_at=now,
    )
    secret = _new_secret()
    store.insert(conn, endpoint, secret)
    _record(conn, now, actor, Action.WEBHOOK_ENDPOINT_CREATED, endpoint, _shown(endpoint))
    return endpoint, secret


def update(
    conn: Connection,
    now: datetime,
    endpoint_id: str,
    changes: Mapping[str, object],
    actor: Actor,
    allow_private: bool = False,
) -> WebhookEndpoint:
    """Change some of an endpoint's fields; the others keep their values. A new ``url``
    is checked as at creation."""
    current = get(conn, endpoint_id)
    unknown = sorted(set(changes) - EDITABLE)
    if unknown:
        raise InvalidRequest(f"unknown fields {unknown}; an endpoint has {sorted(EDITABLE)}")
    if "enabled" in changes and not isinstance(changes["enabled"], bool):
        raise InvalidRequest("enabled must be true or false")
    changed = replace(
        current,
        url=(
            rules.url(changes["url"], allow_private=allow_private)
            if "url" in changes
            else current.url
        ),
        event_types=rules.event_types(changes.get("event_types", current.event_types)),
        description=rules.description(changes.get("description", current.description)),
        enabled=bool(changes.get("enabled", current.enabled)),
    )
    before, after = _shown(current), _shown(changed)
    diff = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
    if not diff:
        return current
    changed = replace(changed, updated_at=now)
    values = {**after, "updated_at": now}
    if changed.enabled and not current.enabled:
        changed = replace(changed, failures=0, disabled_reason=None)
        values.update(failures=0, disabled_reason=None)
    store.update(conn, endpoint_id, values)
    _record(conn, now, actor, Action.WEBHOOK_ENDPOINT_UPDATED, changed, diff)
    return changed


def rotate_secret(
    conn: Connection, now: datetime, endpoint_id: str, overlap: timedelta, actor: Actor
) -> tuple[WebhookEndpoint, str]:
    """Give an endpoint a new secret, returned this once; deliveries are signed with the
    old one too until ``overlap`` has passed (a rotation before then drops the oldest)."""
    current = get(conn, endpoint_id)
    until = now + rules.overlap(overlap)
    [old, *_] = store.secrets(conn, endpoint_id, now)
    secret = _new_secret()
    store.update(
        conn,
        endpoint_id,
        {
            "secret": secret,
            "previous_secret": old,
            "previous_secret_until": until,
            "updated_at": now,
        },
    )
    rotated = replace(current, previous_secret_until=until, updated_at=now)
    details = {"previous_secret_until": _instant(until)}
    _record(conn, now, actor, Action.WEBHOOK_ENDPOINT_SECRET_ROTATED, rotated, details)
    return rotated, secret


def delete(conn: Connection, now: datetime, endpoint_id: str, actor: Actor) -> None:
    """Delete an endpoint with its deliveries' log; events not yet delivered to it never
    will be."""
    endpoint = get(conn, endpoint_id)
    store.delete(conn, endpoint_id)
    _record(conn, now, actor, Action.WEBHOOK_ENDPOINT_DELETED, endpoint, _shown(endpoint))


def get(conn: Connection, endpoint_id: str) -> WebhookEndpoint:
    found = store.get(conn, endpoint_id)
    if found is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return found


def fan_out(conn: Connection, now: datetime, job: Job) -> int:
    """Queue a delivery of an event's job to each endpoint that hears it; how many. Run
    again for the same job, it queues none twice."""
    event = Event(
        id=job.id,
        type=job.topic.removeprefix(jobs.EVENT_PREFIX),
        created_at=job.created_at,
        data=job.payload,
    )
    queued = 0
    about = event.data.get("endpoint_id") if event.type == DISABLED_EVENT else None
    account_id = event.data.get("account_id")
    if isinstance(account_id, str):
        chosen = notifications_store.get(conn, account_id)
        if chosen is not None and not chosen.wants(event.type, WEBHOOK):
            return 0
    for endpoint in store.list_all(conn):
        if endpoint.hears(event.type) and endpoint.id != about:
            queued += outbox.enqueue(
                conn,
                new_id("job"),
                DELIVER_JOB,
                {"endpoint_id": endpoint.id, "event": _body(event)},
                now,
                dedupe_key=_dedupe_key(event.id, endpoint.id),
            )
    return queued


def redeliver(conn: Connection, now: datetime, endpoint_id: str, delivery_id: str) -> bool:
    """Queue the event of one of an endpoint's deliveries to it once more, with the same
    id; ``False`` if that delivery was redelivered before (so a repeat queues nothing)."""
    endpoint = get(conn, endpoint_id)
    delivery = store.delivery(conn, endpoint_id, delivery_id)
    if delivery is None:
        raise NotFound("webhook delivery", delivery_id)
    if not endpoint.enabled:
        raise InvalidRequest(f"webhook endpoint {endpoint_id} is disabled; enable it first")
    queued = outbox.payload_of(conn, _dedupe_key(delivery.event_id, endpoint_id))
    if queued is None:
        raise NotFound("webhook delivery", delivery_id)
    return outbox.enqueue(
        conn,
        new_id("job"),
        DELIVER_JOB,
        {"endpoint_id": endpoint_id, "event": queued["event"]},
        now,
        dedupe_key=f"webhook-redelivery:{delivery_id}",
    )


def _dedupe_key(event_id: str, endpoint_id: str) -> str:
    return f"webhook:{event_id}:{endpoint_id}"


@dataclass(frozen=True)
class Target:
    """Where a delivery job sends its event, read before the request."""

    url: str
    secrets: tuple[str, ...]
    """Each signs the body: during a rotation's overlap, the new and the old secret."""


def target(conn: Connection, job: Job, now: datetime) -> Target | None:
    """The endpoint a delivery job sends to at ``now``; ``None`` if it was deleted or
    disabled since the event was queued (the job is then done, with nothing sent)."""
    endpoint_id = str(job.payload["endpoint_id"])
    endpoint = store.get(conn, endpoint_id)
    if endpoint is None or not endpoint.enabled:
        return None
    return Target(endpoint.url, store.secrets(conn, endpoint_id, now))


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    latency_ms: int
    error: str | None


def send(
    to: Target,
    job: Job,
    now: datetime,
    timeout: float,
    *,
    allow_private: bool = False,
    client: httpx2.Client | None = None,
) -> Answer:
    """POST the job's event to its endpoint, signed at ``now``; a 2xx answer is success,
    anything else (another status, a redirect, a timeout, a refused connection) is an
    error. Unless ``allow_private``, the endpoint's host is resolved first and the request
    goes to the address checked, so a name that resolves to a private address, now or
    between the check and the connection, is never sent anything. ``client`` keeps its
    connections open between deliveries (one made for this request otherwise)."""
    body = orjson.dumps(job.payload["event"])
    event_id = str(job.payload["event"]["id"])
    headers = {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(Webhook(s).sign(event_id, now, body) for s in to.secrets),
    }
    started = time.perf_counter()
    try:
        if allow_private:
            url: str | httpx2.URL = to.url
            extensions: dict[str, Any] = {}
        else:
            pinned = public_address(to.url)
            url, extensions = pinned.url, {"sni_hostname": pinned.name}
            headers["host"] = pinned.host
        with _client(client) as http:
            response = http.post(
                url, content=body, headers=headers, timeout=timeout, extensions=extensions
            )
    except Refused as error:
        return Answer(None, _since(started), f"Refused: {error}")
    except httpx2.HTTPError as error:
        return Answer(None, _since(started), f"{type(error).__name__}: {error}")
    latency = _since(started)
    if 200 <= response.status_code < 300:
        return Answer(response.status_code, latency, None)
    return Answer(response.status_code, latency, f"HTTP {response.status_code}")


def client() -> httpx2.Client:
    """An HTTP client for deliveries: no proxies from the environment (the address
    checked is the address connected to), no redirects followed."""
    return httpx2.Client(trust_env=False, follow_redirects=False)


@contextmanager
def _client(shared: httpx2.Client | None) -> Iterator[httpx2.Client]:
    if shared is not None:
        yield shared
        return
    with client() as own:
        yield own


class Refused(Exception):
    """The endpoint's host resolves to an address webhooks are not sent to."""


@dataclass(frozen=True)
class Pinned:
    url: httpx2.URL
    """The endpoint's URL with its host replaced by the address checked."""
    host: str
    """The ``Host`` header: the URL's host (and port) as written."""
    name: str
    """The host's name, for TLS (SNI and the certificate's check)."""


def public_address(url: str) -> Pinned:
    """Where to send a request for ``url``: the first address its host resolves to;
    raises :class:`Refused` if it resolves to none, or to any that is not public."""
    parsed = httpx2.URL(url)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise Refused(f"{host} does not resolve: {error}") from error
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not addresses:
        raise Refused(f"{host} does not resolve")
    for address in addresses:
        why = rules.refusal(address)
        if why is not None:
            raise Refused(
                f"{host} resolves to {address}, a {why} address "
                f"({rules.ALLOW_PRIVATE_SETTING} is not set)"
            )
    pinned = parsed.copy_with(host=str(addresses[0]))
    return Pinned(pinned, parsed.netloc.decode("ascii"), host)


def record(
    conn: Connection,
    now: datetime,
    job: Job,
    answer: Answer,
    disable_after: int = rules.DISABLE_AFTER,
    rng: random.Random | None = None,
) -> Delivery:
    """Log a delivery attempt and finish its job, or schedule its retry on the delivery
    schedule (``rng`` draws its jitter). A success ends the endpoint's run of failures;
    the ``disable_after``-th failure in a row disables it."""
    retry = None if answer.error is None else jobs.retry_at(job, now, rng)
    event = job.payload["event"]
    delivery = Delivery(
        id=new_id("whd"),
        endpoint_id=str(job.payload["endpoint_id"]),
        event_id=str(event["id"]),
        event_type=str(event["type"]),
        attempt=job.attempts,
        status_code=answer.status_code,
        latency_ms=answer.latency_ms,
        error=answer.error,
        next_retry_at=retry,
        created_at=now,
    )
    endpoint = store.get(conn, delivery.endpoint_id)
    if endpoint is not None:
        store.add_delivery(conn, delivery)
        if answer.error is None:
            if endpoint.failures:
                store.update(conn, endpoint.id, {"failures": 0})
        else:
            failures = store.count_failure(conn, endpoint.id)
            if failures >= disable_after and endpoint.enabled:
                _disable(conn, now, endpoint, failures, answer.error)
    if answer.error is None:
        outbox.finish(conn, job, now)
    else:
        outbox.fail(conn, job, answer.error, now, retry)
    return delivery


def _disable(
    conn: Connection, now: datetime, endpoint: WebhookEndpoint, failures: int, error: str
) -> None:
    """Disable an endpoint and tell the operators: the audit log, a warning in the log,
    and a ``webhook_endpoint.disabled`` event (to the other endpoints, and by email to
    the operator's address) in the same transaction."""
    reason = f"disabled after {failures} failed deliveries in a row; last: {error}"[:500]
    store.update(
        conn, endpoint.id, {"enabled": False, "disabled_reason": reason, "updated_at": now}
    )
    details = {"failures": failures, "reason": reason}
    _record(conn, now, SYSTEM, Action.WEBHOOK_ENDPOINT_DISABLED, endpoint, details)
    outbox.enqueue(
        conn,
        new_id("job"),
        jobs.EVENT_PREFIX + DISABLED_EVENT,
        {"endpoint_id": endpoint.id, "url": endpoint.url, **details},
        now,
    )
    log.warning(
        "webhook endpoint %s (%s) disabled after %d failed deliveries in a row; last: %s",
        endpoint.id,
        endpoint.url,
        failures,
        error,
    )


def _body(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "created_at": _instant(event.created_at),
        "data": dict(event.data),
    }


def _instant(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _shown(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "description": endpoint.description,
        "enabled": endpoint.enabled,
    }


def _record(
    conn: Connection,
    now: datetime,
    actor: Actor,
    action: Action,
    endpoint: WebhookEndpoint,
    details: Mapping[str, Any],
) -> None:
    audit.record(conn, now, actor, action, subject_id=endpoint.id, details=details)
