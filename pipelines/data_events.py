"""A new data version as a Prefect event: what starts a retrain when the data changes.

``announce_data_version(md5)`` emits ``ganpkg.data.updated`` about the resource
``ganpkg.data.<md5>`` (the data.dvc md5). The retrain deployment has a deployment trigger on
that event (prefect.yaml and ``ganpkg serve``), so new data starts one retrain without waiting
for the cron. A data version is announced once: an md5 the server already has an event for
(the last 180 days, Prefect's default window) is not sent again, and the event id is derived
from the md5, so two announcements racing each other are one event to Prefect.

Only a configured Prefect server (PREFECT_API_URL) keeps deployments and their triggers: with
none, nothing is sent (Prefect would otherwise start a temporary server to receive it).
"""

from __future__ import annotations

import uuid

EVENT = "ganpkg.data.updated"
_NAMESPACE = uuid.UUID("6f0c3f36-6a52-4c2e-9a0e-2d1b0f7d9a11")  # ganpkg's data events


def resource(md5: str) -> dict[str, str]:
    return {"prefect.resource.id": f"ganpkg.data.{md5}", "prefect.resource.name": "data.dvc",
            "ganpkg.data.md5": md5}


def already_announced(md5: str) -> bool:
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(EventFilter(
            event=EventNameFilter(name=[EVENT]),
            resource=EventResourceFilter(id=[resource(md5)["prefect.resource.id"]])), limit=1)
    return bool(page.events)


def announce_data_version(md5: str, source: str = "ganpkg data") -> str:
    """Emit ``ganpkg.data.updated`` for this data version unless it was announced before;
    returns one line saying what happened."""
    from prefect.events import emit_event
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        return "no Prefect server configured (PREFECT_API_URL): no data event sent"
    if already_announced(md5):
        return f"data version {md5} was announced before: no second retrain"
    emit_event(EVENT, resource=resource(md5), payload={"source": source},
               id=uuid.uuid5(_NAMESPACE, md5))
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()  # a command line exits next: send it now
    return f"announced data version {md5} ({EVENT}): the retrain deployment's trigger starts one"
