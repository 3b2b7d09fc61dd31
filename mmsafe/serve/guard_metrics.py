"""The guard proxy's Prometheus metrics (``/metrics``), in a registry of its own per app, so two proxies in one
process (tests) count apart."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GuardMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mmsafe_guard_requests", "Chat requests by outcome: passed, rewritten, blocked, "
                                "invalid (4xx from the guard), unauthorized, overloaded (429), upstream_error, "
                                "defense_error", ["outcome"], registry=r)
        self.decisions = Counter("mmsafe_guard_decisions", "Defense decisions by defense, stage and action",
                                 ["defense", "stage", "action"], registry=r)
        self.latency = Histogram("mmsafe_guard_request_seconds", "Time from request to answer (streamed: to the "
                                 "answer's start)", buckets=BUCKETS, registry=r)
        self.defense_seconds = Histogram("mmsafe_guard_defense_seconds", "Time in the defenses per request, by stage",
                                         ["stage"], buckets=BUCKETS, registry=r)
        self.upstream_seconds = Histogram("mmsafe_guard_upstream_seconds", "Time of the upstream call",
                                          buckets=BUCKETS, registry=r)
        self.upstream_errors = Counter("mmsafe_guard_upstream_errors", "Upstream failures: timeout, connection, "
                                       "status (an HTTP error status)", ["kind"], registry=r)
        self.in_flight = Gauge("mmsafe_guard_in_flight", "Requests being handled", registry=r)

    def observe(self, entry: dict[str, Any]) -> None:
        """Count one finished request from its audit entry."""
        self.requests.labels(entry["outcome"]).inc()
        self.latency.observe(entry["latency_s"])
        stages: dict[str, float] = {}
        for d in entry.get("decisions") or ():
            self.decisions.labels(d["defense"], d["stage"], d["action"]).inc()
            stages[d["stage"]] = stages.get(d["stage"], 0.0) + d["seconds"]
        for stage, seconds in stages.items():
            self.defense_seconds.labels(stage).observe(seconds)
        if entry.get("upstream_s") is not None:
            self.upstream_seconds.observe(entry["upstream_s"])

    def text(self) -> bytes:
        return generate_latest(self.registry)
