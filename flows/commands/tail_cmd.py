"""``allocflow tail``: print the messages of a topic."""

import argparse
import sys
from contextlib import closing

from allocflow.connectors.kafka_io import Record, TopicReadError, iter_topic
from allocflow.flows.settings import Settings

_IDLE_END_S = 2.0


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``tail`` sub-command."""
    parser = subparsers.add_parser(
        "tail", help="print the messages of a topic from the beginning (partition, offset, key)"
    )
    parser.add_argument("topic", metavar="TOPIC", help="topic name")
    parser.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        default=None,
        help="Kafka bootstrap servers (default: ALLOCFLOW_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--max", type=_positive_int, default=None, metavar="N", help="stop after N messages"
    )
    parser.add_argument(
        "--follow", action="store_true", help="keep waiting for new messages until Ctrl-C"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the topic's messages, one per line: partition, offset, key, value."""
    try:
        connection = settings.kafka_connection(args.bootstrap)
    except ValueError as error:
        print(f"allocflow tail: {error}", file=sys.stderr)
        return 2
    records = iter_topic(
        connection,
        args.topic,
        idle_timeout_s=None if args.follow else _IDLE_END_S,
        timeout_s=None,
    )
    try:
        with closing(records):
            for count, record in enumerate(records, start=1):
                print(format_record(record), flush=args.follow)
                if count == args.max:
                    break
    except TopicReadError as error:
        print(f"allocflow tail: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def format_record(record: Record) -> str:
    """Return ``partition<TAB>offset<TAB>key<TAB>value``, bytes decoded as UTF-8."""
    return "\t".join(
        (str(record.partition), str(record.offset), _text(record.key), _text(record.value))
    )


def _positive_int(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _text(data: bytes | None) -> str:
    return "<null>" if data is None else data.decode("utf-8", errors="backslashreplace")
