"""Discrete-event simulation of the distributor, emitting contract events in time order.

The engine keeps a clock and a queue of timed actions. Actions change the distributor's
state (stock, orders, shipments) and emit the events the ERP, WMS, TMS and carriers
would send, stamped with the simulated time.
"""

import heapq
import random
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from allocflow.connectors.simulator.demand import (
    SkuPicker,
    diurnal_factor,
    expected_units_per_order,
    order_lines,
    promised_date,
)
from allocflow.connectors.simulator.scenarios import Behaviour, Window
from allocflow.connectors.simulator.world import Customer, Lane, World, build_world
from allocflow.models.carrier import (
    CarrierDelivered,
    CarrierEtaUpdated,
    CarrierException,
    CarrierInTransit,
    CarrierPickedUp,
)
from allocflow.models.envelope import EventEnvelope, Source
from allocflow.models.ids import stable_id
from allocflow.models.inventory import (
    AdjustmentReason,
    InboundExpected,
    ReservationCreated,
    ReservationReleased,
    StockAdjusted,
    StockSnapshot,
)
from allocflow.models.orders import (
    Channel,
    CreditHoldPlaced,
    CreditHoldReleased,
    LineChange,
    OrderCancelled,
    OrderChanged,
    OrderPlaced,
)
from allocflow.models.shipments import (
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentLine,
    ShipmentPicked,
    ShipmentShortShipped,
    ShortLine,
)

_E = TypeVar("_E", bound=EventEnvelope)
DEFAULT_START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
_HOUR = timedelta(hours=1)
_DRAIN_LIMIT = timedelta(days=10)
_REVIEW_EVERY = timedelta(hours=4)
_LEAD_TIME_HOURS = (24.0, 60.0)
_REORDER_DAYS = 2.5
"""Reorder point in days of demand: the mean lead time plus safety stock."""
_ORDER_UP_TO_DAYS = 5.0
_RESYNC_EVERY = timedelta(hours=6)
_RESYNC_SHARE = 0.03
_CYCLE_COUNT_SHARE = 0.005
_RESERVATIONS_PER_HOUR = 6.0
_RETURNS_PER_HOUR = 2.0
_SHORT_PICK_SHARE = 0.01
_LATE_DISPATCH_SHARE = 0.04
_DISPATCH_CUTOFF = timedelta(hours=6)
_ETA_TOLERANCE = timedelta(hours=3)
_DISRUPTED_EXCEPTION_SHARE = 0.3
_DISRUPTED_STALL_SHARE = 0.3
_CHANNEL_SHARES = {Channel.ECOMMERCE: 0.5, Channel.EDI: 0.25, Channel.SALES: 0.25}
_EXCEPTION_CODES = ("WEATHER_DELAY", "HUB_BACKLOG", "CAPACITY", "MISSED_LINEHAUL")


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate.

    Attributes:
        seed: Seed of every random draw; the same config gives the same events.
        orders: Stop placing orders after this many (exclusive with ``duration``).
        duration: Stop placing orders after this much simulated time.
        orders_per_hour: Mean order arrival rate across regions before scenarios.
        skus: Number of SKUs.
        customers: Number of customers.
        behaviour: Baseline plus scenarios.
        start: Simulated time of the first event.
        stock_cover_days: Mean days of demand each node holds of each SKU at the start.
    """

    seed: int
    orders: int | None = None
    duration: timedelta | None = None
    orders_per_hour: float = 400.0
    skus: int = 400
    customers: int = 500
    behaviour: Behaviour = field(default_factory=Behaviour)
    start: datetime = DEFAULT_START
    stock_cover_days: float = 1.5

    def __post_init__(self) -> None:
        """Check that exactly one size is given and that it is positive."""
        if (self.orders is None) == (self.duration is None):
            raise ValueError("give exactly one of orders or duration")
        if self.orders is not None and self.orders <= 0:
            raise ValueError(f"orders must be positive (got {self.orders})")
        if self.duration is not None and self.duration <= timedelta(0):
            raise ValueError(f"duration must be positive (got {self.duration})")
        if self.orders_per_hour <= 0 or self.skus <= 0 or self.customers <= 0:
            raise ValueError("orders_per_hour, skus and customers must be positive")
        if self.stock_cover_days <= 0:
            raise ValueError(f"stock_cover_days must be positive (got {self.stock_cover_days})")

    @property
    def horizon(self) -> timedelta:
        """Expected span of order arrivals; scenario windows are shares of it."""
        if self.duration is not None:
            return self.duration
        return timedelta(hours=(self.orders or 0) / self.orders_per_hour)


@dataclass
class _Order:
    order_id: str
    customer: Customer
    lines: dict[str, int]
    skus: dict[str, str]
    promised: datetime
    placed_at: datetime
    cancelled: bool = False
    fulfilled: bool = False


@dataclass
class _Backorder:
    order_id: str
    line_id: str
    qty: int
    home_node_id: str


@dataclass
class _PurchaseOrder:
    po_id: str
    supplier_id: str
    node_id: str
    sku: str
    qty: int
    eta: datetime
    version: int = 0


@dataclass
class _Shipment:
    shipment_id: str
    order_id: str
    lane: Lane
    lines: list[ShipmentLine]
    tracking_no: str
    order_placed_at: datetime
    delivery_at: datetime = DEFAULT_START
    carrier_eta: datetime = DEFAULT_START
    disrupted: bool = False


@dataclass
class _Stock:
    physical: int = 0
    reserved: int = 0
    on_order: int = 0
    backlog: int = 0
    reorder_point: int = 1
    order_up_to: int = 3

    @property
    def available(self) -> int:
        return max(0, self.physical - self.reserved)


class Simulation:
    """The distributor's operations over simulated time; iterate ``run()`` for events."""

    def __init__(self, config: SimulationConfig) -> None:
        """Build the world and the initial state from ``config``."""
        self.config = config
        self.behaviour = config.behaviour
        self.now = config.start
        self.orders_placed = 0
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(f"allocflow-sim:{config.seed}")
        self.world: World = build_world(self._rng, config.skus, config.customers)
        self._picker = SkuPicker.build(self.world.skus, self.behaviour.demand_spike)
        self._suppliers = {sku.sku: sku.supplier_id for sku in self.world.skus}
        self._queue: list[tuple[datetime, int, Callable[[], None]]] = []
        self._sequence = 0
        self._pending = 0
        self._arrivals_open = True
        self._last_arrival = config.start
        self._outbox: list[EventEnvelope] = []
        self._counters: Counter[str] = Counter()
        self._stock: dict[tuple[str, str], _Stock] = {}
        self._orders: dict[str, _Order] = {}
        self._backorders: dict[str, deque[_Backorder]] = defaultdict(deque)
        self._purchase_orders: dict[str, _PurchaseOrder] = {}
        self._reservations: dict[str, tuple[str, str, int]] = {}
        self._holds: dict[str, str] = {}
        self._held_orders: dict[str, list[str]] = defaultdict(list)
        self._shipments: dict[str, _Shipment] = {}
        self._check_disrupted_lane_exists()

    def _check_disrupted_lane_exists(self) -> None:
        disruption = self.behaviour.carrier_disruption
        if disruption is None:
            return
        lanes = self.world.lanes.get((disruption.node_id, disruption.region), ())
        if disruption.carrier_id not in {lane.carrier_id for lane in lanes}:
            raise ValueError(
                f"carrier disruption names lane {disruption.node_id}>{disruption.region} of "
                f"{disruption.carrier_id}, which the world does not have"
            )

    def run(self) -> Iterator[EventEnvelope]:
        """Yield every event of the simulation in event-time order."""
        self._open()
        while self._queue and not self._finished():
            self.now, _, action = heapq.heappop(self._queue)
            action()
            yield from self._outbox
            self._outbox.clear()

    @property
    def horizon_end(self) -> datetime:
        """Simulated time at which order arrivals are expected to end."""
        return self.config.start + self.config.horizon

    def in_window(self, window: Window) -> bool:
        """Return whether the clock is inside a scenario window."""
        return window.contains((self.now - self.config.start) / self.config.horizon)

    # -- scheduling -------------------------------------------------------------

    def _at(self, when: datetime, action: Callable[[], None], *, background: bool = False) -> None:
        """Queue ``action``; only non-background actions keep the simulation alive."""
        self._sequence += 1
        if background:
            heapq.heappush(self._queue, (when, self._sequence, action))
            return
        self._pending += 1
        finishing: Callable[[], None] = partial(self._finish, action)
        heapq.heappush(self._queue, (when, self._sequence, finishing))

    def _finish(self, action: Callable[[], None]) -> None:
        self._pending -= 1
        action()

    def _after(
        self,
        low_hours: float,
        high_hours: float,
        action: Callable[[], None],
        *,
        background: bool = False,
    ) -> None:
        delay = self._rng.uniform(low_hours, high_hours) * _HOUR
        self._at(self.now + delay, action, background=background)

    def _finished(self) -> bool:
        """Orders stopped arriving, every order is through, no backorder can still ship."""
        if self._arrivals_open:
            return False
        if self.now >= self._last_arrival + _DRAIN_LIMIT:
            return True
        if self._pending > 0:
            return False
        return not any(
            not self._orders[backorder.order_id].cancelled
            for waiting in self._backorders.values()
            for backorder in waiting
        )

    def _repeat(self, every: timedelta, action: Callable[[], None]) -> None:
        def tick() -> None:
            if not self._finished():
                action()
                self._at(self.now + every, tick, background=True)

        self._at(self.now + every, tick, background=True)

    def _poisson(self, per_hour: float, action: Callable[[], None]) -> None:
        def tick() -> None:
            if not self._finished():
                action()
                self._at(self.now + self._rng.expovariate(per_hour) * _HOUR, tick, background=True)

        self._at(self.now + self._rng.expovariate(per_hour) * _HOUR, tick, background=True)

    # -- emission ---------------------------------------------------------------

    def _next_id(self, kind: str) -> int:
        self._counters[kind] += 1
        return self._counters[kind]

    def _emit(self, kind: type[_E], source: Source, **fields: Any) -> _E:
        event_id = stable_id("evt", str(self.config.seed), str(self._next_id("event")))
        event = kind(event_id=event_id, event_time=self.now, source=source, **fields)
        self.stats[event.event_type] += 1
        self._outbox.append(event)
        return event

    # -- opening state ----------------------------------------------------------

    def _open(self) -> None:
        self._stock_initial_levels()
        for node in self.world.nodes:
            self._schedule_arrival(node.region)
        self._repeat(_REVIEW_EVERY, self._review_stock)
        self._repeat(_RESYNC_EVERY, self._resync_snapshots)
        self._poisson(_RESERVATIONS_PER_HOUR, self._reserve)
        self._poisson(_RETURNS_PER_HOUR, self._return_to_stock)
        hold_rate = self.behaviour.credit_holds_per_1000_orders / 1000 * self.config.orders_per_hour
        if hold_rate > 0:
            self._poisson(hold_rate, self._place_credit_hold)
        if self.behaviour.inbound_delay:
            start = self.behaviour.inbound_delay.window.start * self.config.horizon
            self._at(self.config.start + start, self._slip_supplier)

    def _stock_initial_levels(self) -> None:
        units_per_day = self.config.orders_per_hour * 24 * expected_units_per_order(_CHANNEL_SHARES)
        total_weight = sum(sku.weight for sku in self.world.skus)
        for node in self.world.nodes:
            for sku in self.world.skus:
                daily = units_per_day * node.demand_share * sku.weight / total_weight
                stock = _Stock(
                    reorder_point=max(1, round(daily * _REORDER_DAYS)),
                    order_up_to=max(3, round(daily * _ORDER_UP_TO_DAYS)),
                )
                if self._rng.random() > 0.04:
                    cover = self.config.stock_cover_days * self._rng.lognormvariate(-0.18, 0.6)
                    stock.physical = round(daily * cover)
                self._stock[(node.node_id, sku.sku)] = stock
                self._emit(
                    StockSnapshot,
                    Source.WMS,
                    node_id=node.node_id,
                    sku=sku.sku,
                    on_hand=stock.physical,
                )
                if stock.physical < stock.reorder_point:
                    self._order_stock(node.node_id, sku.sku, self._rng.uniform(6, 72) * _HOUR)

    # -- demand -----------------------------------------------------------------

    def _region_rate(self, region: str) -> tuple[float, float]:
        share = next(node.demand_share for node in self.world.nodes if node.region == region)
        base = self.config.orders_per_hour * share
        spike = self.behaviour.demand_spike
        factor = spike.factor if spike and spike.region == region else 1.0
        peak = base * 1.5 * factor
        current = base * diurnal_factor(self.now)
        if spike and spike.region == region and self.in_window(spike.window):
            current *= spike.factor
        return current, peak

    def _schedule_arrival(self, region: str) -> None:
        _, peak = self._region_rate(region)
        self._at(
            self.now + self._rng.expovariate(peak) * _HOUR,
            partial(self._arrival, region),
            background=True,
        )

    def _arrival(self, region: str) -> None:
        if not self._arrivals_open:
            return
        if self.config.duration is not None and self.now >= self.horizon_end:
            self._close_arrivals()
            return
        current, peak = self._region_rate(region)
        if self._rng.random() * peak < current:
            self._place_order(self._rng.choice(self.world.customers_in(region)))
        if self.config.orders is not None and self.orders_placed >= self.config.orders:
            self._close_arrivals()
            return
        self._schedule_arrival(region)

    def _close_arrivals(self) -> None:
        self._arrivals_open = False
        self._last_arrival = self.now

    def _spiking(self, region: str) -> bool:
        spike = self.behaviour.demand_spike
        return bool(spike and spike.region == region and self.in_window(spike.window))

    def _place_order(self, customer: Customer) -> None:
        self.orders_placed += 1
        order_id = f"SO-{self._next_id('order'):07d}"
        lines = order_lines(self._rng, customer, self._picker, self._spiking(customer.region))
        promise = promised_date(self.now, customer.channel)
        source = Source.OMS if customer.channel is Channel.ECOMMERCE else Source.ERP
        self._emit(
            OrderPlaced,
            source,
            order_id=order_id,
            customer_id=customer.customer_id,
            customer_tier=customer.tier,
            channel=customer.channel,
            region=customer.region,
            promised_date=promise,
            lines=lines,
        )
        self._orders[order_id] = _Order(
            order_id,
            customer,
            {line.line_id: line.qty for line in lines},
            {line.line_id: line.sku for line in lines},
            promise,
            self.now,
        )
        if self._rng.random() < self.behaviour.change_rate:
            self._after(0.1, 0.8, partial(self._change_order, order_id))
        if self._rng.random() < self.behaviour.cancel_rate:
            self._after(0.1, 1.0, partial(self._cancel_order, order_id))
        self._after(0.5, 2.0, partial(self._fulfil, order_id))

    def _change_order(self, order_id: str) -> None:
        order = self._orders[order_id]
        if order.cancelled or order.fulfilled:
            return
        line_id = self._rng.choice(sorted(order.lines))
        old = order.lines[line_id]
        new = max(1, round(old * self._rng.choice((0.5, 0.75, 1.5, 2.0))))
        if new == old:
            new = old + 1
        order.lines[line_id] = new
        self._emit(
            OrderChanged,
            Source.ERP,
            order_id=order_id,
            changes=[LineChange(line_id=line_id, sku=order.skus[line_id], qty=new)],
        )

    def _cancel_order(self, order_id: str) -> None:
        order = self._orders[order_id]
        if order.cancelled or order.fulfilled:
            return
        order.cancelled = True
        self._emit(OrderCancelled, Source.ERP, order_id=order_id, reason="customer request")

    # -- fulfilment -------------------------------------------------------------

    def _fulfil(self, order_id: str) -> None:
        order = self._orders[order_id]
        if order.cancelled:
            return
        if order.customer.customer_id in self._holds:
            self._held_orders[order.customer.customer_id].append(order_id)
            return
        order.fulfilled = True
        plan: dict[str, list[ShipmentLine]] = defaultdict(list)
        for line_id, qty in order.lines.items():
            sku = order.skus[line_id]
            remaining = qty
            for node in self.world.nodes_by_distance(order.customer.region):
                take = min(self._stock[(node.node_id, sku)].available, remaining)
                if take > 0:
                    self._stock[(node.node_id, sku)].physical -= take
                    plan[node.node_id].append(ShipmentLine(line_id=line_id, sku=sku, qty=take))
                    remaining -= take
                if remaining == 0:
                    break
            if remaining:
                self.stats["sim.backordered_lines"] += 1
                home = self.world.home_node(order.customer.region).node_id
                self._stock[(home, sku)].backlog += remaining
                self._backorders[sku].append(_Backorder(order_id, line_id, remaining, home))
        for node_id, lines in plan.items():
            self._create_shipment(order, node_id, lines)

    def _serve_backorders(self, node_id: str, sku: str) -> None:
        waiting = self._backorders[sku]
        stock = self._stock[(node_id, sku)]
        while waiting and stock.available > 0:
            backorder = waiting[0]
            order = self._orders[backorder.order_id]
            if order.cancelled:
                self._stock[(backorder.home_node_id, sku)].backlog -= backorder.qty
                waiting.popleft()
                continue
            take = min(stock.available, backorder.qty)
            stock.physical -= take
            self._stock[(backorder.home_node_id, sku)].backlog -= take
            backorder.qty -= take
            if backorder.qty == 0:
                waiting.popleft()
            line = ShipmentLine(line_id=backorder.line_id, sku=sku, qty=take)
            self._create_shipment(order, node_id, [line])

    def _create_shipment(self, order: _Order, node_id: str, lines: list[ShipmentLine]) -> None:
        number = self._next_id("shipment")
        lane = self._rng.choice(self.world.lanes[(node_id, order.customer.region)])
        cutoff = self.now + _DISPATCH_CUTOFF
        promise = order.promised if order.promised >= cutoff else cutoff + lane.transit
        shipment = _Shipment(
            f"SH-{number:07d}",
            order.order_id,
            lane,
            lines,
            f"{lane.carrier_id[5:8]}{number:010d}",
            order.placed_at,
        )
        self._shipments[shipment.shipment_id] = shipment
        self._emit(
            ShipmentCreated,
            Source.TMS,
            shipment_id=shipment.shipment_id,
            order_id=order.order_id,
            node_id=node_id,
            carrier_id=lane.carrier_id,
            lane=lane.lane_id,
            dispatch_cutoff=cutoff,
            promised_delivery=promise,
            lines=lines,
        )
        self._after(0.5, 3.0, partial(self._pick, shipment.shipment_id))

    def _pick(self, shipment_id: str) -> None:
        shipment = self._shipments[shipment_id]
        short = [
            ShortLine(line_id=line.line_id, sku=line.sku, qty_short=1)
            for line in shipment.lines
            if line.qty > 1 and self._rng.random() < _SHORT_PICK_SHARE
        ]
        self._emit(ShipmentPicked, Source.WMS, shipment_id=shipment_id, order_id=shipment.order_id)
        if short:
            self._emit(
                ShipmentShortShipped,
                Source.WMS,
                shipment_id=shipment_id,
                order_id=shipment.order_id,
                lines=short,
            )
        late = self._rng.random() < _LATE_DISPATCH_SHARE
        self._after(3.0 if late else 0.2, 10.0 if late else 1.5, partial(self._dispatch, shipment))

    def _dispatch(self, shipment: _Shipment) -> None:
        self._emit(
            ShipmentDispatched,
            Source.WMS,
            shipment_id=shipment.shipment_id,
            order_id=shipment.order_id,
            carrier_id=shipment.lane.carrier_id,
            tracking_no=shipment.tracking_no,
        )
        self._after(5 / 60, 30 / 60, partial(self._carrier_pickup, shipment))

    # -- carriers ---------------------------------------------------------------

    def _disrupted(self, shipment: _Shipment) -> bool:
        """Whether the shipment rides the disrupted lane for an order placed in the window."""
        disruption = self.behaviour.carrier_disruption
        lane = shipment.lane
        if disruption is None or (disruption.carrier_id, disruption.node_id, disruption.region) != (
            lane.carrier_id,
            lane.node_id,
            lane.region,
        ):
            return False
        placed = (shipment.order_placed_at - self.config.start) / self.config.horizon
        return disruption.window.contains(placed)

    def _carrier_pickup(self, shipment: _Shipment) -> None:
        lane = shipment.lane
        transit = lane.transit * self._rng.lognormvariate(0.0, 0.12)
        disruption = self.behaviour.carrier_disruption
        if disruption and self._disrupted(shipment):
            shipment.disrupted = True
            hold_up = self._rng.uniform(
                disruption.min_extra_delay.total_seconds(),
                disruption.max_extra_delay.total_seconds(),
            )
            transit = transit * disruption.transit_factor + timedelta(seconds=round(hold_up))
            self.stats["sim.disrupted_shipments"] += 1
        shipment.delivery_at = self.now + transit
        shipment.carrier_eta = self.now + lane.transit
        self._carrier_event(CarrierPickedUp, shipment, location=lane.node_id)
        self._next_scan(shipment)

    def _carrier_event(
        self, kind: type[_E], shipment: _Shipment, location: str | None = None, **fields: Any
    ) -> None:
        fields.setdefault("eta", shipment.carrier_eta)
        self._emit(
            kind,
            Source.CARRIER,
            shipment_id=shipment.shipment_id,
            carrier_id=shipment.lane.carrier_id,
            tracking_no=shipment.tracking_no,
            location=location,
            **fields,
        )

    def _next_scan(self, shipment: _Shipment) -> None:
        stall = shipment.disrupted and self._rng.random() < _DISRUPTED_STALL_SHARE
        gap = self._rng.uniform(24, 36) if stall else self._rng.uniform(6, 12)
        scan_at = self.now + gap * _HOUR
        if scan_at >= shipment.delivery_at:
            self._at(shipment.delivery_at, partial(self._deliver, shipment))
        else:
            self._at(scan_at, partial(self._scan, shipment))

    def _scan(self, shipment: _Shipment) -> None:
        hub = f"HUB-{shipment.lane.region.upper()}"
        if shipment.disrupted and self._rng.random() < _DISRUPTED_EXCEPTION_SHARE:
            code = self._rng.choice(_EXCEPTION_CODES)
            self._carrier_event(CarrierException, shipment, location=hub, code=code)
        self._revise_eta(shipment)
        self._carrier_event(CarrierInTransit, shipment, location=hub)
        self._next_scan(shipment)

    def _revise_eta(self, shipment: _Shipment) -> None:
        slip = shipment.delivery_at - shipment.carrier_eta
        if abs(slip) <= _ETA_TOLERANCE:
            return
        step = 0.5 if shipment.disrupted else 1.0
        shipment.carrier_eta = shipment.carrier_eta + slip * step
        reason = "transit slower than planned" if slip > timedelta(0) else "ahead of plan"
        self._carrier_event(CarrierEtaUpdated, shipment, reason=reason)

    def _deliver(self, shipment: _Shipment) -> None:
        shipment.carrier_eta = self.now
        self._carrier_event(CarrierDelivered, shipment, location=shipment.lane.region)
        self._emit(
            ShipmentDelivered,
            Source.TMS,
            shipment_id=shipment.shipment_id,
            order_id=shipment.order_id,
        )
        del self._shipments[shipment.shipment_id]

    # -- supply -----------------------------------------------------------------

    def _review_stock(self) -> None:
        for (node_id, sku), stock in self._stock.items():
            position = stock.physical - stock.reserved + stock.on_order - stock.backlog
            if position < stock.reorder_point:
                self._order_stock(node_id, sku, self._rng.uniform(*_LEAD_TIME_HOURS) * _HOUR)
            elif self._rng.random() < _CYCLE_COUNT_SHARE and stock.physical > 3:
                self._adjust(node_id, sku, self._rng.choice((-2, -1, 1, 2)), "cycle_count")

    def _order_stock(self, node_id: str, sku: str, lead_time: timedelta) -> None:
        stock = self._stock[(node_id, sku)]
        free = stock.physical - stock.reserved - stock.backlog
        qty = max(stock.order_up_to - free - stock.on_order, stock.reorder_point)
        supplier = self._suppliers[sku]
        po = _PurchaseOrder(
            f"PO-{self._next_id('po'):06d}", supplier, node_id, sku, qty, self.now + lead_time
        )
        self._purchase_orders[po.po_id] = po
        stock.on_order += qty
        self._announce(po)
        delay = self.behaviour.inbound_delay
        if delay and supplier == delay.supplier_id and self.in_window(delay.window):
            self._after(6, 12, partial(self._slip, po))

    def _announce(self, po: _PurchaseOrder) -> None:
        self._emit(
            InboundExpected,
            Source.ERP,
            po_id=po.po_id,
            supplier_id=po.supplier_id,
            node_id=po.node_id,
            sku=po.sku,
            qty=po.qty,
            eta=po.eta,
        )
        self._at(po.eta, partial(self._receive, po.po_id, po.version), background=True)

    def _slip_supplier(self) -> None:
        delay = self.behaviour.inbound_delay
        if delay is None:
            return
        for po in list(self._purchase_orders.values()):
            if po.supplier_id == delay.supplier_id:
                self._slip(po)

    def _slip(self, po: _PurchaseOrder) -> None:
        delay = self.behaviour.inbound_delay
        if delay is None or po.po_id not in self._purchase_orders:
            return
        seconds = self._rng.uniform(
            delay.min_delay.total_seconds(), delay.max_delay.total_seconds()
        )
        po.eta += timedelta(seconds=round(seconds))
        po.version += 1
        self.stats["sim.slipped_purchase_orders"] += 1
        self._announce(po)

    def _receive(self, po_id: str, version: int) -> None:
        po = self._purchase_orders.get(po_id)
        if po is None or po.version != version:
            return
        del self._purchase_orders[po_id]
        stock = self._stock[(po.node_id, po.sku)]
        stock.on_order -= po.qty
        self._adjust(po.node_id, po.sku, po.qty, "receipt", po_id=po.po_id)

    def _adjust(self, node_id: str, sku: str, delta: int, reason: str, **fields: Any) -> None:
        stock = self._stock[(node_id, sku)]
        stock.physical += delta
        self._emit(
            StockAdjusted,
            Source.WMS,
            node_id=node_id,
            sku=sku,
            delta=delta,
            reason=AdjustmentReason(reason),
            on_hand_after=stock.physical,
            **fields,
        )
        if delta > 0:
            self._serve_backorders(node_id, sku)

    def _return_to_stock(self) -> None:
        node = self._rng.choice(self.world.nodes)
        sku = self._rng.choice(self.world.skus)
        self._adjust(node.node_id, sku.sku, self._rng.randint(1, 5), "return")

    def _resync_snapshots(self) -> None:
        for (node_id, sku), stock in self._stock.items():
            if self._rng.random() < _RESYNC_SHARE:
                self._emit(
                    StockSnapshot, Source.WMS, node_id=node_id, sku=sku, on_hand=stock.physical
                )

    def _reserve(self) -> None:
        node = self._rng.choice(self.world.nodes)
        sku = self._rng.choice(self.world.skus).sku
        stock = self._stock[(node.node_id, sku)]
        qty = min(stock.available, self._rng.randint(1, 20))
        if qty <= 0:
            return
        reservation_id = f"RSV-{self._next_id('reservation'):06d}"
        stock.reserved += qty
        self._reservations[reservation_id] = (node.node_id, sku, qty)
        self._emit(
            ReservationCreated,
            Source.ERP,
            reservation_id=reservation_id,
            node_id=node.node_id,
            sku=sku,
            qty=qty,
        )
        self._after(4, 48, partial(self._release_reservation, reservation_id), background=True)

    def _release_reservation(self, reservation_id: str) -> None:
        node_id, sku, qty = self._reservations.pop(reservation_id)
        self._stock[(node_id, sku)].reserved -= qty
        self._emit(
            ReservationReleased,
            Source.ERP,
            reservation_id=reservation_id,
            node_id=node_id,
            sku=sku,
        )
        self._serve_backorders(node_id, sku)

    # -- credit -----------------------------------------------------------------

    def _place_credit_hold(self) -> None:
        """Finance reviews credit whether or not orders still arrive.

        Holds go on while the stream drains, so the ERP's ``orders`` feed is not
        silent for days after the last order (that would be a stale feed). A hold
        placed then does not keep the simulation running: it may still be open at the
        end of the stream.
        """
        customer = self._rng.choice(self.world.customers)
        if customer.customer_id in self._holds:
            return
        hold_id = f"HOLD-{self._next_id('hold'):05d}"
        self._holds[customer.customer_id] = hold_id
        self._emit(
            CreditHoldPlaced,
            Source.ERP,
            customer_id=customer.customer_id,
            hold_id=hold_id,
            reason="credit limit exceeded",
        )
        release = partial(self._release_credit_hold, customer.customer_id)
        self._after(1, 8, release, background=not self._arrivals_open)

    def _release_credit_hold(self, customer_id: str) -> None:
        hold_id = self._holds.pop(customer_id)
        self._emit(CreditHoldReleased, Source.ERP, customer_id=customer_id, hold_id=hold_id)
        for order_id in self._held_orders.pop(customer_id, []):
            self._after(5 / 60, 30 / 60, partial(self._fulfil, order_id))
