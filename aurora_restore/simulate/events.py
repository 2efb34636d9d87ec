"""RDS events in the rehearsal: what the stack's EventBridge rule would hand the dispatcher.

When the rehearsal's RDS changes a status (a copy, restore or deletion held in progress by
``--polls`` finishes; a rename, deletion or creation moto carries out at once), RDS would send an
event to EventBridge, and the stack's rule would invoke the dispatcher with
``{"step": "rds_event", "event": <the event>}``. :class:`EventDelivery` does the same after
``--event-delay`` seconds of the rehearsal's clock, or drops the event with probability
``--event-loss`` (EventBridge delivers RDS events on a best-effort basis). The event has the shape
RDS documents for EventBridge (``detail-type`` ``RDS DB Cluster Event``, ``RDS DB Cluster Snapshot
Event`` or ``RDS DB Instance Event``; ``detail`` with ``SourceIdentifier``, ``SourceType``,
``EventID``, ``Message``...). Event IDs: RDS-EVENT-0170 "DB cluster created" and RDS-EVENT-0171
"DB cluster deleted" are RDS's; the others name the change in the message only.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

#: (detail type, SourceType, ARN resource type) per kind of resource.
KINDS = {
    "cluster": ("RDS DB Cluster Event", "CLUSTER", "cluster"),
    "cluster-snapshot": ("RDS DB Cluster Snapshot Event", "CLUSTER_SNAPSHOT", "cluster-snapshot"),
    "instance": ("RDS DB Instance Event", "DB_INSTANCE", "db"),
}


#: How long closing waits for a delivery under way (one dispatcher invocation) to finish.
CLOSE_WAIT_SECONDS = 30.0


@dataclass
class SentEvent:
    """One event the rehearsal's RDS sent: when the change happened, and whether it arrived."""

    kind: str
    identifier: str
    message: str
    changed_at: float
    lost: bool
    delivered_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "identifier": self.identifier,
            "message": self.message,
            "lost": self.lost,
            "delay_s": None if self.delivered_at is None else round(self.delivered_at - self.changed_at, 3),
        }


@dataclass
class EventDelivery:
    """Sends RDS events to the dispatcher after a delay (rehearsal seconds), or loses them."""

    delay_seconds: float
    loss: float
    #: The rehearsal's time scale: one rehearsal second lasts ``scale`` real seconds.
    scale: float
    #: Invokes the dispatcher with an event (the rehearsal's in-process Lambda).
    invoke: Callable[[dict[str, Any]], Any]
    account: str
    seed: int = 0
    #: Events about resources whose identifiers start with one of these are always lost.
    lose_identifiers: tuple[str, ...] = ()
    sent: list[SentEvent] = field(default_factory=list)
    _timers: list[threading.Timer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.loss <= 1:
            raise ValueError(f"--event-loss {self.loss}: must be a fraction from 0 to 1")
        if self.delay_seconds < 0:
            raise ValueError(f"--event-delay {self.delay_seconds}: must be 0 or more seconds")
        self._random = random.Random(self.seed)  # noqa: S311 - which events a rehearsal loses, not a secret

    def now(self) -> float:
        """The rehearsal's clock, in its seconds."""
        return time.time() / self.scale

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at rehearsal time ``when`` (at once when it has passed)."""
        timer = threading.Timer(max(0.0, (when - self.now()) * self.scale), self._guarded(action))
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.append(timer)
        timer.start()

    def _guarded(self, action: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            if not self._closed:
                action()

        return run

    def changed(
        self, kind: str, region: str, identifier: str, message: str, *, at: float | None = None
    ) -> None:
        """RDS changed ``identifier`` at rehearsal time ``at`` (now by default): send its event."""
        changed_at = self.now() if at is None else at
        with self._lock:
            lost = self._random.random() < self.loss or identifier.startswith(self.lose_identifiers)
            sent = SentEvent(kind, identifier, message, changed_at, lost)
            self.sent.append(sent)
        if not lost:
            self.at(changed_at + self.delay_seconds, lambda: self._deliver(sent, region))

    def region_traffic(self, kind: str, region: str, identifier: str, message: str) -> None:
        """An event from the region's ordinary RDS traffic, handed on before the refresh starts.

        A stack in use has seen RDS events in its region (backups, maintenance, earlier refreshes):
        its loops wait for events from the first. Sent now and waited for (or lost, like any other).
        """
        with self._lock:
            lost = self._random.random() < self.loss
            sent = SentEvent(kind, identifier, message, self.now(), lost)
            self.sent.append(sent)
        if not lost:
            self._deliver(sent, region)

    def _deliver(self, sent: SentEvent, region: str) -> None:
        detail_type, source_type, arn_type = KINDS[sent.kind]
        arn = f"arn:aws:rds:{region}:{self.account}:{arn_type}:{sent.identifier}"
        moment = datetime.fromtimestamp(sent.changed_at * self.scale, timezone.utc)
        event_id = {"DB cluster created": "RDS-EVENT-0170", "DB cluster deleted": "RDS-EVENT-0171"}.get(
            sent.message, ""
        )
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": "aws.rds",
            "account": self.account,
            "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region,
            "resources": [arn],
            "detail": {
                "EventCategories": ["notification"],
                "SourceType": source_type,
                "SourceArn": arn,
                "Date": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "Message": sent.message,
                "SourceIdentifier": sent.identifier,
                "EventID": event_id,
            },
        }
        sent.delivered_at = self.now()
        self.invoke({"step": "rds_event", "event": json.loads(json.dumps(event))})

    def close(self) -> None:
        """Cancel what is still pending (the execution has ended) and wait for what is running.

        A delivery under way runs the dispatcher against this rehearsal's moto; left running, it
        would meet the next rehearsal's world (moto reset under it, the handler replaced).
        """
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        for timer in timers:
            if timer.is_alive() and timer is not threading.current_thread():
                timer.join(timeout=CLOSE_WAIT_SECONDS)

    # -- what changes RDS reports -----------------------------------------------------------------
    def register(self, add_hook: Callable[[str, Any], None], *, held: Callable[[str], bool]) -> None:
        """Send the event of each change moto carries out at once (``held(loop)``: the progress
        script holds that loop's resources in progress and sends their events itself)."""

        def after(kind: str, key: str, ident: str, message: str, loop: str | None) -> Any:
            def hook(http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
                item = parsed.get(key)
                if not item or http_response.status_code >= 300 or (loop and held(loop)):
                    return
                self.changed(kind, context.get("client_region") or "", str(item[ident]), message)

            return hook

        add_hook(
            "after-call.rds.CopyDBClusterSnapshot",
            after(
                "cluster-snapshot",
                "DBClusterSnapshot",
                "DBClusterSnapshotIdentifier",
                "Finished DB cluster snapshot copy",
                "copy",
            ),
        )
        add_hook(
            "after-call.rds.RestoreDBClusterFromSnapshot",
            after("cluster", "DBCluster", "DBClusterIdentifier", "DB cluster created", "restore"),
        )
        add_hook(
            "after-call.rds.RestoreDBClusterToPointInTime",
            after("cluster", "DBCluster", "DBClusterIdentifier", "DB cluster created", "restore"),
        )
        add_hook(
            "after-call.rds.CreateDBInstance",
            after("instance", "DBInstance", "DBInstanceIdentifier", "DB instance created", "restore"),
        )
        add_hook(
            "after-call.rds.ModifyDBCluster",
            after("cluster", "DBCluster", "DBClusterIdentifier", "Renamed cluster", None),
        )
        add_hook(
            "after-call.rds.DeleteDBCluster",
            after("cluster", "DBCluster", "DBClusterIdentifier", "DB cluster deleted", "delete"),
        )
        add_hook(
            "after-call.rds.DeleteDBInstance",
            after("instance", "DBInstance", "DBInstanceIdentifier", "DB instance deleted", None),
        )

    def summary(self, since: int = 0) -> dict[str, Any]:
        """What was sent, lost and delivered (from the ``since``-th event on)."""
        sent = self.sent[since:]
        return {
            "delay_s": self.delay_seconds,
            "loss": self.loss,
            "sent": len(sent),
            "lost": sum(1 for s in sent if s.lost),
            "delivered": sum(1 for s in sent if s.delivered_at is not None),
            "events": [s.to_dict() for s in sent],
        }
