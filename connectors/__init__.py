"""The agency SDK: the client, its transports and its errors (the mock agencies: connectors.mock).

from connectors import AgencyClient
from schemas.police import ResidentRegistered

police = AgencyClient.from_settings("police")      # key, trust and broker from XGW_*
await police.publish(ResidentRegistered(...))
"""

from __future__ import annotations

from connectors.client import AgencyClient, PublishedEvent, Receipt, ReceivedEvent
from connectors.errors import (
    ConnectorError,
    InvalidEventError,
    RefusedDelivery,
    RequestRefused,
    RequestTimedOut,
    TransportError,
)
from connectors.transport import KafkaTransport, MemoryTransport, Message, Transport

__all__ = [
    "AgencyClient",
    "ConnectorError",
    "InvalidEventError",
    "KafkaTransport",
    "MemoryTransport",
    "Message",
    "PublishedEvent",
    "Receipt",
    "ReceivedEvent",
    "RefusedDelivery",
    "RequestRefused",
    "RequestTimedOut",
    "Transport",
    "TransportError",
]
