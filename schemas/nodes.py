"""One JSON Schema node read: booleans as schemas, local ``$ref``, JSON types, bounds.

The value-level questions the compatibility check (:mod:`schemas.compat`) asks of each node,
apart from the walk that asks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class UnresolvableRef(ValueError):
    """A ``$ref`` that does not point into the same document."""


def as_schema(node: Any) -> dict[str, Any]:
    """A schema node as a mapping (``true`` is ``{}``, ``false`` is ``{"not": {}}``)."""
    if node is True:
        return {}
    if node is False:
        return {"not": {}}
    if isinstance(node, Mapping):
        return dict(node)
    raise TypeError(f"not a JSON Schema: {type(node).__name__}")


def resolve_pointer(root: Mapping[str, Any], ref: str) -> Any:
    """The node a ``$ref`` JSON pointer names inside ``root`` (RFC 6901)."""
    if not ref.startswith("#"):
        raise UnresolvableRef(f"$ref {ref!r} leaves the document")
    node: Any = root
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise UnresolvableRef(f"$ref {ref!r} points nowhere")
    return node


def json_type(value: Any) -> str:
    """The JSON Schema type name of a parsed JSON value (``1.0`` is an integer)."""
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    kinds: tuple[tuple[type, str], ...] = (
        (type(None), "null"),
        (bool, "boolean"),
        (int, "integer"),
        (str, "string"),
        (list, "array"),
    )
    return next((kind for python, kind in kinds if isinstance(value, python)), "object")


def same_value(a: Any, b: Any) -> bool:
    """JSON equality of two values: ``true`` is not ``1``, ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def declared_types(schema: Mapping[str, Any]) -> set[str] | None:
    """The ``type`` keyword as a set, or ``None`` when the schema declares none."""
    declared = schema.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def covers(types: set[str] | None, kind: str) -> bool:
    """Whether a ``type`` set (``None``: any) admits values of JSON type ``kind``."""
    return types is None or kind in types or (kind == "integer" and "number" in types)


def finite(schema: Mapping[str, Any]) -> list[Any] | None:
    """The values an old schema allows, when it allows only a known few."""
    if "const" in schema:
        return [schema["const"]]
    if "enum" in schema:
        return list(schema["enum"])
    if declared_types(schema) == {"null"}:
        return [None]
    return None


def bound(schema: Mapping[str, Any], inclusive: str, exclusive: str) -> tuple[float, bool] | None:
    """The tightest (value, exclusive) bound of one side, or ``None`` when unbounded."""
    bounds = []
    if isinstance(schema.get(inclusive), int | float):
        bounds.append((float(schema[inclusive]), False))
    if isinstance(schema.get(exclusive), int | float):
        bounds.append((float(schema[exclusive]), True))
    if not bounds:
        return None
    if inclusive == "minimum":
        return max(bounds)
    return min(bounds, key=lambda b: (b[0], not b[1]))
