"""JSON Schema (draft 2020-12) of every registered type, and the published revisions on disk.

Each type ``vn.hcm.<agency>.<event>.v<major>`` has its revisions under
``schemas/published/<type>/<n>.json``, ``n`` counting the compatible revisions of that major
version from 1. A revision is written once and never edited; a breaking change needs a new
major version, which is a new type string and so a new directory.

    SchemaFileError        a published file is missing, unreadable or inconsistent
    BreakingChange         publishing refused: the current schema breaks a published revision
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from schemas.base import EventModel, RequestModel, ResponseModel
from schemas.compat import incompatibilities
from schemas.nodes import UnresolvableRef
from schemas.registry import SchemaRegistry

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX = "urn:hcm:xgw:schema:"
PUBLISHED_DIR = Path(__file__).parent / "published"
EVENT_TYPE = re.compile(r"vn\.hcm\.[a-z][a-z0-9-]{1,31}\.[a-z][a-z0-9_]*\.v[1-9][0-9]*")
_REVISION_FILE = re.compile(r"[1-9][0-9]*\.json")
# Keys that differ between revisions of one content, so left out when comparing content.
_PER_REVISION = frozenset({"$id", "x-xgw-revision"})

Kind = Literal["event", "request", "response"]
Status = Literal["unpublished", "up_to_date", "changed", "breaking"]


class SchemaFileError(Exception):
    """A published schema file is missing, unreadable or inconsistent."""


class BreakingChange(Exception):
    """Publishing is refused: a current schema breaks a published revision."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def kind_of(model: type[EventModel]) -> Kind:
    """Whether ``model`` is a plain event, a request or a response."""
    if issubclass(model, RequestModel):
        return "request"
    if issubclass(model, ResponseModel):
        return "response"
    return "event"


def schema_id(event_type: str, revision: int | None = None) -> str:
    """The ``$id`` of a type's current schema, or of one published revision."""
    return f"{ID_PREFIX}{event_type}" + (f":{revision}" if revision is not None else "")


def json_schema(model: type[EventModel]) -> dict[str, Any]:
    """The JSON Schema of ``model``'s data, annotated with its type, kind and partner type."""
    event_type = model.event_type
    if not EVENT_TYPE.fullmatch(event_type):
        raise ValueError(f"{event_type!r} is not vn.hcm.<agency>.<event>.v<major>")
    kind = kind_of(model)
    head: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": schema_id(event_type),
        "title": model.__name__,
        "x-xgw-event-type": event_type,
        "x-xgw-kind": kind,
        "x-xgw-subject-field": model.subject_field,
    }
    if issubclass(model, RequestModel):
        head["x-xgw-response-type"] = model.response_type
    if issubclass(model, ResponseModel):
        head["x-xgw-request-type"] = model.request_type
    body = model.model_json_schema(mode="validation")
    return {**head, **{k: v for k, v in body.items() if k not in head}}


def current_schemas(registry: SchemaRegistry) -> dict[str, dict[str, Any]]:
    """The JSON Schema of every registered type, by type."""
    schemas = {}
    for event_type in registry.types():
        model = registry.model_for(event_type)
        if model is not None:
            schemas[event_type] = json_schema(model)
    return schemas


def content(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` without what names one revision, for comparing what two revisions say."""
    return {k: v for k, v in schema.items() if k not in _PER_REVISION}


def as_revision(schema: Mapping[str, Any], revision: int) -> dict[str, Any]:
    """``schema`` as the published revision ``revision`` of its type."""
    event_type = schema["x-xgw-event-type"]
    head = {"$schema": DIALECT, "$id": schema_id(event_type, revision), "x-xgw-revision": revision}
    return {**head, **{k: v for k, v in schema.items() if k not in head}}


def dumps(schema: Mapping[str, Any]) -> str:
    """The text of a schema file: indented UTF-8 JSON with a final newline, stable across runs."""
    return json.dumps(schema, ensure_ascii=False, indent=2) + "\n"


def read_published(directory: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """Every published revision under ``directory``: type -> revision -> schema."""
    if not directory.is_dir():
        return {}
    published: dict[str, dict[int, dict[str, Any]]] = {}
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        files = {}
        for file in folder.iterdir():
            if not _REVISION_FILE.fullmatch(file.name):
                raise SchemaFileError(f"{file}: not a revision file (expected <n>.json)")
            files[int(file.stem)] = file
        if sorted(files) != list(range(1, len(files) + 1)):
            raise SchemaFileError(
                f"{folder}: revisions {sorted(files)} do not run from 1 without a gap"
            )
        if files:
            published[folder.name] = {
                n: _read_revision(files[n], folder.name, n) for n in sorted(files)
            }
    return published


def _read_revision(file: Path, event_type: str, revision: int) -> dict[str, Any]:
    try:
        schema = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaFileError(f"{file}: cannot read: {exc.strerror}") from exc
    except ValueError as exc:
        raise SchemaFileError(f"{file}: not UTF-8 JSON: {exc}") from exc
    if not isinstance(schema, dict):
        raise SchemaFileError(f"{file}: not a JSON object")
    if schema.get("x-xgw-event-type") != event_type:
        raise SchemaFileError(f"{file}: x-xgw-event-type is not {event_type}")
    if schema.get("x-xgw-revision") != revision or schema.get("$id") != schema_id(
        event_type, revision
    ):
        raise SchemaFileError(f"{file}: x-xgw-revision or $id does not name revision {revision}")
    return schema


@dataclass(frozen=True)
class TypeReport:
    """How one registered type's current schema stands against its published revisions."""

    event_type: str
    status: Status
    latest: int = 0
    """The newest published revision, 0 when none is."""
    problems: list[str] = field(default_factory=list)
    """One line per incompatibility, naming the revision it breaks."""

    def lines(self) -> list[str]:
        """Readable lines about this type, each starting with the type."""
        if self.status == "unpublished":
            return [f"{self.event_type}: no published revision; run 'xgw schemas export --publish'"]
        if self.status == "breaking":
            return [f"{self.event_type}: {p}" for p in self.problems]
        span = f"revision 1..{self.latest}" if self.latest > 1 else "revision 1"
        if self.status == "changed":
            return [
                f"{self.event_type}: compatible with {span}, but changed since revision "
                f"{self.latest}; run 'xgw schemas export --publish'"
            ]
        return [f"{self.event_type}: compatible with {span}; current = revision {self.latest}"]


def compare(
    current: Mapping[str, Mapping[str, Any]],
    published: Mapping[str, Mapping[int, Mapping[str, Any]]],
) -> list[TypeReport]:
    """Check each current schema against every published revision of its type (transitively)."""
    reports = []
    for event_type, schema in sorted(current.items()):
        revisions = published.get(event_type, {})
        if not revisions:
            reports.append(TypeReport(event_type, "unpublished"))
            continue
        latest = max(revisions)
        problems = []
        for revision, old in revisions.items():
            try:
                found = incompatibilities(old, schema)
            except UnresolvableRef as exc:
                problems.append(f"revision {revision}: {exc}")
                continue
            problems += [
                f"breaking change against published revision {revision}: {p}"
                f" (a breaking change needs a new major version: a new type string)"
                for p in found
            ]
        if problems:
            status: Status = "breaking"
        elif content(schema) == content(revisions[latest]):
            status = "up_to_date"
        else:
            status = "changed"
        reports.append(TypeReport(event_type, status, latest, problems))
    return reports


def publish(current: Mapping[str, Mapping[str, Any]], directory: Path) -> list[Path]:
    """Write a new revision for each new or changed type; nothing at all if one would break.

    Raises :class:`BreakingChange` listing every incompatibility, before writing anything.
    """
    reports = compare(current, read_published(directory))
    problems = [line for r in reports if r.status == "breaking" for line in r.lines()]
    if problems:
        raise BreakingChange(problems)
    written = []
    for report in reports:
        if report.status in {"unpublished", "changed"}:
            revision = report.latest + 1
            path = directory / report.event_type / f"{revision}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                dumps(as_revision(current[report.event_type], revision)), encoding="utf-8"
            )
            written.append(path)
    return written


def write_current(current: Mapping[str, Mapping[str, Any]], directory: Path) -> list[Path]:
    """Write ``<type>.json`` for every current schema into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, schema in sorted(current.items()):
        path = directory / f"{event_type}.json"
        path.write_text(dumps(schema), encoding="utf-8")
        written.append(path)
    return written
