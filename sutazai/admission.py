"""Admission of model calls at the ingress: a replica refuses at once a call beyond its share
of a model deployment's capacity.

Serve refuses too (BackPressureError past `max_queued_requests`), but only at the handle, after
the request was authenticated, charged in Redis and looked up in the cache. Under a flood those
awaits interleave, so every refusal waited for all of them (make bench, 96 generations at once
on 2 cores: 69 refused with a p50 of 388 ms). Counting here costs nothing and refuses before
any of it; Serve's own bound stays behind it for what this count cannot see (other ingress
replicas, agent runners, jobs).

A replica's share of a deployment: its running places split over the ingress replicas, plus the
queue Serve gives every handle (`max_queued_requests` is per caller, not per deployment).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sutazai.catalog import ModelSpec
from sutazai.errors import Unavailable


def replica_share(spec: ModelSpec, ingress_replicas: int) -> int | None:
    """Calls of `spec`'s deployment one ingress replica may have in flight; None: no bound
    (the deployment queues without limit)."""
    queued = spec.deployment.max_queued_requests
    if queued < 0:
        return None
    running = spec.autoscaling.max_replicas * spec.deployment.max_ongoing_requests
    return math.ceil(running / max(1, ingress_replicas)) + queued


@dataclass
class Admission:
    """This replica's count of one model's calls in flight, against its share."""

    model: str
    limit: int | None
    retry_after_s: int
    in_flight: int = 0

    @property
    def full(self) -> bool:
        return self.limit is not None and self.in_flight >= self.limit

    def take(self, places: int = 1) -> Ticket:
        """Places for a call (a batch takes one per prompt, at most the whole share), or a 503
        with Retry-After when they are not free."""
        if self.limit is not None:
            places = min(places, self.limit)
            if self.in_flight + places > self.limit:
                raise Unavailable(f"model {self.model} is at capacity; retry later", self.retry_after_s)
        self.in_flight += places
        return Ticket(self, places)


@dataclass
class Ticket:
    """Places held by one call; given back exactly once."""

    admission: Admission
    places: int
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission.in_flight -= self.places
