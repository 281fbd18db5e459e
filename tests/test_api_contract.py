"""The API keeps to its own OpenAPI document, as a generated client would rely on it.

Schemathesis reads /api/openapi.json from a live server and, for every operation, sends
requests drawn from the document, valid and invalid, then checks each answer: no server
error, a documented status, a body and headers as documented, valid data accepted, invalid
data refused. The stateful test follows the document's links (create a conversation, send
a message, stream, stop, regenerate, edit, delete) with real ids. One owner (one cookie)
and a browser's same-origin headers serve the whole run, as they would serve the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Response
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import derive_operation_seed
from schemathesis.generation.case import Case
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)
from schemathesis.schemas import BaseSchema

from brook import create_app
from brook.api.openapi import OPERATIONS

from .conftest import LiveServer, app_env
from .fakemodel import FakeModelServer

pytestmark = pytest.mark.slow  # hundreds of requests: about 25 s

# Bounded for CI: about this many generated requests per operation, and stateful scenarios.
EXAMPLES = 30
SCENARIOS = 50


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def contract_site(request: pytest.FixtureRequest, fake_server: FakeModelServer,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server per database for the module (PostgreSQL refuses text SQLite takes):
    the stateful run needs what earlier requests created to still be there."""
    fake_server.ttft, fake_server.gap, fake_server.tokens = 0.0, 0.0, 8
    fake_server.reply, fake_server.api_key = "Hello from the fake model.", None
    path: Path = tmp_path_factory.mktemp("contract")
    database_url: str = (f"sqlite:///{path / 'brook.db'}" if request.param == "sqlite"
                         else request.getfixturevalue("postgres_schema"))
    app = create_app(app_env(fake_server, database_url, path))
    server = LiveServer(app)
    yield server
    server.stop()
    app.extensions["brook.chat"].close()
    app.extensions["brook.engine"].dispose()


@pytest.fixture(scope="module")
def owner(contract_site: LiveServer) -> Iterator[requests.Session]:
    """A browser's session: the owner cookie the page hands out, and the headers a
    same-origin fetch carries (the CSRF check reads Sec-Fetch-Site, else Origin)."""
    with requests.Session() as session:
        session.headers.update({"Origin": contract_site.url, "Sec-Fetch-Site": "same-origin"})
        assert session.get(contract_site.url + "/", timeout=10).ok
        assert session.cookies.get("brook_session")
        yield session


@pytest.fixture(scope="module")
def api_schema(contract_site: LiveServer) -> BaseSchema:
    config = SchemathesisConfig.from_dict({
        "base-url": contract_site.url,
        "generation": {"max-examples": EXAMPLES},
        # The document's own links, not links guessed from names: the scenarios stay ones
        # a client would run.
        "phases": {"stateful": {"inference": {"algorithms": []}}},
        "operations": [{
            # A well-formed offset past the end of the answer is refused with 400.
            "include-operation-id": "streamAnswer",
            "checks": {"positive_data_acceptance": {
                "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]}},
        }, {
            # A file that JSON Schema cannot fault may still be one Brook cannot import
            # (422): a ChatGPT conversation whose current_node is not in its mapping, or
            # none with a message to import, or a Brook export of no conversations.
            "include-operation-id": "importConversations",
            "checks": {"positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429", "5xx"]}},
        }],
    })
    return schemathesis.openapi.from_url(contract_site.url + "/api/openapi.json",
                                         config=config)


# Every operation of the document. Schemathesis's own `parametrize` needs the schema at
# import time, or a lazy fixture that pytest 9 no longer serves (it reads a node's private
# `_nodeid`), so the test is built here the way `parametrize` builds it.
OPERATION_IDS = sorted(op.id for op in OPERATIONS.values())


@pytest.mark.parametrize("operation_id", OPERATION_IDS)
def test_every_operation_keeps_to_the_document(api_schema: BaseSchema, owner: requests.Session,
                                               operation_id: str) -> None:
    """The document's examples, its boundaries (the coverage phase: each limit, each
    required part left out, each wrong type), then random requests, valid and invalid."""
    operation = api_schema.find_operation_by_id(operation_id)  # type: ignore[attr-defined]
    config = api_schema.config

    def check(case: Case[Any]) -> None:
        case.call_and_validate(session=owner, timeout=20)

    test = create_test(operation=operation, test_func=check, config=HypothesisTestConfig(
        project=config, modes=list(HypothesisTestMode),
        settings=settings(config.get_hypothesis_settings(operation=operation, phase="fuzzing"),
                          deadline=None, database=None,
                          suppress_health_check=list(HealthCheck)),
        seed=derive_operation_seed(config.seed, operation.label)))
    test()


def test_linked_operations_keep_to_the_document(api_schema: BaseSchema,
                                                owner: requests.Session) -> None:
    class Owner(api_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"session": owner, "timeout": 20}

        def after_call(self, response: Response, case: Case[Any]) -> None:
            super().after_call(response, case)
            # Let a started answer finish, as a reader would: each scenario's next step then
            # meets the same state however fast the answer was (Hypothesis replays
            # scenarios, and needs each to go the same way every time).
            if response.status_code == 202:
                stream = api_schema.get_base_url() + response.json()["stream_url"]
                assert owner.get(stream, timeout=20).status_code == 200

    Owner.run(settings=settings(max_examples=SCENARIOS, stateful_step_count=6, deadline=None,
                                suppress_health_check=list(HealthCheck)))
