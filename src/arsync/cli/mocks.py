"""``arsync mock-erp``, ``mock-xero`` and ``mock-nomod``: the mocks as servers of their own."""

from __future__ import annotations

import socket
from typing import Annotated

import typer
import uvicorn

from arsync.cli.common import err_console
from arsync.mocks.erp import BREAKAGES, MockErpState, create_mock_erp_app
from arsync.mocks.erp_data import MockErpData
from arsync.mocks.nomod import MockNomodState, create_mock_nomod_app
from arsync.mocks.xero import MockXeroState, create_mock_xero_app, mock_xero_settings

mock_erp_app = typer.Typer(add_completion=False)
mock_xero_app = typer.Typer(add_completion=False)
mock_nomod_app = typer.Typer(add_completion=False)


@mock_erp_app.command("mock-erp")
def mock_erp(
    host: Annotated[str, typer.Option(help="Interface to bind; keep it on loopback.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 8700,
    debtors: Annotated[int, typer.Option(min=0)] = 50,
    invoices: Annotated[int, typer.Option(min=0)] = 200,
    payments: Annotated[int, typer.Option(min=0)] = 150,
    seed: int = 1,
    token: Annotated[str | None, typer.Option(help="Accept only this Bearer token (default: any ask_… key).")] = None,
    breakage: Annotated[
        list[str] | None,
        typer.Option("--break", help=f"Break the mock on purpose (repeatable): {', '.join(BREAKAGES)}."),
    ] = None,
) -> None:
    """Run the reference middleware (mock ERP) until interrupted."""
    unknown = set(breakage or []) - BREAKAGES.keys()
    if unknown:
        err_console.print(f"error: unknown --break {sorted(unknown)}; choose from: " +
                          "; ".join(f"{k} ({v})" for k, v in BREAKAGES.items()))  # fmt: skip
        raise typer.Exit(2)
    state = MockErpState(MockErpData(debtors, invoices, payments, seed), token=token,
                         breakages=frozenset(breakage or []))  # fmt: skip
    # Bound here, so that the address printed is the real one even with --port 0, and listening
    # before it is printed, so a client that connects at once waits in the backlog instead of
    # being refused while the server starts.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    err_console.print(
        f"mock ERP: {debtors:,} debtors, {invoices:,} invoices, {payments:,} payments (seed {seed}) "
        f"on http://{host}:{sock.getsockname()[1]}"
    )
    config = uvicorn.Config(create_mock_erp_app(state), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


@mock_xero_app.command("mock-xero")
def mock_xero(
    host: Annotated[str, typer.Option(help="Interface to bind; keep it on loopback.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8720,
    organisation: Annotated[
        list[str] | None, typer.Option("--organisation", help="Organisation name (repeatable).")
    ] = None,
    contacts: Annotated[int, typer.Option(min=0)] = 20,
    invoices: Annotated[int, typer.Option(min=0)] = 60,
    payments: Annotated[int, typer.Option(min=0)] = 30,
) -> None:
    """Run a mock of Xero's identity service and Accounting API until interrupted."""
    state = MockXeroState()
    for seed, name in enumerate(organisation or ["Demo Company (NZ)"], start=1):
        state.add_organisation(name, contacts, invoices, payments, seed=seed)
    base = f"http://{host}:{port}"
    err_console.print(f"mock Xero on {base}; point arsync at it with:")
    for name, value in mock_xero_settings(base, state.config).items():
        err_console.print(f"  export {name}={value}", soft_wrap=True)
    uvicorn.run(create_mock_xero_app(state), host=host, port=port, log_level="warning", access_log=False)


@mock_nomod_app.command("mock-nomod")
def mock_nomod(
    host: Annotated[str, typer.Option(help="Interface to bind; keep it on loopback.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8710,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Accept only this X-API-KEY (default: any sk_test_… key).")
    ] = None,
) -> None:
    """Run the mock Nomod API until interrupted (POST /_mock/pay pays an invoice or link)."""
    state = MockNomodState(api_key=api_key, base_url=f"http://{host}:{port}")
    err_console.print(f"mock Nomod on http://{host}:{port}")
    uvicorn.run(create_mock_nomod_app(state), host=host, port=port, log_level="warning", access_log=False)
