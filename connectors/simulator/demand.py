"""What customers order: line counts, SKUs, quantities, prices and promises."""

import itertools
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from allocflow.connectors.simulator.scenarios import DemandSpike
from allocflow.connectors.simulator.world import Customer, Sku
from allocflow.models.orders import Channel, OrderLine

_LINES: dict[Channel, tuple[int, int]] = {
    Channel.ECOMMERCE: (1, 3),
    Channel.SALES: (1, 6),
    Channel.EDI: (2, 10),
}
_QTY: dict[Channel, tuple[int, int]] = {
    Channel.ECOMMERCE: (1, 5),
    Channel.SALES: (2, 20),
    Channel.EDI: (10, 100),
}
_SLA_DAYS: dict[Channel, int] = {Channel.ECOMMERCE: 2, Channel.SALES: 3, Channel.EDI: 5}
_TIER_DISCOUNT: dict[str, float] = {"platinum": 0.85, "gold": 0.9, "silver": 0.95, "bronze": 1.0}
_BELOW_COST_SHARE = 0.02
_PROMISE_HOUR = 18


def expected_units_per_order(channel_shares: dict[Channel, float]) -> float:
    """Return the mean units per order for a channel mix (used to size stock)."""
    return sum(
        share * sum(_LINES[channel]) / 2 * sum(_QTY[channel]) / 2
        for channel, share in channel_shares.items()
    )


@dataclass(frozen=True)
class SkuPicker:
    """Draws SKUs by popularity, with a weather boost where a spike is on."""

    skus: tuple[Sku, ...]
    normal: tuple[float, ...]
    boosted: tuple[float, ...]

    @classmethod
    def build(cls, skus: tuple[Sku, ...], spike: DemandSpike | None) -> "SkuPicker":
        """Precompute cumulative weights with and without the spike's category boost."""
        boost = spike.category_boost if spike else 1.0
        category = spike.category if spike else ""
        normal = [sku.weight for sku in skus]
        boosted = [sku.weight * (boost if sku.category == category else 1.0) for sku in skus]
        return cls(skus, tuple(itertools.accumulate(normal)), tuple(itertools.accumulate(boosted)))

    def pick(self, rng: random.Random, count: int, spiking: bool) -> list[Sku]:
        """Return up to ``count`` distinct SKUs."""
        weights = self.boosted if spiking else self.normal
        chosen = rng.choices(self.skus, cum_weights=weights, k=count)
        return list(dict.fromkeys(chosen))


def order_lines(
    rng: random.Random, customer: Customer, picker: SkuPicker, spiking: bool
) -> list[OrderLine]:
    """Draw the lines of one order."""
    low, high = _LINES[customer.channel]
    skus = picker.pick(rng, rng.randint(low, high), spiking)
    return [
        OrderLine(
            line_id=str(number),
            sku=sku.sku,
            qty=_quantity(rng, customer.channel),
            unit_price=_price(rng, sku, customer.tier),
            unit_cost=sku.unit_cost,
        )
        for number, sku in enumerate(skus, start=1)
    ]


def promised_date(placed_at: datetime, channel: Channel) -> datetime:
    """Return the delivery promise: the SLA's day at 18:00 of the order's timezone."""
    day = placed_at + timedelta(days=_SLA_DAYS[channel])
    return day.replace(hour=_PROMISE_HOUR, minute=0, second=0, microsecond=0)


def diurnal_factor(moment: datetime) -> float:
    """Return the order-intensity factor of the hour of day (0.5 at night, 1.5 midday)."""
    hours = moment.hour + moment.minute / 60
    return 1.0 + 0.5 * math.sin(2 * math.pi * (hours - 10) / 24)


def _quantity(rng: random.Random, channel: Channel) -> int:
    low, high = _QTY[channel]
    qty = rng.randint(low, high)
    return max(5, qty - qty % 5) if channel is Channel.EDI else qty


def _price(rng: random.Random, sku: Sku, tier: str) -> float:
    if rng.random() < _BELOW_COST_SHARE:
        return round(sku.unit_cost * rng.uniform(0.7, 0.98), 2)
    return round(sku.list_price * _TIER_DISCOUNT[tier] * rng.uniform(0.97, 1.03), 2)
