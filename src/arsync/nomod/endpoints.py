"""``/api/v1`` routes for the Nomod connection, payment links, invoice sync and the paid webhook."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from arsync.errors import NotFound
from arsync.ledger import service as ledger
from arsync.ledger.schemas import IntegrationsRead
from arsync.nomod import schemas, service
from arsync.nomod.repository import customer_integrations
from arsync.nomod.schemas import nomod_connection_read
from arsync.nomod.webhooks import list_deliveries
from arsync.schemas import Page
from arsync.tenancy.scope import Scope
from arsync.web.deps import ContainerDep, PagingDep, ScopeDep, SessionDep
from arsync.web.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)

NOMOD_ERRORS: dict[int | str, dict[str, Any]] = {
    502: {"description": "Nomod API error (code NOMOD_API_ERROR; details say whether it is transient)"},
}


@router.get("/connections/nomod", response_model=schemas.NomodConnectionRead, tags=["nomod"])
def get_nomod_connection(scope: ScopeDep, session: SessionDep, container: ContainerDep) -> schemas.NomodConnectionRead:
    """This environment's Nomod connection, with its masked key."""
    connection = service.connection(session, scope)
    if connection is None:
        raise NotFound("this environment has no Nomod connection")
    return nomod_connection_read(connection)


@router.put("/connections/nomod", response_model=schemas.NomodConnectionRead, tags=["nomod"])
def save_nomod_connection(
    body: schemas.NomodConnectionSave, scope: ScopeDep, container: ContainerDep
) -> schemas.NomodConnectionRead:
    """Create or update the Nomod connection. The key is stored encrypted and only ever shown masked."""
    connection = container.nomod.save_connection(
        scope,
        api_key=body.api_key,
        invoice_sync_outbound=body.invoice_sync.outbound,
        base_url=body.base_url,
        webhook_secret=body.webhook_secret,
        allow_service_fee=body.allow_service_fee,
    )
    return nomod_connection_read(connection)


@router.post(
    "/invoices/{invoice_id}/payment-link",
    response_model=schemas.PaymentLinkRead,
    tags=["nomod"],
    responses=NOMOD_ERRORS,
)
def payment_link(invoice_id: str, scope: ScopeDep, container: ContainerDep) -> schemas.PaymentLinkRead:
    """The URL to pay a FINALIZED invoice at.

    The customer is synced to Nomod first. If the invoice is in Nomod, this is the Nomod
    invoice's URL; otherwise a Nomod payment link for the outstanding amount is created once.
    The URL is stored on the invoice (``nomod.paymentUrl``). Customer-sync failures come back
    with their stable message and code (e.g. 422 NOMOD_INVALID_EMAIL).
    """
    link = container.nomod.payment_link(scope, invoice_id)
    return schemas.PaymentLinkRead(
        invoice_id=link.invoice_id,
        kind=link.kind,
        nomod_id=link.nomod_id,
        url=link.url,
        nomod_customer_id=link.nomod_customer_id,
    )


@router.delete(
    "/customers/{customer_id}/integrations/nomod", response_model=IntegrationsRead, tags=["nomod", "customers"]
)
def unlink_nomod_customer(customer_id: str, scope: ScopeDep, container: ContainerDep) -> IntegrationsRead:
    """Forget the customer's Nomod customer id (say, after it was deleted in Nomod).

    The next payment link or invoice sync creates a new Nomod customer. Invoices already in
    Nomod keep their links. 409 INVALID_STATE if the customer has no Nomod customer.
    """
    container.nomod.unlink_customer(scope, customer_id)
    with container.read_session_factory() as session:
        customer = ledger.get_customer(session, scope, customer_id)
        return IntegrationsRead(**customer_integrations(session, scope, customer))


@router.post("/invoices/{invoice_id}/nomod-sync", status_code=202, tags=["nomod"])
def retry_nomod_sync(invoice_id: str, scope: ScopeDep, session: SessionDep, container: ContainerDep) -> dict[str, str]:
    """Queue a finalized invoice's Nomod sync again, after its cause was fixed (e.g. the customer's email)."""
    state = container.nomod.retry_invoice_sync(session, scope, invoice_id)
    return {"invoiceId": invoice_id, "status": state.status}


@router.post(
    "/webhooks/nomod/{tenant_id}/{environment_id}",
    response_model=schemas.WebhookResult,
    tags=["nomod"],
    responses=NOMOD_ERRORS,
)
async def nomod_webhook(
    tenant_id: str, environment_id: str, request: Request, container: ContainerDep
) -> schemas.WebhookResult:
    """Nomod's paid webhook. No API key: the Svix signature (5-minute tolerance) authenticates it.

    Any body shape is accepted once its signature verifies: the charge id is read from ``data.id``
    or ``id``, and the charge is read back from Nomod. A paid charge is recorded once per charge
    id as an approved cash application, which records the payment and pushes it to the ERP. A
    redelivery answers ``duplicate`` and changes nothing. Every delivery goes to the delivery
    log (``GET /api/v1/webhooks/nomod/deliveries``); one that cannot be routed answers 200 with
    ``needs_attention`` there. When Nomod cannot be asked about the charge, 502 asks Nomod to
    deliver again.
    """
    body = await request.body()
    outcome = await run_in_threadpool(
        container.nomod_webhooks.handle, Scope(tenant_id, environment_id), dict(request.headers), body
    )
    return schemas.WebhookResult(**outcome.as_dict())


DeliveryOutcome = Literal["recorded", "duplicate", "needs_attention", "ignored", "rejected", "failed"]


@router.get("/webhooks/nomod/deliveries", response_model=Page[schemas.WebhookDeliveryRead], tags=["nomod"])
def nomod_webhook_deliveries(
    scope: ScopeDep,
    session: SessionDep,
    paging: PagingDep,
    outcome: Annotated[DeliveryOutcome | None, Query(description="Only deliveries with this outcome")] = None,
) -> Page[schemas.WebhookDeliveryRead]:
    """The Nomod webhook delivery log, newest first: each delivery, whether its signature verified,
    its charge, and what arsync made of it. ``needs_attention`` ones were paid but not applied."""
    rows = list_deliveries(session, scope, outcome=outcome, offset=paging.offset, limit=paging.limit)
    return Page(
        items=[schemas.webhook_delivery_read(row) for row in rows[: paging.limit]],
        page=paging.page,
        limit=paging.limit,
        has_more=len(rows) > paging.limit,
    )
