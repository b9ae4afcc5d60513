"""Fixtures shared by every test: the embedded Kafka broker and unique topic names."""

import re
import uuid
from collections.abc import Iterator

import pytest

from allocflow.connectors.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedBroker]:
    """A Tansu broker for the whole test session, stopped at the end."""
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses: the test's name plus a random suffix."""
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name)[:80].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"
