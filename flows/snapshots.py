"""Stateful steps whose snapshots are pickled bytes, taken once per touched key and epoch.

Bytewax's own ``stateful_flat_map`` snapshots a key by ``copy.deepcopy`` of its state,
which the runtime then pickles: two full passes over the state at every epoch close,
for every key touched in the epoch. :func:`stateful_flat_map` here pickles the state
once into bytes (immutable, so no copy is needed) and unpickles it on resume: the same
recovery at about half the cost.

Example:
    >>> from bytewax.dataflow import Dataflow
    >>> from bytewax.testing import TestingSink, TestingSource, run_main
    >>> import bytewax.operators as op
    >>> def count(state, item):
    ...     total = (state or 0) + 1
    ...     return total, [total]
    >>> flow = Dataflow("counts")
    >>> keyed = op.key_on("key", op.input("in", flow, TestingSource(["a", "b", "a"])), str)
    >>> out = []
    >>> op.output("out", stateful_flat_map("count", keyed, count), TestingSink(out))
    >>> run_main(flow)
    >>> out
    [('a', 1), ('b', 1), ('a', 2)]
"""

import pickle
from collections.abc import Callable, Iterable
from functools import partial
from typing import Generic, TypeVar

import bytewax.operators as op
from bytewax.operators import KeyedStream, StatefulBatchLogic

_V = TypeVar("_V")
_W = TypeVar("_W")
_S = TypeVar("_S")

Mapper = Callable[[_S | None, _V], tuple[_S | None, Iterable[_W]]]
"""Like Bytewax's: (state or None, value) → (new state or None to discard it, outputs)."""


def stateful_flat_map(
    step_id: str, up: KeyedStream[_V], mapper: Mapper[_S, _V, _W]
) -> KeyedStream[_W]:
    """Bytewax's ``stateful_flat_map``, with pickled-bytes snapshots.

    Args:
        step_id: The step's id (unique in the flow; part of the recovery data).
        up: The keyed stream.
        mapper: Called for each value of a key with that key's state.

    Returns:
        The keyed stream of every output.
    """
    return op.stateful_batch(step_id, up, partial(_PickledLogic.resume, mapper))


class _PickledLogic(StatefulBatchLogic[_V, _W, bytes], Generic[_V, _W, _S]):
    """Runs ``mapper`` over each batch of one key's values; snapshots by pickling."""

    def __init__(self, mapper: Mapper[_S, _V, _W], state: _S | None) -> None:
        self._mapper = mapper
        self._state = state

    @classmethod
    def resume(
        cls, mapper: Mapper[_S, _V, _W], snapshot: bytes | None
    ) -> "_PickledLogic[_V, _W, _S]":
        """Continue from a snapshot's bytes, or start without state."""
        state = None if snapshot is None else pickle.loads(snapshot)  # noqa: S301 - our own store
        return cls(mapper, state)

    def on_batch(self, values: list[_V]) -> tuple[list[_W], bool]:
        """Apply the mapper to each value in order; discard the key once its state is None."""
        outputs: list[_W] = []
        for value in values:
            self._state, emitted = self._mapper(self._state, value)
            outputs.extend(emitted)
        discard = StatefulBatchLogic.DISCARD if self._state is None else StatefulBatchLogic.RETAIN
        return outputs, discard

    def snapshot(self) -> bytes:
        """Return the state pickled: immutable, so the runtime needs no copy."""
        return pickle.dumps(self._state, protocol=pickle.HIGHEST_PROTOCOL)
