"""Named scenarios: what each one changes in the simulated distributor's behaviour.

Windows are fractions of the order-arrival horizon, so a scenario shows in a short run
as well as a long one.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta


@dataclass(frozen=True)
class Window:
    """A share of the order-arrival horizon, e.g. ``Window(0.3, 0.7)``."""

    start: float
    end: float

    def contains(self, fraction: float) -> bool:
        """Return whether ``fraction`` of the horizon lies in the window."""
        return self.start <= fraction < self.end


@dataclass(frozen=True)
class DemandSpike:
    """A weather event: orders from one region multiply, skewed to storm supplies.

    Attributes:
        region: Region hit by the weather.
        factor: Multiplier of the region's order arrival rate inside the window.
        category: Category whose SKUs sell more there.
        category_boost: Multiplier of that category's popularity there.
        window: When it happens.
    """

    region: str = "southeast"
    factor: float = 3.0
    category: str = "storm-supplies"
    category_boost: float = 4.0
    window: Window = Window(0.3, 0.7)


@dataclass(frozen=True)
class InboundDelay:
    """A supplier ships late: its open purchase orders slip.

    Attributes:
        supplier_id: Supplier that slips.
        min_delay: Least slip of an ETA.
        max_delay: Largest slip of an ETA.
        window: When the slips are announced.
    """

    supplier_id: str = "SUP-GLOBEX"
    min_delay: timedelta = timedelta(hours=48)
    max_delay: timedelta = timedelta(hours=120)
    window: Window = Window(0.2, 0.8)


@dataclass(frozen=True)
class CarrierDisruption:
    """A carrier's lane degrades: transit stretches, exceptions, ETAs slip, scans stall.

    Attributes:
        carrier_id: Carrier disrupted.
        node_id: Origin node of the lane.
        region: Destination region of the lane.
        transit_factor: Multiplier of transit time of the disrupted shipments.
        min_extra_delay: Least hold-up at the carrier's hub, added to the transit.
        max_extra_delay: Largest hold-up at the carrier's hub.
        window: Shipments on the lane for orders placed in this window are disrupted.
    """

    carrier_id: str = "CARR-NORTHSTAR"
    node_id: str = "DC-ATL"
    region: str = "southeast"
    transit_factor: float = 2.0
    min_extra_delay: timedelta = timedelta(hours=24)
    max_extra_delay: timedelta = timedelta(hours=60)
    window: Window = Window(0.2, 0.8)


@dataclass(frozen=True)
class Behaviour:
    """Every knob scenarios turn. The defaults are the baseline.

    Attributes:
        change_rate: Share of orders changed before fulfilment.
        cancel_rate: Share of orders cancelled before fulfilment.
        credit_holds_per_1000_orders: Credit holds placed per thousand orders.
        demand_spike: Weather event, if any.
        inbound_delay: Supplier delay, if any.
        carrier_disruption: Carrier disruption, if any.
    """

    change_rate: float = 0.03
    cancel_rate: float = 0.015
    credit_holds_per_1000_orders: float = 0.5
    demand_spike: DemandSpike | None = None
    inbound_delay: InboundDelay | None = None
    carrier_disruption: CarrierDisruption | None = None


@dataclass(frozen=True)
class Scenario:
    """A named change to the baseline behaviour."""

    name: str
    description: str
    apply: Callable[[Behaviour], Behaviour]


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "baseline",
            "Normal operations; small rates of changes, cancels and credit holds.",
            lambda behaviour: behaviour,
        ),
        Scenario(
            "demand-spike",
            "Weather event in the southeast: 3x orders there, storm supplies 4x as popular.",
            lambda behaviour: replace(behaviour, demand_spike=DemandSpike()),
        ),
        Scenario(
            "inbound-delay",
            "Supplier SUP-GLOBEX slips: its open purchase orders arrive 2-5 days late.",
            lambda behaviour: replace(behaviour, inbound_delay=InboundDelay()),
        ),
        Scenario(
            "carrier-disruption",
            "CARR-NORTHSTAR on lane DC-ATL>southeast: 2x transit plus 1-2.5 days at the hub, "
            "exceptions, stalled scans, slipping ETAs.",
            lambda behaviour: replace(behaviour, carrier_disruption=CarrierDisruption()),
        ),
        Scenario(
            "credit-holds",
            "Finance places credit holds on ~30 per 1000 orders' customers and releases them.",
            lambda behaviour: replace(behaviour, credit_holds_per_1000_orders=30.0),
        ),
        Scenario(
            "order-changes",
            "Customers change 15% and cancel 8% of their orders.",
            lambda behaviour: replace(behaviour, change_rate=0.15, cancel_rate=0.08),
        ),
    )
}


def behaviour_for(names: list[str]) -> Behaviour:
    """Combine scenarios, in order, on top of the baseline.

    Args:
        names: Scenario names; see ``SCENARIOS``.

    Raises:
        ValueError: A name is not a known scenario.
    """
    behaviour = Behaviour()
    for name in names:
        if name not in SCENARIOS:
            known = ", ".join(SCENARIOS)
            raise ValueError(f"unknown scenario {name!r}; choose from: {known}")
        behaviour = SCENARIOS[name].apply(behaviour)
    return behaviour
