"""``allocflow broker``: run the embedded Kafka-protocol broker in the foreground."""

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from allocflow.connectors.broker import BrokerStartError, EmbeddedBroker
from allocflow.connectors.kafka_admin import TopicSetupError
from allocflow.flows.settings import Settings
from allocflow.models.topics import InputTopic, OutputTopic

_LIVENESS_CHECK_S = 0.5


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``broker`` sub-command."""
    parser = subparsers.add_parser(
        "broker",
        help="run the embedded Kafka-protocol broker (Tansu, in memory) until Ctrl-C",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="TCP port on 127.0.0.1 (default: ALLOCFLOW_BROKER_PORT; 0 picks a free one)",
    )
    parser.add_argument(
        "--no-topics", action="store_true", help="do not create the input and output topics"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Start the broker, create the topics, print the address, wait for a stop signal."""
    port: int = settings.broker_port if args.port is None else args.port
    broker = EmbeddedBroker(
        binary=settings.broker_binary,
        port=port,
        startup_timeout_s=settings.broker_startup_timeout_s,
    )
    try:
        with stop_signals() as stop, broker:
            if not args.no_topics:
                _create_topics(broker, settings)
            print(f"Kafka bootstrap servers: {broker.bootstrap_servers}", flush=True)
            print(f"  export ALLOCFLOW_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)
            print("Ctrl-C stops the broker (its data is in memory only).", flush=True)
            return _wait(broker, stop)
    except (BrokerStartError, TopicSetupError) as error:
        print(f"allocflow broker: {error}", file=sys.stderr)
        return 1


def topic_names(settings: Settings) -> list[str]:
    """Return the configured names of every input and output topic."""
    return [settings.topic_name(topic) for topic in (*InputTopic, *OutputTopic)]


def _create_topics(broker: EmbeddedBroker, settings: Settings) -> None:
    counts = broker.create_topics(topic_names(settings), partitions=settings.topic_partitions)
    for name, partitions in counts.items():
        print(f"topic {name}: {partitions} partitions", flush=True)


def _wait(broker: EmbeddedBroker, stop: threading.Event) -> int:
    while not stop.wait(_LIVENESS_CHECK_S):
        if not broker.running:
            print(f"allocflow broker: the broker exited:\n{broker.log_tail()}", file=sys.stderr)
            return 1
    return 0


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """Turn SIGINT and SIGTERM into an event for the duration of the block."""
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
