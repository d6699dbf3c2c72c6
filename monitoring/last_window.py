"""A Prometheus collector holding the business figures of the last closed window.

Plain gauges would export zeros from every process that imports the metrics module
(a producer "earning" 0 revenue) and could be scraped half-updated. This collector
exports nothing until a window closed, and swaps each aggregate's figures atomically.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

PREFIX = "kappa_business_"
BILLING = "billing"
NETWORK = "network"

FIGURES: tuple[tuple[str, str, str, str], ...] = (
    # (metric name after the prefix, help, table, snapshot attribute)
    (
        "window_revenue",
        "Revenue of the last closed window (rate-card currency)",
        BILLING,
        "revenue",
    ),
    (
        "window_active_callers",
        "Callers billed in the last closed window",
        BILLING,
        "active_callers",
    ),
    (
        "window_billable_minutes",
        "Billable minutes of the last closed window",
        BILLING,
        "billable_minutes",
    ),
    ("window_towers", "Towers reporting events in the last closed window", NETWORK, "towers"),
    (
        "window_low_signal_towers",
        "Towers whose low-signal share reached the threshold in the last closed window",
        NETWORK,
        "low_signal_towers",
    ),
    (
        "window_low_signal_ratio",
        "Share of the last closed window's events with low signal (0..1)",
        NETWORK,
        "low_signal_ratio",
    ),
    (
        "window_average_signal_bars",
        "Event-weighted mean signal strength of the last closed window (bars, 1..5)",
        NETWORK,
        "average_signal_bars",
    ),
)
"""The single-value gauges of the last closed window, each read from one snapshot."""


@dataclass(frozen=True)
class BillingSnapshot:
    """Billing figures of one closed window, over all callers."""

    window_end_s: float
    emitted_at_s: float
    revenue: float
    active_callers: int
    billable_minutes: int


@dataclass(frozen=True)
class NetworkSnapshot:
    """Network-health figures of one closed window, over all towers."""

    window_end_s: float
    emitted_at_s: float
    towers: int
    low_signal_towers: int
    low_signal_ratio: float
    average_signal_bars: float
    events_by_type: dict[str, int] = field(default_factory=dict)


class LastClosedWindow(Collector):
    """The ``kappa_business_*`` metrics (the names are listed in ``monitoring.metrics``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._billing: BillingSnapshot | None = None
        self._network: NetworkSnapshot | None = None
        self._closed = {BILLING: 0, NETWORK: 0}
        if registry is not None:
            registry.register(self)

    def set_billing(self, snap: BillingSnapshot, windows: int = 1) -> None:
        """Publish ``snap`` unless a newer window is already published; count ``windows``."""
        with self._lock:
            self._closed[BILLING] += windows
            if self._billing is None or snap.window_end_s >= self._billing.window_end_s:
                self._billing = snap

    def set_network(self, snap: NetworkSnapshot, windows: int = 1) -> None:
        """Publish ``snap`` unless a newer window is already published; count ``windows``."""
        with self._lock:
            self._closed[NETWORK] += windows
            if self._network is None or snap.window_end_s >= self._network.window_end_s:
                self._network = snap

    @property
    def billing(self) -> BillingSnapshot | None:
        return self._billing

    @property
    def network(self) -> NetworkSnapshot | None:
        return self._network

    def reset(self) -> None:
        """Forget every window (tests)."""
        with self._lock:
            self._billing = None
            self._network = None
            self._closed = {BILLING: 0, NETWORK: 0}

    def describe(self) -> Iterable[Metric]:
        return list(self._families(None, None, {BILLING: 0, NETWORK: 0}, describe=True))

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            billing, network, closed = self._billing, self._network, dict(self._closed)
        return list(self._families(billing, network, closed, describe=False))

    @staticmethod
    def _families(
        billing: BillingSnapshot | None,
        network: NetworkSnapshot | None,
        closed: dict[str, int],
        *,
        describe: bool,
    ) -> Iterator[Metric]:
        end = GaugeMetricFamily(
            f"{PREFIX}window_end_timestamp_seconds",
            "Event-time end of the last closed window, by aggregate table",
            labels=["table"],
        )
        delay = GaugeMetricFamily(
            f"{PREFIX}window_emit_delay_seconds",
            "Wall time when the last closed window was emitted minus its "
            "event-time end, by aggregate table",
            labels=["table"],
        )
        count = CounterMetricFamily(
            f"{PREFIX}windows_closed",
            "Closed windows recorded, by aggregate table",
            labels=["table"],
        )
        for table, snap in ((BILLING, billing), (NETWORK, network)):
            if snap is not None:
                end.add_metric([table], snap.window_end_s)
                delay.add_metric([table], snap.emitted_at_s - snap.window_end_s)
            if closed[table]:
                count.add_metric([table], closed[table])
        yield from (end, delay, count)

        snaps: dict[str, BillingSnapshot | NetworkSnapshot | None] = {
            BILLING: billing,
            NETWORK: network,
        }
        for name, doc, table, attr in FIGURES:
            fam = GaugeMetricFamily(f"{PREFIX}{name}", doc)
            snap = snaps[table]
            if snap is not None:
                fam.add_metric([], float(getattr(snap, attr)))
            yield fam
        n = network
        events = GaugeMetricFamily(
            f"{PREFIX}window_events",
            "Events of the last closed window, by call type",
            labels=["call_type"],
        )
        if n is not None and not describe:
            for call_type, value in sorted(n.events_by_type.items()):
                events.add_metric([call_type], value)
        yield events
