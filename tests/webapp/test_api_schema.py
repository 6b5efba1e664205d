"""The API against its own OpenAPI schema, with schemathesis (property-based).

Every operation gets generated requests, valid and invalid; each response must be no 5xx,
have a status code the schema documents, and match the documented body and content type.
A superuser's token reaches every operation; the examples are few, to stay under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.webapp.conftest import api_token as knox_token
from tests.webapp.factories import UserFactory

EXAMPLES = 6
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture
def api_token(db, demo_folder) -> str:
    from webapp.catalog.bulk import catalogue_import
    from webapp.catalog.importing import read_catalogue_csv

    # A little real data, so that lists have rows and some ids exist.
    catalogue_import(rows=list(read_catalogue_csv(demo_folder / "catalogue.csv"))[:2],
                     image_root=demo_folder)
    user = UserFactory(username="schema", superuser=True)
    return knox_token(user)


@pytest.fixture
def api_schema(api_token: str) -> Iterator[object]:
    # As django.test.Client does: the WSGI handler must not close the test's connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi(
            "/api/v1/schema?format=json", get_wsgi_application(),
            headers={"Authorization": f"Token {api_token}"},
        )
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# Driven from one test rather than schemathesis' pytest plugin (its lazy fixture loading does
# not run under pytest 9), which also keeps every operation inside the test's transaction.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_the_schema(api_schema, api_token, mode) -> None:
    headers = {"Authorization": f"Token {api_token}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    tested = 0
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            call()
            tested += 1
        except Unsatisfiable:
            # No invalid request exists for it (e.g. a GET without parameters): nothing to test.
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert tested >= len(operations) // 2, tested


def test_the_schema_documents_errors_and_unique_components(api_token) -> None:
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Token {api_token}")
    document = client.get("/api/v1/schema?format=json").json()
    paths = document["paths"]
    assert {"/api/v1/categories", "/api/v1/brands", "/api/v1/series", "/api/v1/skus/{sku_id}",
            "/api/v1/skus/create", "/api/v1/skus/{sku_id}/images", "/api/v1/index"} <= set(paths)
    decision = paths["/api/v1/matches/{match_id}/decision"]["post"]
    body = decision["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/MatchDecisionRequest")  # not the photo upload's component
    for path in paths.values():
        for operation in path.values():
            assert "403" in operation["responses"], operation["operationId"]
    assert document["components"]["schemas"]["Error"]["properties"]["error"]
