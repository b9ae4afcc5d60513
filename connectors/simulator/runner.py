"""Running a simulation into a sink and building its manifest."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Never

from tqdm import tqdm

from allocflow.connectors.kafka_io import Delivery
from allocflow.connectors.simulator.effects import ScenarioEffects
from allocflow.connectors.simulator.engine import Simulation, SimulationConfig
from allocflow.connectors.simulator.faults import FaultInjector, FaultPlan
from allocflow.connectors.simulator.manifest import FaultEntry, ManifestBuilder
from allocflow.connectors.simulator.output import OnStored, Pacer, RecordSink
from allocflow.connectors.simulator.records import SimRecord, record_of

_PROGRESS_EVERY = 500


@dataclass(frozen=True)
class SimulationRequest:
    """A simulation to run.

    Attributes:
        config: World, size, behaviour and seed.
        faults: Faults to inject.
        scenarios: Scenario names, as given (recorded in the manifest).
        rate: Messages per second to send at, or None for as fast as possible.
        progress: Show a progress bar on stderr.
    """

    config: SimulationConfig
    faults: FaultPlan
    scenarios: list[str]
    rate: float | None = None
    progress: bool = True


def run_simulation(request: SimulationRequest, sink: RecordSink) -> dict[str, Any]:
    """Simulate, inject faults, write every message to ``sink``; return the manifest.

    The sink is closed (and, for Kafka, flushed) before the manifest is returned, so
    the manifest only describes stored messages.
    """
    simulation = Simulation(request.config)
    effects = ScenarioEffects(request.config)
    manifest = ManifestBuilder(request.config, request.faults, request.scenarios)
    pacer = Pacer(request.rate)
    last: SimRecord | None = None
    with _progress_bar(request) as bar:
        for record in FaultInjector(request.faults, request.config.seed).inject(
            _clean_records(simulation, effects)
        ):
            entry = manifest.add(record)
            sink.write(record, _locate(entry) if entry else None)
            pacer.wait()
            last = record
            if manifest.total % _PROGRESS_EVERY == 0:
                bar.update(_progress_of(simulation, request.config) - bar.n)
        bar.update(_progress_total(request.config) - bar.n)
    sink.close()
    last_event_time = None if last is None else last.event_time.isoformat()
    return manifest.build(effects.summary(simulation.stats), last_event_time)


def _clean_records(simulation: Simulation, effects: ScenarioEffects) -> Iterator[SimRecord]:
    for event in simulation.run():
        effects.observe(event)
        yield record_of(event)


def _locate(entry: FaultEntry) -> OnStored:
    def stored(delivery: Delivery) -> None:
        entry.partition = delivery.partition
        entry.offset = delivery.offset

    return stored


def _progress_bar(request: SimulationRequest) -> "tqdm[Never]":
    unit = "order" if request.config.orders is not None else "sim-h"
    return tqdm(total=_progress_total(request.config), unit=unit, disable=not request.progress)


def _progress_total(config: SimulationConfig) -> int:
    if config.orders is not None:
        return config.orders
    return round(config.horizon.total_seconds() / 3600)


def _progress_of(simulation: Simulation, config: SimulationConfig) -> int:
    if config.orders is not None:
        return simulation.orders_placed
    elapsed = (simulation.now - config.start).total_seconds() / 3600
    return min(round(elapsed), _progress_total(config))
