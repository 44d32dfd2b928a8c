"""Pydantic models of every message type of the exchange, and the registry of types."""

from schemas.base import EventModel
from schemas.registry import REGISTRY, SchemaRegistry

__all__ = ["REGISTRY", "EventModel", "SchemaRegistry"]
