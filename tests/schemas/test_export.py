"""JSON Schema export of every registered type, and the published revision files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from gateway.cli import cli
from schemas.base import RequestModel, ResponseModel
from schemas.export import (
    DIALECT,
    PUBLISHED_DIR,
    SchemaFileError,
    content,
    current_schemas,
    json_schema,
    kind_of,
    publish,
    read_published,
    schema_id,
)
from schemas.police import ResidentRegistered
from schemas.registry import REGISTRY

CHECKER = Draft202012Validator.FORMAT_CHECKER
# The JSON of a valid registration; the schema alone judges it (Python validators aside).
RESIDENT = {
    "personal_id": "079190012345",
    "full_name": "Nguyễn Thị Minh Khai",
    "date_of_birth": "1990-05-17",
    "sex": "female",
    "nationality": "VN",
    "permanent_address": {
        "street": "12 Lê Lợi",
        "commune_code": "26740",
        "commune_name": "Phường Sài Gòn",
        "province_code": "79",
        "province_name": "Thành phố Hồ Chí Minh",
    },
    "registered_on": "2026-11-20",
}


@pytest.mark.parametrize("event_type", REGISTRY.types())
def test_every_type_exports_an_annotated_2020_12_schema(event_type: str) -> None:
    """Each type's schema is valid draft 2020-12 with $id, title and the x-xgw annotations."""
    model = REGISTRY.model_for(event_type)
    assert model is not None
    schema = json_schema(model)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DIALECT
    assert schema["$id"] == f"urn:hcm:xgw:schema:{event_type}"
    assert schema["title"] == model.__name__
    assert schema["x-xgw-event-type"] == event_type
    assert schema["x-xgw-kind"] == kind_of(model)
    assert schema["additionalProperties"] is False  # models forbid extra fields
    if issubclass(model, RequestModel):
        assert schema["x-xgw-response-type"] == model.response_type
        assert REGISTRY.model_for(model.response_type) is not None
    if issubclass(model, ResponseModel):
        assert schema["x-xgw-request-type"] == model.request_type


def test_schema_accepts_the_model_json_and_refuses_extras() -> None:
    """A valid event's JSON passes its schema; an extra field or a bad pattern does not."""
    schema = json_schema(ResidentRegistered)
    validator = Draft202012Validator(schema, format_checker=CHECKER)
    document = RESIDENT
    assert validator.is_valid(document)
    assert not validator.is_valid({**document, "extra": 1})
    assert not validator.is_valid({**document, "personal_id": "79190012345"})


def test_export_is_deterministic() -> None:
    """Two exports of the same registry are equal, so publishing twice adds nothing."""
    assert current_schemas(REGISTRY) == current_schemas(REGISTRY)


def test_publish_twice_adds_nothing(tmp_path: Path) -> None:
    """The first publish writes revision 1 of each type; the second writes nothing."""
    current = current_schemas(REGISTRY)
    written = publish(current, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == sorted(
        f"{t}/1.json" for t in current
    )
    assert publish(current, tmp_path) == []
    published = read_published(tmp_path)
    for event_type, schema in current.items():
        revision = published[event_type][1]
        assert revision["$id"] == schema_id(event_type, 1)
        assert revision["x-xgw-revision"] == 1
        assert content(revision) == content(schema)


def test_committed_revisions_are_well_formed() -> None:
    """schemas/published reads cleanly: numbered from 1, type and $id matching the path."""
    for event_type, revisions in read_published(PUBLISHED_DIR).items():
        for revision, schema in revisions.items():
            Draft202012Validator.check_schema(schema)
            assert schema["$id"] == schema_id(event_type, revision)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"vn.hcm.police.x.v1/2.json": "{}"}, "do not run from 1 without a gap"),
        ({"vn.hcm.police.x.v1/latest.json": "{}"}, "not a revision file"),
        ({"vn.hcm.police.x.v1/1.json": "{"}, "not UTF-8 JSON"),
        ({"vn.hcm.police.x.v1/1.json": '{"x-xgw-event-type": "other"}'}, "x-xgw-event-type"),
    ],
    ids=["gap", "name", "json", "type"],
)
def test_inconsistent_published_files_are_refused(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    """A published directory with a gap, a stray file or a wrong type is an error, not ignored."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(SchemaFileError, match=message):
        read_published(tmp_path)
    result = CliRunner().invoke(cli, ["schemas", "check", "--published", str(tmp_path)])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("xgw: error: ")
    assert message in line


def test_cli_export_out_writes_one_file_per_type(tmp_path: Path) -> None:
    """`schemas export --out DIR` writes <type>.json for every registered type."""
    result = CliRunner().invoke(cli, ["schemas", "export", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {len(REGISTRY.types())} schemas to {tmp_path / 'out'}"
    for event_type in REGISTRY.types():
        schema = json.loads((tmp_path / "out" / f"{event_type}.json").read_text(encoding="utf-8"))
        assert schema == current_schemas(REGISTRY)[event_type]


def test_cli_export_without_target_is_a_usage_error() -> None:
    """Export needs --out or --publish."""
    result = CliRunner().invoke(cli, ["schemas", "export"])
    assert result.exit_code == 2
    assert "--out DIR and/or --publish" in result.output


def test_cli_publish_then_check(tmp_path: Path) -> None:
    """Publishing into an empty directory makes check pass; each type is reported once."""
    runner = CliRunner()
    published = runner.invoke(cli, ["schemas", "export", "--publish", "--published", str(tmp_path)])
    assert published.exit_code == 0, published.output
    assert f"{len(REGISTRY.types())} new revisions" in published.output
    checked = runner.invoke(cli, ["schemas", "check", "--strict", "--published", str(tmp_path)])
    assert checked.exit_code == 0, checked.output
    for event_type in REGISTRY.types():
        assert f"{event_type}: compatible with revision 1; current = revision 1" in checked.output


@pytest.mark.parametrize("command", ["export", "check", "asyncapi"])
def test_schemas_commands_have_help(command: str) -> None:
    """Each schemas command prints its help."""
    result = CliRunner().invoke(cli, ["schemas", command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
