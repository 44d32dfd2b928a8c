"""Backward compatibility of JSON Schemas: every document valid under the old one stays valid.

That is the promise a revision within one major version makes: consumers that upgrade first
still read what producers on an older revision send. The check is structural, over the two
schemas (``$ref`` into the same document resolved, recursion through ``$defs`` assumed
compatible on the second visit), and conservative: what it cannot prove compatible it reports.

=====================================  ===========================================================
old -> new                             verdict
=====================================  ===========================================================
annotation changed                     compatible (title, description, default, examples, x-*)
``type`` loses a type                  breaking ("integer" is covered by "number")
``type`` added where there was none    breaking
``enum`` loses a value                 breaking; ``enum`` or ``const`` added: breaking
``const`` changed or added             breaking
old ``enum``/``const`` values          each value is checked against the new keywords
``pattern`` / ``format`` added/changed breaking (regular languages are not compared)
``minLength``/``minimum``/... raised   breaking; lowered or removed: compatible
``maxLength``/``maximum``/... lowered  breaking; ``multipleOf`` compatible only if it divides
new ``required`` property              breaking
property removed                       breaking if ``additionalProperties`` is false (or if the
                                       new additional schema rejects the old property schema)
property added                         compatible if the old schema forbade extra properties,
                                       else its schema must accept anything the old allowed
``additionalProperties`` narrowed      breaking
``items`` / ``minItems`` / ...         recursive / as for lengths; ``uniqueItems`` added: breaking
``anyOf``/``oneOf`` in the old schema  every old branch must pass the new schema
``anyOf``/``oneOf`` in the new schema  the old schema must pass one new branch
``allOf`` in the new schema            the old schema must pass every part
any other keyword added or changed     breaking (not understood, so not proved compatible)
=====================================  ===========================================================

``oneOf`` is treated as ``anyOf`` (pydantic emits it only for discriminated unions, whose
branches are disjoint); an ``allOf`` in the old schema is merged into one schema. Python-side
validators (``AfterValidator``, model validators) do not appear in a JSON Schema: changing
them is for review to judge.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from schemas.nodes import (
    UnresolvableRef,
    as_schema,
    bound,
    covers,
    declared_types,
    finite,
    json_type,
    resolve_pointer,
    same_value,
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Keywords that never change which documents are valid.
_ANNOTATIONS = _words(
    "$schema $id $anchor $comment $defs definitions title description default examples"
    " deprecated readOnly writeOnly discriminator"
)
# Keywords with a rule of their own; any other keyword added or changed is reported.
_HANDLED = _words(
    "$ref type enum const anyOf oneOf allOf pattern format minLength maxLength minimum maximum"
    " exclusiveMinimum exclusiveMaximum multipleOf properties required additionalProperties"
    " minProperties maxProperties items minItems maxItems uniqueItems"
)
_UNION = ("anyOf", "oneOf")
TOP = "(top level)"


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One way in which a document valid under the old schema can fail the new one."""

    path: str
    """Where in the document: dotted property names, ``[]`` for array items, ``*`` for extras."""
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def incompatibilities(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Incompatibility]:
    """Every reason why a document valid under ``old`` may be invalid under ``new``."""
    return _Checker(old, new).check(old, new, TOP)


def is_compatible(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True when every document valid under ``old`` is valid under ``new`` (as far as proved)."""
    return not incompatibilities(old, new)


def _child(path: str, name: str) -> str:
    return name if path == TOP else f"{path}.{name}"


def _is_x(key: str) -> bool:
    return key.startswith("x-")


def _dedupe(problems: Iterable[Incompatibility]) -> list[Incompatibility]:
    return list(dict.fromkeys(problems))


class _Checker:
    def __init__(self, old_root: Mapping[str, Any], new_root: Mapping[str, Any]) -> None:
        self._old_root = old_root
        self._new_root = new_root
        # Pairs of $refs under comparison: meeting one again means recursion, assumed to hold.
        self._assumed: set[tuple[str | None, str | None]] = set()

    def _resolve(self, node: Any, root: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        schema = as_schema(node)
        first_ref: str | None = None
        seen: set[str] = set()
        while "$ref" in schema:
            ref = schema.pop("$ref")
            if ref in seen:
                raise UnresolvableRef(f"$ref {ref!r} refers to itself")
            seen.add(ref)
            first_ref = first_ref or ref
            target = as_schema(resolve_pointer(root, ref))
            clash = {
                k for k in schema.keys() & target.keys() if k not in _ANNOTATIONS and not _is_x(k)
            }
            schema = {"allOf": [target, schema]} if clash else {**target, **schema}
        return schema, first_ref

    def check(self, old_node: Any, new_node: Any, path: str) -> list[Incompatibility]:
        old, old_ref = self._resolve(old_node, self._old_root)
        new, new_ref = self._resolve(new_node, self._new_root)
        if old_ref or new_ref:
            key = (old_ref, new_ref)
            if key in self._assumed:
                return []
            self._assumed.add(key)
        return self._compare(old, new, path)

    def _compare(
        self, old: dict[str, Any], new: dict[str, Any], path: str
    ) -> list[Incompatibility]:
        if "allOf" in old:
            merged: dict[str, Any] = {k: v for k, v in old.items() if k != "allOf"}
            for part in old["allOf"]:
                merged.update(self._resolve(part, self._old_root)[0])
            return self._compare(merged, new, path)
        if old.get("not") == {}:
            return []  # the old schema accepted nothing
        for keyword in _UNION:
            if keyword in old:
                return self._old_union(old, keyword, new, path)
        return self._against_new(old, new, path)

    def _against_new(
        self, old: dict[str, Any], new: dict[str, Any], path: str
    ) -> list[Incompatibility]:
        if "allOf" in new:
            rest = {k: v for k, v in new.items() if k != "allOf"}
            problems = self._compare(old, rest, path)
            for part in new["allOf"]:
                problems += self.check(old, part, path)
            return _dedupe(problems)
        for keyword in _UNION:
            if keyword in new:
                return self._new_union(old, new, keyword, path)
        if new.get("not") == {}:
            return [Incompatibility(path, "the new schema accepts nothing here")]
        return self._plain(old, new, path)

    def _old_union(
        self, old: dict[str, Any], keyword: str, new: dict[str, Any], path: str
    ) -> list[Incompatibility]:
        base = {k: v for k, v in old.items() if k != keyword}
        constrained = any(k not in _ANNOTATIONS and not _is_x(k) for k in base)
        problems: list[Incompatibility] = []
        for branch in old[keyword]:
            if constrained:
                resolved = self._resolve(branch, self._old_root)[0]
                problems += self._compare({**base, **resolved}, new, path)
            else:
                problems += self.check(branch, new, path)
        return _dedupe(problems)

    def _new_union(
        self, old: dict[str, Any], new: dict[str, Any], keyword: str, path: str
    ) -> list[Incompatibility]:
        base = {k: v for k, v in new.items() if k != keyword}
        problems = self._plain(old, base, path)
        attempts: list[list[Incompatibility]] = []
        for branch in new[keyword]:
            before = set(self._assumed)
            found = self.check(old, branch, path)
            if not found:
                return problems
            self._assumed = before  # a failed attempt must not leave assumptions behind
            attempts.append(found)
        old_types = declared_types(old)
        matching = [
            found
            for branch, found in zip(new[keyword], attempts, strict=True)
            if old_types is not None
            and (declared_types(self._resolve(branch, self._new_root)[0]) or set()) & old_types
        ]
        if len(matching) == 1:
            return _dedupe(problems + matching[0])
        reason = f"no branch of the new {keyword} accepts it"
        if old_types is not None and not matching:
            reason = f"type narrowed: {', '.join(sorted(old_types))} no longer accepted ({reason})"
        return [*problems, Incompatibility(path, reason)]

    def _plain(self, old: dict[str, Any], new: dict[str, Any], path: str) -> list[Incompatibility]:
        if all(k in _ANNOTATIONS or _is_x(k) for k in new):
            return []  # the new schema accepts anything here
        problems = self._unknown_keywords(old, new, path)
        values = finite(old)
        if values is not None:
            for value in values:
                problems += self._value(value, new, path)
            return _dedupe(problems)
        problems += self._type(old, new, path)
        if "const" in new:
            problems.append(Incompatibility(path, f"const {new['const']!r} added"))
        elif "enum" in new:
            problems.append(Incompatibility(path, f"enum {new['enum']!r} added"))
        old_types = declared_types(old)
        if covers(old_types, "string"):
            problems += self._strings(old, new, path)
        if covers(old_types, "number") or covers(old_types, "integer"):
            problems += self._numbers(old, new, path)
        if covers(old_types, "object"):
            problems += self._objects(old, new, path)
        if covers(old_types, "array"):
            problems += self._arrays(old, new, path)
        return _dedupe(problems)

    @staticmethod
    def _unknown_keywords(
        old: Mapping[str, Any], new: Mapping[str, Any], path: str
    ) -> list[Incompatibility]:
        return [
            Incompatibility(
                path,
                f"keyword {key!r} {'changed' if key in old else 'added'}; the checker does not"
                " understand it, so it cannot be proved compatible",
            )
            for key, value in new.items()
            if key not in _HANDLED
            and key not in _ANNOTATIONS
            and not _is_x(key)
            and (key not in old or old[key] != value)
        ]

    @staticmethod
    def _type(old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[Incompatibility]:
        new_types = declared_types(new)
        if new_types is None:
            return []
        old_types = declared_types(old)
        if old_types is None:
            return [Incompatibility(path, f"type restricted to {sorted(new_types)} (was any)")]
        lost = sorted(t for t in old_types if not covers(new_types, t))
        if lost:
            return [Incompatibility(path, f"type narrowed: {', '.join(lost)} no longer accepted")]
        return []

    def _value(self, value: Any, new: dict[str, Any], path: str) -> list[Incompatibility]:
        """Whether one value the old schema allowed passes the new schema's keywords."""
        shown = repr(value)
        kind = json_type(value)
        if not covers(declared_types(new), kind):
            reason = f"type narrowed: {shown} ({kind}) no longer accepted"
        elif "const" in new and not same_value(new["const"], value):
            reason = f"const changed: {shown} no longer accepted"
        elif "enum" in new and not any(same_value(v, value) for v in new["enum"]):
            reason = f"enum value {shown} removed"
        elif kind == "string":
            return self._string_value(value, new, path)
        elif kind in {"integer", "number"}:
            return self._numbers({"minimum": value, "maximum": value, "const": value}, new, path)
        elif kind in {"object", "array"} and any(
            k in new for k in _HANDLED - {"type", "enum", "const"}
        ):
            reason = f"cannot check the {kind} value {shown} structurally"
        else:
            return []
        return [Incompatibility(path, reason)]

    @staticmethod
    def _string_value(value: str, new: Mapping[str, Any], path: str) -> list[Incompatibility]:
        shown = repr(value)
        problems = []
        if "pattern" in new and not re.search(new["pattern"], value):
            problems.append(Incompatibility(path, f"pattern added: {shown} no longer matches"))
        if "format" in new:
            problems.append(Incompatibility(path, f"format {new['format']!r} added"))
        if len(value) < new.get("minLength", 0):
            problems.append(Incompatibility(path, f"minLength raised: {shown} too short"))
        if "maxLength" in new and len(value) > new["maxLength"]:
            problems.append(Incompatibility(path, f"maxLength lowered: {shown} too long"))
        return problems

    @staticmethod
    def _strings(
        old: Mapping[str, Any], new: Mapping[str, Any], path: str
    ) -> list[Incompatibility]:
        problems = []
        for keyword in ("pattern", "format"):
            if keyword in new and old.get(keyword) != new[keyword]:
                what = (
                    f"changed from {old[keyword]!r} to {new[keyword]!r}"
                    if keyword in old
                    else f"{new[keyword]!r} added"
                )
                problems.append(Incompatibility(path, f"{keyword} {what}"))
        old_min, new_min = old.get("minLength", 0), new.get("minLength", 0)
        if new_min > old_min:
            problems.append(Incompatibility(path, f"minLength raised from {old_min} to {new_min}"))
        if "maxLength" in new and ("maxLength" not in old or new["maxLength"] < old["maxLength"]):
            was = old.get("maxLength", "none")
            problems.append(
                Incompatibility(path, f"maxLength lowered from {was} to {new['maxLength']}")
            )
        return problems

    @staticmethod
    def _numbers(
        old: Mapping[str, Any], new: Mapping[str, Any], path: str
    ) -> list[Incompatibility]:
        problems = []
        old_low = bound(old, "minimum", "exclusiveMinimum")
        new_low = bound(new, "minimum", "exclusiveMinimum")
        if new_low is not None and (
            old_low is None
            or new_low[0] > old_low[0]
            or (new_low[0] == old_low[0] and new_low[1] and not old_low[1])
        ):
            problems.append(
                Incompatibility(path, f"lower bound raised from {old_low} to {new_low}")
            )
        old_high = bound(old, "maximum", "exclusiveMaximum")
        new_high = bound(new, "maximum", "exclusiveMaximum")
        if new_high is not None and (
            old_high is None
            or new_high[0] < old_high[0]
            or (new_high[0] == old_high[0] and new_high[1] and not old_high[1])
        ):
            problems.append(
                Incompatibility(path, f"upper bound lowered from {old_high} to {new_high}")
            )
        if "multipleOf" in new:
            step = Fraction(str(new["multipleOf"]))
            if "const" in old:
                fits = Fraction(str(old["const"])) % step == 0
            elif "multipleOf" in old:
                fits = Fraction(str(old["multipleOf"])) % step == 0
            else:
                fits = step == 1 and declared_types(old) == {"integer"}
            if not fits:
                problems.append(Incompatibility(path, f"multipleOf {new['multipleOf']} added"))
        return problems

    def _objects(
        self, old: Mapping[str, Any], new: Mapping[str, Any], path: str
    ) -> list[Incompatibility]:
        problems = [
            Incompatibility(_child(path, name), "property is now required")
            for name in new.get("required", ())
            if name not in old.get("required", ())
        ]
        old_props: Mapping[str, Any] = old.get("properties", {})
        new_props: Mapping[str, Any] = new.get("properties", {})
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        for name, schema in old_props.items():
            where = _child(path, name)
            if name in new_props:
                problems += self.check(schema, new_props[name], where)
            elif new_extra is False:
                problems.append(
                    Incompatibility(where, "property removed while additionalProperties is false")
                )
            else:
                problems += self.check(schema, new_extra, where)
        if old_extra is not False:
            for name, schema in new_props.items():
                if name not in old_props:
                    problems += [
                        Incompatibility(
                            p.path,
                            f"property added, but the old schema allowed any extra property: "
                            f"{p.reason}",
                        )
                        for p in self.check(old_extra, schema, _child(path, name))
                    ]
            if new_extra is False:
                problems.append(
                    Incompatibility(
                        _child(path, "*"), "extra properties no longer allowed (were allowed)"
                    )
                )
            else:
                problems += self.check(old_extra, new_extra, _child(path, "*"))
        problems += _limits(old, new, path, "minProperties", "maxProperties", "properties")
        return problems

    def _arrays(
        self, old: Mapping[str, Any], new: Mapping[str, Any], path: str
    ) -> list[Incompatibility]:
        problems = self.check(old.get("items", True), new.get("items", True), f"{path}[]")
        problems += _limits(old, new, path, "minItems", "maxItems", "items")
        if new.get("uniqueItems") and not old.get("uniqueItems"):
            problems.append(Incompatibility(path, "uniqueItems added"))
        return problems


def _limits(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, low: str, high: str, what: str
) -> list[Incompatibility]:
    problems = []
    if new.get(low, 0) > old.get(low, 0):
        problems.append(
            Incompatibility(path, f"{low} raised from {old.get(low, 0)} to {new[low]} {what}")
        )
    if high in new and old.get(high, math.inf) > new[high]:
        problems.append(
            Incompatibility(path, f"{high} lowered from {old.get(high, 'none')} to {new[high]}")
        )
    return problems
