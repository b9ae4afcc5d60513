"""The simulated distributor: nodes, regions, SKUs, customers, carriers and lanes."""

import random
from dataclasses import dataclass
from datetime import timedelta

from allocflow.models.orders import Channel

TIERS: tuple[str, ...] = ("platinum", "gold", "silver", "bronze")
TIER_WEIGHTS: tuple[float, ...] = (0.05, 0.15, 0.35, 0.45)


@dataclass(frozen=True)
class Node:
    """A regional distribution centre.

    Attributes:
        node_id: Node id, e.g. ``DC-ATL``.
        region: Region it is the home node of.
        demand_share: Share of all orders placed in its region.
    """

    node_id: str
    region: str
    demand_share: float


NODES: tuple[Node, ...] = (
    Node("DC-NJ", "northeast", 0.26),
    Node("DC-ATL", "southeast", 0.22),
    Node("DC-CHI", "midwest", 0.20),
    Node("DC-DAL", "south", 0.17),
    Node("DC-RNO", "west", 0.15),
)

_TRANSIT_HOURS: dict[tuple[str, str], float] = {
    ("DC-NJ", "northeast"): 20,
    ("DC-NJ", "southeast"): 40,
    ("DC-NJ", "midwest"): 40,
    ("DC-NJ", "south"): 60,
    ("DC-NJ", "west"): 96,
    ("DC-ATL", "northeast"): 40,
    ("DC-ATL", "southeast"): 18,
    ("DC-ATL", "midwest"): 40,
    ("DC-ATL", "south"): 36,
    ("DC-ATL", "west"): 84,
    ("DC-CHI", "northeast"): 40,
    ("DC-CHI", "southeast"): 40,
    ("DC-CHI", "midwest"): 20,
    ("DC-CHI", "south"): 40,
    ("DC-CHI", "west"): 60,
    ("DC-DAL", "northeast"): 60,
    ("DC-DAL", "southeast"): 36,
    ("DC-DAL", "midwest"): 40,
    ("DC-DAL", "south"): 18,
    ("DC-DAL", "west"): 48,
    ("DC-RNO", "northeast"): 96,
    ("DC-RNO", "southeast"): 84,
    ("DC-RNO", "midwest"): 60,
    ("DC-RNO", "south"): 48,
    ("DC-RNO", "west"): 20,
}
CARRIERS_BY_REGION: dict[str, tuple[str, str]] = {
    "northeast": ("CARR-NORTHSTAR", "CARR-SWIFTLINE"),
    "southeast": ("CARR-NORTHSTAR", "CARR-PARCELCO"),
    "midwest": ("CARR-REDROUTE", "CARR-SWIFTLINE"),
    "south": ("CARR-PARCELCO", "CARR-REDROUTE"),
    "west": ("CARR-SWIFTLINE", "CARR-PARCELCO"),
}
"""The two carriers delivering into each region, from every node."""
SUPPLIERS: tuple[str, ...] = ("SUP-ACME", "SUP-GLOBEX", "SUP-INITECH", "SUP-UMBRELLA")
CATEGORIES: tuple[str, ...] = ("hardware", "electrical", "plumbing", "safety", "storm-supplies")


@dataclass(frozen=True)
class Sku:
    """A stock-keeping unit.

    Attributes:
        sku: SKU id.
        category: Product category; ``storm-supplies`` sells in weather events.
        unit_cost: Landed cost per unit.
        list_price: List price per unit.
        weight: Relative popularity.
        supplier_id: Supplier that replenishes it.
    """

    sku: str
    category: str
    unit_cost: float
    list_price: float
    weight: float
    supplier_id: str


@dataclass(frozen=True)
class Customer:
    """A customer of the distributor.

    Attributes:
        customer_id: Customer id.
        tier: Tier named in the allocation policy.
        channel: Channel the customer orders through.
        region: Delivery region.
    """

    customer_id: str
    tier: str
    channel: Channel
    region: str


@dataclass(frozen=True)
class Lane:
    """A carrier's route from a node to a region.

    Attributes:
        node_id: Shipping node.
        region: Destination region.
        carrier_id: Carrier serving the lane.
        transit: Typical door-to-door transit time.
    """

    node_id: str
    region: str
    carrier_id: str
    transit: timedelta

    @property
    def lane_id(self) -> str:
        """Lane id as it appears in events: ``NODE>region``."""
        return f"{self.node_id}>{self.region}"


@dataclass(frozen=True)
class World:
    """Master data of the simulated distributor."""

    nodes: tuple[Node, ...]
    skus: tuple[Sku, ...]
    customers: tuple[Customer, ...]
    lanes: dict[tuple[str, str], tuple[Lane, ...]]

    def home_node(self, region: str) -> Node:
        """Return the node whose home region is ``region``."""
        return next(node for node in self.nodes if node.region == region)

    def nodes_by_distance(self, region: str) -> list[Node]:
        """Return all nodes, nearest (shortest transit) to ``region`` first."""
        return sorted(self.nodes, key=lambda node: _TRANSIT_HOURS[(node.node_id, region)])

    def customers_in(self, region: str) -> list[Customer]:
        """Return the customers delivered to ``region``."""
        return [customer for customer in self.customers if customer.region == region]


def build_world(rng: random.Random, n_skus: int, n_customers: int) -> World:
    """Build the distributor's master data.

    Args:
        rng: Random source (the world is a pure function of its state).
        n_skus: Number of SKUs.
        n_customers: Number of customers.

    Returns:
        The world.
    """
    return World(
        nodes=NODES,
        skus=tuple(_build_sku(rng, index) for index in range(n_skus)),
        customers=tuple(_build_customer(rng, index) for index in range(n_customers)),
        lanes=_build_lanes(),
    )


def _build_sku(rng: random.Random, index: int) -> Sku:
    cost = round(rng.lognormvariate(3.0, 0.8), 2)
    return Sku(
        sku=f"SKU-{10000 + index}",
        category=CATEGORIES[index % len(CATEGORIES)],
        unit_cost=cost,
        list_price=round(cost * rng.uniform(1.15, 1.8), 2),
        weight=1.0 / (index + 1) ** 0.8,
        supplier_id=SUPPLIERS[index % len(SUPPLIERS)],
    )


def _build_customer(rng: random.Random, index: int) -> Customer:
    region = rng.choices([n.region for n in NODES], [n.demand_share for n in NODES])[0]
    tier = rng.choices(TIERS, TIER_WEIGHTS)[0]
    channel = rng.choices(list(Channel), [0.5, 0.25, 0.25])[0]
    return Customer(f"CUST-{1000 + index}", tier, channel, region)


def _build_lanes() -> dict[tuple[str, str], tuple[Lane, ...]]:
    return {
        (node_id, region): tuple(
            Lane(node_id, region, carrier, timedelta(hours=hours))
            for carrier in CARRIERS_BY_REGION[region]
        )
        for (node_id, region), hours in sorted(_TRANSIT_HOURS.items())
    }
