"""The Lambda authorizer of the peer formats' routes (OpenMeter, Lago, Segment): the API key in
``Authorization`` (Bearer, or Basic with the key as user name) to its API key id, which the ingest
handler reads as the caller (``billing.runtime.peers``). An unknown or missing key raises
``Unauthorized``: API Gateway answers 401 and the request never reaches ingest."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.runtime import container
from billing.runtime.observability import logger


@event_source(data_class=APIGatewayAuthorizerRequestEvent)
@logger.inject_lambda_context(clear_state=True)
def handler(event: APIGatewayAuthorizerRequestEvent, context: LambdaContext) -> dict:
    from billing.tenants.credentials import presented_key

    arn = event.parsed_arn
    key = presented_key(event.get_header_value("authorization", case_sensitive=False))
    directory = container.api_key_directory()
    key_id = directory.key_id(key, api_id=arn.api_id, stage=arn.stage) if key else None
    if key_id is None:
        logger.info("peer credentials refused", extra={"presented": key is not None})
        raise Exception(
            "Unauthorized"
        )  # API Gateway's own 401 (the only way to get it from a Lambda authorizer)
    # One policy for every peer route: API Gateway caches it per Authorization header.
    policy = APIGatewayAuthorizerResponse(
        principal_id=key_id,
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context={"apiKeyId": key_id},
        partition=arn.partition,
    )
    policy.allow_all_routes()
    return policy.asdict()
