"""POST /v1/webhooks/stripe: Stripe events drive invoice payment state and dunning (no API key;
the Stripe-Signature header, checked against the raw body, is the authentication)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.kernel.errors import BillingError
from billing.kernel.request_body import raw_body
from billing.runtime import container
from billing.runtime.http import install_error_handlers, json_response
from billing.runtime.observability import logger, metrics, tracer

app = APIGatewayRestResolver()
install_error_handlers(app)


@app.post("/v1/webhooks/stripe")
@tracer.capture_method
def stripe_webhook() -> Response:
    request = app.current_event
    try:
        result = container.webhook_processor().handle(
            raw_body(request.raw_event), request.headers.get("stripe-signature")
        )
    except BillingError as error:
        metrics.add_metric(name="WebhookRefused", unit=MetricUnit.Count, value=1)
        logger.warning("stripe webhook refused", extra={"code": error.code, "reason": error.message})
        raise
    logger.info(
        "stripe webhook",
        extra={
            "stripe_event_id": result.event_id,
            "status": result.status,
            **{k: v for k, v in result.detail.items() if k != "reason"},
        },
    )
    metrics.add_metric(name=f"Webhook{result.status.title()}", unit=MetricUnit.Count, value=1)
    return json_response(200, result.body())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
