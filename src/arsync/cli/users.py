"""``arsync user``: people who sign in to the web UI."""

from __future__ import annotations

from typing import Annotated

import typer

from arsync.accounts import service as accounts
from arsync.cli.common import JsonFlag, console, container, print_json, secret_from_env
from arsync.db import transaction
from arsync.tenancy import service as tenancy

user_app = typer.Typer(add_completion=False, help="People who sign in to the web UI.", no_args_is_help=True)


def _new_password(password_env: str | None) -> str:
    if password_env:
        return secret_from_env(password_env, "the password")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Argument(help="The email the user signs in with; unique.")],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id or name.")],
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Read the password from this environment variable.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a UI user in a tenant. The password is asked for, or read from --password-env."""
    password = _new_password(password_env)
    with container() as c, transaction(c.session_factory) as session:
        tenant_row = tenancy.resolve_tenant(session, tenant)
        user = accounts.create_user(session, tenant_row.id, email, password)
        payload = {"userId": user.id, "email": user.email, "tenantId": tenant_row.id}
    if as_json:
        print_json(payload)
        return
    console.print(f"user {payload['email']} ({payload['userId']}) can now sign in to tenant {tenant_row.name}")


@user_app.command("set-password")
def user_set_password(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Read the password from this environment variable.")
    ] = None,
) -> None:
    """Give a UI user a new password; their open sessions are signed out."""
    password = _new_password(password_env)
    with container() as c, transaction(c.session_factory) as session:
        user = accounts.set_password(session, email, password)
        console.print(f"new password set for {user.email}; their sessions were signed out")
