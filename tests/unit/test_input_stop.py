"""A signal ends the inputs of a running dataflow instead of crashing it."""

import signal
from pathlib import Path

import pytest

from allocflow.connectors.input_stop import input_stop_requested, inputs_end_on_signals
from allocflow.connectors.stream_sources import MergedFileSource

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("received", [signal.SIGINT, signal.SIGTERM])
def test_the_first_signal_requests_a_stop_and_the_second_aborts(received: signal.Signals) -> None:
    with inputs_end_on_signals() as requested:
        signal.raise_signal(received)
        assert requested.is_set()
        assert input_stop_requested()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(received)
    assert not input_stop_requested()


def test_the_previous_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with inputs_end_on_signals():
        assert signal.getsignal(signal.SIGTERM) is not before[1]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with inputs_end_on_signals() as requested:
            signal.raise_signal(signal.SIGINT)
            assert not requested.is_set()
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_file_source_ends_at_its_next_batch_once_a_stop_is_requested(tmp_path: Path) -> None:
    orders = tmp_path / "orders.jsonl"
    orders.write_text("".join(f'{{"n": {n}}}\n' for n in range(10)))
    source = MergedFileSource({"orders": orders}, batch_size=3)
    partition = source.build_part("input", source.list_parts()[0], None)
    with inputs_end_on_signals():
        assert len(partition.next_batch()) == 3
        signal.raise_signal(signal.SIGTERM)
        with pytest.raises(StopIteration):
            partition.next_batch()
        assert partition.snapshot() == 3
