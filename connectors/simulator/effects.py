"""Measuring what each scenario did to the stream, for the manifest."""

from collections import Counter
from datetime import datetime
from typing import Any

from allocflow.connectors.simulator.engine import SimulationConfig
from allocflow.connectors.simulator.scenarios import Window
from allocflow.models.envelope import EventEnvelope
from allocflow.models.orders import OrderPlaced
from allocflow.models.shipments import ShipmentCreated


class ScenarioEffects:
    """Counts, over the clean events, the facts each scenario should change."""

    def __init__(self, config: SimulationConfig) -> None:
        """Observe a simulation of ``config``."""
        self._config = config
        self._orders: Counter[tuple[str, bool]] = Counter()
        self._promises: dict[str, tuple[str, datetime]] = {}
        self._deliveries: Counter[str] = Counter()
        self._late: Counter[str] = Counter()
        self._types: Counter[str] = Counter()

    def observe(self, event: EventEnvelope) -> None:
        """Account for one clean event."""
        self._types[event.event_type] += 1
        if isinstance(event, OrderPlaced):
            spike = self._config.behaviour.demand_spike
            inside = spike is not None and self._inside(spike.window, event.event_time)
            self._orders[(event.region, inside)] += 1
        elif isinstance(event, ShipmentCreated):
            lane = f"{event.carrier_id}@{event.lane}"
            self._promises[event.shipment_id] = (lane, event.promised_delivery)
        elif event.event_type == "shipment.delivered":
            lane, promised = self._promises.pop(event.message_key())
            self._deliveries[lane] += 1
            self._late[lane] += event.event_time > promised

    def summary(self, simulation_stats: Counter[str]) -> dict[str, Any]:
        """Return the effects of every active scenario, and the baseline rates."""
        behaviour = self._config.behaviour
        placed = max(1, self._types["order.placed"])
        effects: dict[str, Any] = {
            "orders_changed_share": round(self._types["order.changed"] / placed, 4),
            "orders_cancelled_share": round(self._types["order.cancelled"] / placed, 4),
            "credit_holds_placed": self._types["credit.hold_placed"],
            "credit_holds_released": self._types["credit.hold_released"],
            "backordered_lines": simulation_stats["sim.backordered_lines"],
        }
        if behaviour.demand_spike is not None:
            effects["demand_spike"] = self._spike_effect(behaviour.demand_spike.region)
        if behaviour.inbound_delay is not None:
            effects["inbound_delay"] = {
                "supplier_id": behaviour.inbound_delay.supplier_id,
                "purchase_orders_slipped": simulation_stats["sim.slipped_purchase_orders"],
            }
        if behaviour.carrier_disruption is not None:
            disruption = behaviour.carrier_disruption
            lane = f"{disruption.carrier_id}@{disruption.node_id}>{disruption.region}"
            effects["carrier_disruption"] = {
                "lane": lane,
                "shipments_disrupted": simulation_stats["sim.disrupted_shipments"],
                "late_share_on_lane": self._late_share([lane]),
                "late_share_elsewhere": self._late_share(
                    [other for other in self._deliveries if other != lane]
                ),
            }
        return effects

    def _inside(self, window: Window, moment: datetime) -> bool:
        return window.contains((moment - self._config.start) / self._config.horizon)

    def _spike_effect(self, region: str) -> dict[str, Any]:
        def share(inside: bool) -> float:
            total = sum(n for (_, flag), n in self._orders.items() if flag is inside)
            return self._orders[(region, inside)] / max(1, total - self._orders[(region, inside)])

        inside, outside = share(True), share(False)
        return {
            "region": region,
            "orders_in_region_inside_window": self._orders[(region, True)],
            "orders_in_region_outside_window": self._orders[(region, False)],
            "region_to_rest_ratio_inside": round(inside, 4),
            "region_to_rest_ratio_outside": round(outside, 4),
            "measured_factor": round(inside / outside, 3) if outside else None,
        }

    def _late_share(self, lanes: list[str]) -> float | None:
        delivered = sum(self._deliveries[lane] for lane in lanes)
        late = sum(self._late[lane] for lane in lanes)
        return round(late / delivered, 4) if delivered else None
