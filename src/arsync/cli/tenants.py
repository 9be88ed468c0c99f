"""``arsync tenant`` and ``arsync environment``: tenants, environments and their API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from arsync.cli.common import JsonFlag, container, print_new_key
from arsync.db import transaction
from arsync.tenancy import service as tenancy

tenant_app = typer.Typer(add_completion=False, help="Tenants, environments and API keys.", no_args_is_help=True)
environment_app = typer.Typer(
    add_completion=False, help="A tenant's environments (prod, test, …).", no_args_is_help=True
)


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Tenant name, unique.")],
    environment: Annotated[str, typer.Option(help="First environment's name.")] = "prod",
    as_json: JsonFlag = False,
) -> None:
    """Create a tenant with one environment and print its ids and a new API key (shown once)."""
    with container() as c, transaction(c.session_factory) as session:
        created = tenancy.create_tenant(session, name, environment)
    payload = {"tenantId": created.tenant_id, "environmentId": created.environment_id, "apiKey": created.api_key}
    print_new_key(payload, as_json)


@environment_app.command("create")
def environment_create(
    tenant: Annotated[str, typer.Argument(help="Tenant id or name.")],
    name: Annotated[str, typer.Argument(help="The new environment's name, e.g. test.")],
    as_json: JsonFlag = False,
) -> None:
    """Add an environment to a tenant and print its id and a new API key for it (shown once)."""
    with container() as c, transaction(c.session_factory) as session:
        tenant_row = tenancy.resolve_tenant(session, tenant)
        environment = tenancy.create_environment(session, tenant_row.id, name)
        _, api_key = tenancy.issue_api_key(session, tenant_row.id, environment.id)
        payload = {"tenantId": tenant_row.id, "environmentId": environment.id, "name": environment.name,
                   "apiKey": api_key}  # fmt: skip
    print_new_key(payload, as_json)
