"""Backward compatibility: each rule, the registry against schemas/published, a caught break.

A breaking change is made in a temporary copy of the published revisions and must be refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

import schemas.registry
from gateway.cli import cli
from schemas.compat import Incompatibility, incompatibilities, is_compatible
from schemas.export import (
    PUBLISHED_DIR,
    BreakingChange,
    as_revision,
    compare,
    current_schemas,
    json_schema,
    publish,
    read_published,
)
from schemas.police import ResidentRegistered
from schemas.registry import REGISTRY, SchemaRegistry

S: dict[str, Any] = {"type": "string"}
N: dict[str, Any] = {"type": "integer"}


def obj(
    props: dict[str, Any], required: tuple[str, ...] = (), extra: Any = False
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(required),
        "additionalProperties": extra,
    }


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}], "default": None}


# (id, old, new, fragment of the reason or None when compatible, a document valid under old
# that the new schema refuses: the witness that a reported break is real).
RULES: list[tuple[str, dict[str, Any], dict[str, Any], str | None, Any]] = [
    ("annotation-only", {**S, "title": "A"}, {**S, "description": "B", "x-y": 1}, None, None),
    ("type-narrowed", {"type": ["string", "integer"]}, S, "integer no longer accepted", 5),
    ("type-added", {}, S, "type restricted", 5),
    ("type-widened", N, {"type": "number"}, None, None),
    ("type-widened-null", S, {"type": ["string", "null"]}, None, None),
    ("enum-value-removed", {"enum": ["a", "b"]}, {"enum": ["a"]}, "enum value 'b' removed", "b"),
    ("enum-value-added", {"enum": ["a"]}, {"enum": ["a", "b"]}, None, None),
    ("enum-added", S, {**S, "enum": ["a"]}, "enum ['a'] added", "z"),
    ("enum-to-string", {"enum": ["a"], **S}, S, None, None),
    ("const-changed", {"const": "a"}, {"const": "b"}, "const changed", "a"),
    ("const-added", S, {"const": "a"}, "const 'a' added", "z"),
    ("pattern-added", S, {**S, "pattern": "^[0-9]+$"}, "pattern '^[0-9]+$' added", "x"),
    (
        "pattern-changed",
        {**S, "pattern": "^[0-9]{5}$"},
        {**S, "pattern": "^[0-9]{6}$"},
        "pattern changed",
        "12345",
    ),
    ("pattern-removed", {**S, "pattern": "^a"}, S, None, None),
    ("format-added", S, {**S, "format": "date"}, "format 'date' added", "x"),
    (
        "format-changed",
        {**S, "format": "date"},
        {**S, "format": "email"},
        "format changed from 'date' to 'email'",
        "2026-01-01",
    ),
    ("minLength-raised", {**S, "minLength": 1}, {**S, "minLength": 2}, "minLength raised", "a"),
    ("minLength-lowered", {**S, "minLength": 2}, {**S, "minLength": 1}, None, None),
    (
        "maxLength-lowered",
        {**S, "maxLength": 5},
        {**S, "maxLength": 4},
        "maxLength lowered",
        "abcde",
    ),
    ("maxLength-added", S, {**S, "maxLength": 4}, "maxLength lowered from none", "abcde"),
    ("maxLength-raised", {**S, "maxLength": 4}, {**S, "maxLength": 5}, None, None),
    ("minimum-raised", {**N, "minimum": 1}, {**N, "minimum": 2}, "lower bound raised", 1),
    ("minimum-exclusive", {**N, "minimum": 1}, {**N, "exclusiveMinimum": 1}, "lower bound", 1),
    ("maximum-lowered", {**N, "maximum": 10}, {**N, "maximum": 9}, "upper bound lowered", 10),
    ("maximum-added", N, {**N, "maximum": 9}, "upper bound lowered", 10),
    ("bounds-relaxed", {**N, "minimum": 1, "maximum": 9}, {**N, "maximum": 10}, None, None),
    ("multipleOf-added", N, {**N, "multipleOf": 2}, "multipleOf 2 added", 1),
    ("multipleOf-divides", {**N, "multipleOf": 4}, {**N, "multipleOf": 2}, None, None),
    (
        "enum-value-breaks-new-pattern",
        {"enum": ["ab", "cd"]},
        {**S, "pattern": "^a"},
        "'cd' no longer matches",
        "cd",
    ),
    ("enum-values-fit-new-pattern", {"enum": ["ab", "ac"]}, {**S, "pattern": "^a"}, None, None),
    ("const-number-out-of-range", {"const": 11}, {**N, "maximum": 10}, "upper bound", 11),
    (
        "required-added",
        obj({"a": S, "b": S}, ("a",)),
        obj({"a": S, "b": S}, ("a", "b")),
        "b: property is now required",
        {"a": "x"},
    ),
    (
        "optional-property-added",
        obj({"a": S}, ("a",)),
        obj({"a": S, "b": nullable(S)}, ("a",)),
        None,
        None,
    ),
    (
        "property-added-to-open-object",
        obj({"a": S}, extra=True),
        obj({"a": S, "b": S}, extra=True),
        "property added, but the old schema allowed any extra property",
        {"b": 5},
    ),
    (
        "property-removed",
        obj({"a": S, "b": S}),
        obj({"a": S}),
        "b: property removed while additionalProperties is false",
        {"b": "x"},
    ),
    ("property-removed-open", obj({"a": S, "b": S}), obj({"a": S}, extra=True), None, None),
    (
        "additionalProperties-narrowed",
        obj({}, extra=True),
        obj({}),
        "extra properties no longer allowed",
        {"z": 1},
    ),
    ("required-dropped", obj({"a": S}, ("a",)), obj({"a": S}), None, None),
    (
        "nested-object",
        obj({"addr": obj({"code": {**S, "pattern": "^[0-9]{5}$"}}, ("code",))}),
        obj({"addr": obj({"code": {**S, "pattern": "^[0-9]{6}$"}}, ("code",))}),
        "addr.code: pattern changed",
        {"addr": {"code": "12345"}},
    ),
    (
        "nullable-removed",
        obj({"a": nullable(S)}),
        obj({"a": S}),
        "a: type narrowed: None (null) no longer accepted",
        {"a": None},
    ),
    ("nullable-added", obj({"a": S}), obj({"a": nullable(S)}), None, None),
    (
        "nullable-inner-narrowed",
        obj({"a": nullable({**S, "maxLength": 9})}),
        obj({"a": nullable({**S, "maxLength": 3})}),
        "a: maxLength lowered",
        {"a": "abcdef"},
    ),
    (
        "union-branch-removed",
        {"anyOf": [S, N]},
        {"anyOf": [S]},
        "integer no longer accepted",
        3,
    ),
    ("union-branch-added", {"anyOf": [S]}, {"anyOf": [S, N]}, None, None),
    ("oneOf-new", S, {"oneOf": [S, N]}, None, None),
    (
        "items-narrowed",
        {"type": "array", "items": S},
        {"type": "array", "items": {**S, "maxLength": 2}},
        "[]: maxLength lowered",
        ["abc"],
    ),
    ("minItems-raised", {"type": "array"}, {"type": "array", "minItems": 1}, "minItems raised", []),
    (
        "maxItems-lowered",
        {"type": "array", "maxItems": 3},
        {"type": "array", "maxItems": 2},
        "maxItems lowered",
        [1, 2, 3],
    ),
    (
        "uniqueItems-added",
        {"type": "array"},
        {"type": "array", "uniqueItems": True},
        "uniqueItems",
        [1, 1],
    ),
    (
        "ref-resolved",
        {"$defs": {"A": obj({"x": S})}, "$ref": "#/$defs/A"},
        {"$defs": {"B": obj({"x": N})}, "$ref": "#/$defs/B"},
        "x: type narrowed: string no longer accepted",
        {"x": "s"},
    ),
    (
        "allOf-new-part",
        S,
        {"allOf": [S, {"maxLength": 2}]},
        "maxLength lowered",
        "abc",
    ),
    (
        "unknown-keyword-added",
        S,
        {**S, "contentEncoding": "base64"},
        "keyword 'contentEncoding' added",
        None,
    ),
    (
        "unknown-keyword-kept",
        {**S, "contentEncoding": "base64"},
        {**S, "contentEncoding": "base64"},
        None,
        None,
    ),
    ("new-false", S, {"not": {}}, "accepts nothing", "x"),
]


@pytest.mark.parametrize(
    ("old", "new", "reason", "witness"), [r[1:] for r in RULES], ids=[r[0] for r in RULES]
)
def test_rule(old: dict[str, Any], new: dict[str, Any], reason: str | None, witness: Any) -> None:
    """Each rule of the table: a break is reported with a path and reason, and is a real one."""
    found = incompatibilities(old, new)
    if reason is None:
        assert found == []
        return
    assert any(reason in str(p) for p in found), found
    if witness is not None:
        checker = Draft202012Validator.FORMAT_CHECKER
        assert Draft202012Validator(old, format_checker=checker).is_valid(witness)
        assert not Draft202012Validator(new, format_checker=checker).is_valid(witness)


def test_reported_paths_name_the_property() -> None:
    """An incompatibility names where in the document it is: nested properties are dotted."""
    old = obj({"addr": obj({"code": S})})
    new = obj({"addr": obj({"code": N})})
    assert incompatibilities(old, new) == [
        Incompatibility("addr.code", "type narrowed: string no longer accepted")
    ]
    assert (
        str(incompatibilities(S, N)[0]) == "(top level): type narrowed: string no longer accepted"
    )


def test_recursive_schema_terminates() -> None:
    """A self-referencing schema (a tree) is compared without endless recursion."""
    tree = {
        "$defs": {"Node": obj({"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}})},
        "$ref": "#/$defs/Node",
    }
    assert is_compatible(tree, tree)


@pytest.mark.parametrize("event_type", REGISTRY.types())
def test_every_current_schema_is_compatible_with_itself(event_type: str) -> None:
    """An unchanged schema is compatible with itself (no false alarm on the real models)."""
    schema = current_schemas(REGISTRY)[event_type]
    assert incompatibilities(schema, schema) == []


def test_published_revisions_are_compatible_with_themselves() -> None:
    """Every committed revision is compatible with itself and with each later revision."""
    for event_type, revisions in read_published(PUBLISHED_DIR).items():
        items = sorted(revisions.items())
        for n, old in items:
            for m, new in items[n - 1 :]:
                assert incompatibilities(old, new) == [], (event_type, n, m)


def test_registry_has_no_breaking_change_against_published() -> None:
    """Every registered type is compatible with all its published revisions (schemas/published)."""
    reports = compare(current_schemas(REGISTRY), read_published(PUBLISHED_DIR))
    breaking = [line for r in reports if r.status == "breaking" for line in r.lines()]
    assert breaking == []


def test_every_registered_type_is_published() -> None:
    """Every registered type has a published revision (else: xgw schemas export --publish)."""
    reports = compare(current_schemas(REGISTRY), read_published(PUBLISHED_DIR))
    assert [r.event_type for r in reports if r.status == "unpublished"] == []


class ResidentRegisteredWithEthnicity(ResidentRegistered):
    """The same type string with a new required field: a breaking change."""

    ethnicity: str


class ResidentRegisteredWithNote(ResidentRegistered):
    """The same type string with a new optional field: a compatible change."""

    note: str | None = None


def _copy_published(tmp_path: Path) -> Path:
    copy = tmp_path / "published"
    if PUBLISHED_DIR.is_dir():
        shutil.copytree(PUBLISHED_DIR, copy)
    else:  # before the first publish: start from the current schemas
        publish(current_schemas(REGISTRY), copy)
    if not (copy / ResidentRegistered.event_type).is_dir():
        publish({ResidentRegistered.event_type: json_schema(ResidentRegistered)}, copy)
    return copy


def test_breaking_change_in_a_temporary_copy_is_caught(tmp_path: Path) -> None:
    """A model that adds a required field fails the check against a copy of schemas/published."""
    published = _copy_published(tmp_path)
    current = current_schemas(REGISTRY)
    current[ResidentRegistered.event_type] = json_schema(ResidentRegisteredWithEthnicity)
    reports = {r.event_type: r for r in compare(current, read_published(published))}
    report = reports[ResidentRegistered.event_type]
    assert report.status == "breaking"
    assert any("ethnicity: property is now required" in p for p in report.problems)
    before = sorted(published.rglob("*.json"))
    with pytest.raises(BreakingChange) as caught:
        publish(current, published)
    assert any(ResidentRegistered.event_type in p for p in caught.value.problems)
    assert sorted(published.rglob("*.json")) == before  # nothing was written


def test_cli_check_and_publish_refuse_a_breaking_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`schemas check` and `export --publish` exit 1, one line per problem, no traceback."""
    published = _copy_published(tmp_path)
    monkeypatch.setattr(
        schemas.registry, "REGISTRY", SchemaRegistry([ResidentRegisteredWithEthnicity])
    )
    runner = CliRunner()
    for args in (["check"], ["export", "--publish"]):
        result = runner.invoke(cli, ["schemas", *args, "--published", str(published)])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        errors = [line for line in result.stderr.splitlines() if line]
        assert all(line.startswith("xgw: error: ") for line in errors)
        assert any(
            line.startswith(f"xgw: error: {ResidentRegistered.event_type}: breaking change")
            and "ethnicity: property is now required" in line
            and "new major version" in line
            for line in errors
        ), errors


def test_compatible_change_is_published_as_next_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compatible change gets revision n+1; check then passes, and --strict wants it published."""
    published = _copy_published(tmp_path)
    event_type = ResidentRegistered.event_type
    latest = max(read_published(published)[event_type])
    monkeypatch.setattr(schemas.registry, "REGISTRY", SchemaRegistry([ResidentRegisteredWithNote]))
    runner = CliRunner()
    args = ["--published", str(published)]
    assert runner.invoke(cli, ["schemas", "check", *args]).exit_code == 0
    strict = runner.invoke(cli, ["schemas", "check", "--strict", *args])
    assert strict.exit_code == 1
    assert "changed since revision" in strict.stderr
    result = runner.invoke(cli, ["schemas", "export", "--publish", *args])
    assert result.exit_code == 0, result.output
    assert f"published {event_type} revision {latest + 1}" in result.output
    assert read_published(published)[event_type][latest + 1]["x-xgw-revision"] == latest + 1
    again = runner.invoke(cli, ["schemas", "check", "--strict", *args])
    assert again.exit_code == 0, again.output
    assert f"current = revision {latest + 1}" in again.output


def test_check_is_transitive_over_all_revisions() -> None:
    """A schema equal to the latest revision still fails if it breaks an older one."""
    event_type = "vn.hcm.police.example.v1"
    head = {"x-xgw-event-type": event_type}
    first = as_revision({**head, **obj({"a": {"enum": ["x", "y"]}}, ("a",))}, 1)
    second = as_revision({**head, **obj({"a": {"enum": ["x"]}}, ("a",))}, 2)
    current = {event_type: {**head, **obj({"a": {"enum": ["x"]}}, ("a",))}}
    (report,) = compare(current, {event_type: {1: first, 2: second}})
    assert report.status == "breaking"
    assert report.problems == [
        "breaking change against published revision 1: a: enum value 'y' removed"
        " (a breaking change needs a new major version: a new type string)"
    ]


def test_type_without_published_revision_is_reported(tmp_path: Path) -> None:
    """Check fails for a registered type that has no published revision, naming the fix."""
    result = CliRunner().invoke(cli, ["schemas", "check", "--published", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "no published revision; run 'xgw schemas export --publish'" in result.stderr
