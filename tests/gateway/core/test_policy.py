"""The exchange policy: loading, validation against the registry, and routing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.core.policy import Policy, load_policy
from gateway.errors import ConfigError
from gateway.ops.docs import markdown_tables
from gateway.settings import DEFAULT_POLICY_FILE
from schemas.registry import REGISTRY

REGISTERED = "vn.hcm.police.resident_registered.v1"
ADDRESS_CHANGED = "vn.hcm.police.resident_address_changed.v1"
VACCINATION = "vn.hcm.health.vaccination_recorded.v1"


def _recipient(agency: str, fields: str = '["personal_id", "full_name"]') -> str:
    return (
        "  [[routes.recipients]]\n"
        f'  agency = "{agency}"\n'
        '  purpose = "health_insurance_enrolment"\n'
        '  legal_basis = "Law on Health Insurance 2008"\n'
        f"  fields = {fields}\n"
    )


def _route(event_type: str = REGISTERED, publisher: str = "police", *recipients: str) -> str:
    body = f'[[routes]]\ntype = "{event_type}"\npublisher = "{publisher}"\n'
    return body + "".join(recipients or (_recipient("health"),))


def _policy_text(*routes: str, agencies: str = '["police", "health", "land"]') -> str:
    return f"agencies = {agencies}\n\n" + "\n".join(routes or (_route(),))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path) -> str:
    """Load ``path`` expecting a ConfigError; return its one-line message."""
    with pytest.raises(ConfigError) as error:
        load_policy(path, REGISTRY)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_shipped_policy_loads() -> None:
    """The shipped policy is valid and routes resident registrations to three agencies."""
    policy = load_policy(DEFAULT_POLICY_FILE, REGISTRY)
    assert policy.agencies == ("police", "health", "education", "land")
    route = policy.route_for(REGISTERED)
    assert route is not None
    assert route.publisher == "police"
    assert [g.agency for g in route.recipients] == ["health", "education", "land"]


def test_shipped_policy_minimises_land_registry_view() -> None:
    """The land registry is granted only the resident's id and name."""
    route = load_policy(DEFAULT_POLICY_FILE, REGISTRY).route_for(REGISTERED)
    assert route is not None
    (land,) = [g for g in route.recipients if g.agency == "land"]
    assert land.fields == frozenset({"personal_id", "full_name"})


def test_minimal_policy_loads(tmp_path: Path) -> None:
    """A small hand-written policy loads and routes its one type."""
    policy = load_policy(_write(tmp_path, _policy_text()), REGISTRY)
    route = policy.route_for(REGISTERED)
    assert route is not None
    assert route.recipients[0].fields == frozenset({"personal_id", "full_name"})


def test_route_for_unrouted_type_is_none(policy: Policy) -> None:
    """A registered type without a route, and an unknown type, both have no route."""
    assert policy.route_for(VACCINATION) is None
    assert policy.route_for("vn.hcm.fire.alarm.v1") is None
    assert policy.route_for(ADDRESS_CHANGED) is not None


def test_policy_is_frozen(policy: Policy) -> None:
    """A loaded policy cannot be changed in place."""
    with pytest.raises(ValidationError):
        policy.agencies = ("police",)  # type: ignore[misc]


def test_missing_file(tmp_path: Path) -> None:
    """A missing policy file is a ConfigError naming the file."""
    path = tmp_path / "absent.toml"
    message = _error(path)
    assert str(path) in message
    assert "cannot read policy file" in message


def test_bad_toml(tmp_path: Path) -> None:
    """A file that is not TOML is a ConfigError naming the file and the line."""
    path = _write(tmp_path, 'agencies = ["police"\n[[routes]\n')
    message = _error(path)
    assert str(path) in message
    assert "not valid TOML" in message
    assert "line" in message


def test_non_utf8_file(tmp_path: Path) -> None:
    """A policy file in a legacy Vietnamese code page is a ConfigError naming the file."""
    path = tmp_path / "policy.toml"
    path.write_bytes(_policy_text().replace("Law on", "Lu\xe2t").encode("cp1258"))
    assert str(path) in _error(path)


def test_unknown_agency_in_route(tmp_path: Path) -> None:
    """A recipient that is not a declared agency is refused, naming file and agency."""
    path = _write(tmp_path, _policy_text(_route(REGISTERED, "police", _recipient("fire"))))
    message = _error(path)
    assert str(path) in message
    assert "unknown agencies ['fire']" in message


def test_unknown_publisher(tmp_path: Path) -> None:
    """A publisher that is not a declared agency is refused."""
    path = _write(tmp_path, _policy_text(_route(REGISTERED, "education")))
    assert "unknown agencies ['education']" in _error(path)


def test_duplicate_recipient(tmp_path: Path) -> None:
    """An agency listed twice as recipient of one route is refused, naming the route."""
    route = _route(REGISTERED, "police", _recipient("health"), _recipient("health"))
    path = _write(tmp_path, _policy_text(route))
    message = _error(path)
    assert str(path) in message
    assert "routes.0" in message
    assert "listed twice as recipient" in message


def test_publisher_listed_as_recipient(tmp_path: Path) -> None:
    """The publisher cannot receive its own events."""
    path = _write(tmp_path, _policy_text(_route(REGISTERED, "police", _recipient("police"))))
    message = _error(path)
    assert str(path) in message
    assert "routes.0" in message
    assert "publisher cannot be a recipient" in message


def test_unknown_type(tmp_path: Path) -> None:
    """A route for an unregistered type is refused, naming the type."""
    path = _write(tmp_path, _policy_text(_route("vn.hcm.fire.alarm.v1")))
    assert "unregistered type vn.hcm.fire.alarm.v1" in _error(path)


def test_unknown_field(tmp_path: Path) -> None:
    """A grant of a field the type does not have is refused, naming the field and the agency."""
    route = _route(REGISTERED, "police", _recipient("health", '["personal_id", "blood_type"]'))
    message = _error(_write(tmp_path, _policy_text(route)))
    assert "blood_type" in message
    assert "health" in message


@pytest.mark.parametrize(
    "route",
    [
        _route("vn.hcm.fire.alarm.v1"),
        _route(REGISTERED, "police", _recipient("health", '["blood_type"]')),
    ],
    ids=["unknown-type", "unknown-field"],
)
def test_registry_errors_name_the_file(route: str, tmp_path: Path) -> None:
    """Errors found against the schema registry name the policy file too."""
    path = _write(tmp_path, _policy_text(route))
    assert str(path) in _error(path)


def test_duplicate_route(tmp_path: Path) -> None:
    """Two routes for one type are refused."""
    path = _write(tmp_path, _policy_text(_route(), _route()))
    message = _error(path)
    assert str(path) in message
    assert "more than one route" in message


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    """A misspelt key (here 'recipient' for 'recipients') is refused, naming where it is."""
    text = _policy_text(_route()).replace("[[routes.recipients]]", "[[routes.recipient]]")
    message = _error(_write(tmp_path, text))
    assert "routes.0.recipient" in message


def test_missing_agencies(tmp_path: Path) -> None:
    """A policy without the agencies list is refused, naming the field."""
    message = _error(_write(tmp_path, _route()))
    assert "agencies" in message


def test_invalid_purpose_names_the_field(tmp_path: Path) -> None:
    """A purpose that is not a snake_case identifier is refused, naming its full location."""
    text = _policy_text().replace("health_insurance_enrolment", "Health Insurance")
    assert "routes.0.recipients.0.purpose" in _error(_write(tmp_path, text))


def test_empty_grant_is_refused(tmp_path: Path) -> None:
    """A grant of no fields is refused."""
    route = _route(REGISTERED, "police", _recipient("health", "[]"))
    assert "routes.0.recipients.0.fields" in _error(_write(tmp_path, _policy_text(route)))


def test_reserved_agency_ids_are_refused(tmp_path: Path) -> None:
    """An agency called 'gateway' could impersonate the gateway, so the id is refused."""
    path = tmp_path / "policy.toml"
    path.write_text('agencies = ["police", "gateway"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="reserved"):
        load_policy(path, REGISTRY)


def test_policy_page_shows_exactly_the_shipped_policy(policy: Policy) -> None:
    """docs/policy.md carries the data-sharing tables generated from the shipped policy."""
    page = (Path(__file__).parents[3] / "docs" / "policy.md").read_text(encoding="utf-8")
    assert markdown_tables(policy) in page


IDENTITY = "vn.hcm.police.identity_verification_requested.v1"


def _request_rule(
    answerer: str = "police",
    requester: str = "land",
    fields: str = '["personal_id"]',
    response_fields: str = '["match"]',
    request_type: str = IDENTITY,
) -> str:
    return f"""
agencies = ["police", "health", "education", "land"]

[[requests]]
type = "{request_type}"
answerer = "{answerer}"

  [[requests.requesters]]
  agency = "{requester}"
  purpose = "land_owner_identity"
  legal_basis = "Land Law 2024"
  fields = {fields}
  response_fields = {response_fields}
"""


def test_request_rule_loads(tmp_path: Path) -> None:
    """A request rule names its answerer and each requester's fields both ways."""
    policy = load_policy(_write(tmp_path, _request_rule()), REGISTRY)
    rule = policy.request_rule(IDENTITY)
    assert rule is not None
    assert rule.answerer == "police"
    assert rule.max_timeout_seconds == 30
    grant = rule.requester("land")
    assert grant is not None
    assert grant.response_fields == frozenset({"match"})
    assert rule.requester("health") is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"requester": "police"}, "the answerer cannot ask itself"),
        ({"requester": "tax"}, "unknown agencies"),
        ({"fields": '["religion"]'}, "unknown fields"),
        ({"response_fields": '["full_name"]'}, "unknown fields"),
        ({"request_type": REGISTERED}, "not a request type"),
    ],
)
def test_bad_request_rules_are_refused(
    tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    """Each mistake in a request rule stops the worker with a readable line."""
    with pytest.raises(ConfigError, match=message):
        load_policy(_write(tmp_path, _request_rule(**changes)), REGISTRY)


def test_a_request_type_cannot_have_an_event_route(tmp_path: Path) -> None:
    """Requests are routed by their answerer, never broadcast to recipients."""
    text = _policy_text().replace(REGISTERED, IDENTITY)
    with pytest.raises(ConfigError, match=r"give it a \[\[requests\]\] rule"):
        load_policy(_write(tmp_path, text), REGISTRY)
