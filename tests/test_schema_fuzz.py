"""Fuzz the example project's API against its own OpenAPI schema with schemathesis.

A real server on a loopback port, seeded with the demo realm; every operation of the schema
gets a bounded number of generated requests, as alice. Only the checks the schema can promise
run: no 5xx, a documented status code, the documented content type and a body that matches the
documented schema. (Zulip's API answers most well-formed requests with a 400, e.g. an unknown
user id, so "valid input is accepted" is not one of them.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from loopback.auth import basic_auth
from loopback.example import ExampleServer, manage, seeded_example_db
from loopback.server import free_port

from .e2e_server import SQLITE_RUN_ONLY
from .test_schema import OPERATIONS

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.fuzz,
    SQLITE_RUN_ONLY,
]

EXAMPLES_PER_OPERATION = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
REQUEST_TIMEOUT = 10  # seconds


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ExampleServer, str]]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    db_path = seeded_example_db(directory, f"http://127.0.0.1:{port}")
    api_key = manage(db_path, "presence_api_key", "alice@example.com").strip()
    # A rate limit high enough that generated requests reach the views rather than a 429.
    example = ExampleServer(
        db_path,
        port,
        directory / "server.log",
        EXAMPLE_PRESENCE_API_RATE="100000/min",
    )
    yield example, basic_auth("alice@example.com", api_key)
    example.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: tuple[ExampleServer, str]) -> Any:
    server, _authorization = fuzzed_server
    return schemathesis.openapi.from_url(f"{server.url}/api/schema/?format=json")


# Hypothesis driven directly: schemathesis's own pytest loader does not run under pytest 9.
@pytest.mark.parametrize(
    ("path", "method"),
    [(path, method) for path, methods in OPERATIONS.items() for method in methods],
)
def test_api_conforms_to_its_schema(
    api_schema: Any, fuzzed_server: tuple[ExampleServer, str], path: str, method: str
) -> None:
    server, authorization = fuzzed_server
    operation = api_schema[path][method.upper()]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        # Bounded: no shrinking of a failing example, which could take many more requests.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def call(case: Any) -> None:
        case.call_and_validate(
            base_url=server.url,
            headers={"Authorization": authorization},
            checks=CHECKS,
            timeout=REQUEST_TIMEOUT,
        )

    call()
