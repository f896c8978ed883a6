"""Property-based tests of the API against its own OpenAPI document (schemathesis): no
5xx for any input the schema allows or forbids, and every response matches the schema.

Every check runs but ``positive_data_acceptance``: a few business rules (a grant expires
after it takes effect, a usage already refunded has nothing left to refund, a feature
prices only its own units) refuse with 422 input that a JSON Schema cannot tell apart.
Input the schema forbids must still be refused (``negative_data_rejection``). The Stripe
webhook takes no API key: whatever is generated for it carries no valid signature, so it
must be 400 ``invalid_signature``, never a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import BaseSchema, checks
from schemathesis.core.result import Ok

from creditmeter import CreditMeter
from creditmeter.api.app import create_app
from creditmeter.api.config import ServerSettings
from tests.api.conftest import ADMIN_KEY

AUTHORIZATION = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def api_schema(meter: CreditMeter) -> BaseSchema:
    """The app's schema over a database with a little of everything in it."""
    meter.put_feature("chat", rates={"tokens": 1}, pool="ai")
    meter.put_plan("pro", allowances={"*": 20_000})
    meter.create_account("acme", plan="pro")
    meter.charge("acme", "chat", usage={"tokens": 10})
    meter.authorize("acme", "chat", credits=5)
    meter.put_package("starter", credits=1_000, price=999, currency="usd")
    meter.checkout("acme", "starter", ui_mode="elements")
    # No rate limits: the test's clock stands still, and the requests with a wrong key
    # that check each operation's 401 would empty the client address's bucket.
    settings = ServerSettings(admin_key=SecretStr(ADMIN_KEY), rate_limits=False)
    app = create_app(settings, meter=meter)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_the_api_keeps_its_schema(api_schema: BaseSchema) -> None:
    """Every operation, with generated valid and invalid input, as the superadmin: the
    answer is never a 5xx and always matches the operation's documented responses."""
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the loader could not read
        operations.append(result.ok())
    assert len(operations) >= 10  # the whole API, not an empty schema

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        def conforms(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(
                headers=AUTHORIZATION, excluded_checks=[checks.positive_data_acceptance]
            )

        conforms()
