"""``retention serve``, ``retention apikey create|list|revoke`` and ``retention openapi``."""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from retention import workflows
from retention.exceptions import ConfigError
from retention.serving.cli._app import DbOption, app, console, err_console, open_store, resolve_db

__all__ = ["apikey_app", "openapi_command", "serve_command"]

apikey_app = typer.Typer(
    help="API keys of `retention serve`: create (shown once), list, revoke.",
    no_args_is_help=True,
)
app.add_typer(apikey_app, name="apikey")


@apikey_app.command("create")
def apikey_create(
    db: DbOption = None,
    scope: Annotated[
        str,
        typer.Option(
            "--scope", help="read (lookups, stats), write (also events and jobs), admin (keys)."
        ),
    ] = "read",
    name: Annotated[
        str | None, typer.Option("--name", help="A label: who or what uses the key.")
    ] = None,
) -> None:
    """Create an API key; it is printed once (the store keeps only a salted hash)."""
    request = workflows.ApiKeyRequest(scope=scope, name=name)
    with open_store(db, read_only=False) as store:
        new = workflows.create_api_key(store, request)
    err_console.print(
        f"created API key {new.info.key_id} (scope {new.info.scope}): copy it now, it is not "
        "shown again",
        highlight=False,
        soft_wrap=True,
    )
    typer.echo(new.key)


@apikey_app.command("list")
def apikey_list(db: DbOption = None) -> None:
    """List the keys (never their secrets)."""
    with open_store(db, read_only=True) as store:
        keys = workflows.list_api_keys(store)
    table = Table(title=f"API keys of {resolve_db(db)}", title_justify="left")
    for col in ("id", "name", "scope", "status", "created", "last used"):
        table.add_column(col)
    for k in keys:
        table.add_row(
            k.key_id,
            k.name or "",
            k.scope,
            "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d %H:%M}",
            f"{k.created_at:%Y-%m-%d %H:%M}",
            "-" if k.last_used_at is None else f"{k.last_used_at:%Y-%m-%d %H:%M}",
        )
    if not keys:
        table.add_row("(none)", "", "", "", "", "")
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (12 hex digits), or the key.")],
    db: DbOption = None,
) -> None:
    """Revoke a key: requests with it get 401 from the next start of the service on."""
    with open_store(db, read_only=False) as store:
        info = workflows.revoke_api_key(store, key_id)
    console.print(f"revoked API key {info.key_id} (scope {info.scope})", highlight=False)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@app.command("serve")
def serve_command(
    db: DbOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Serve the REST API and the dashboard over the store (every request needs an API key)."""
    import uvicorn

    from retention.serving.api import ApiSettings, create_app

    if not 0 < port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535; got {port}.")
    level = log_level.strip().lower()
    if level not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"--log-level must be debug, info, warning or error; got {log_level!r}.")
    path = resolve_db(db)
    with open_store(path, read_only=True) as store:
        active = [k for k in workflows.list_api_keys(store) if k.active]
    if not active:
        raise ConfigError(
            f"The store {path} has no active API key, so no request could be answered: create "
            f"one first with `retention apikey create --db {path} --scope admin`."
        )
    settings = ApiSettings(db=path)
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not _loopback(host):
        err_console.print(
            f"warning: listening on {host}, beyond this machine: put a TLS proxy "
            "in front, since API keys travel in the requests.",
            highlight=False,
            soft_wrap=True,
        )
    shown = f"[{host}]" if ":" in host else host
    err_console.print(
        f"retention serve: dashboard http://{shown}:{port}/dashboard, API spec "
        f"http://{shown}:{port}/openapi.json; {len(active)} active API key(s) in {path}",
        highlight=False,
        soft_wrap=True,
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=level,
        access_log=False,  # the service logs each request itself, without path values
        server_header=False,
    )


@app.command("openapi")
def openapi_command(
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the spec here (default: print it).")
    ] = None,
) -> None:
    """Print (or write) the OpenAPI spec of `retention serve` (docs/openapi.json)."""
    import json

    from retention.serving.api import openapi_spec, write_openapi

    if out is None:
        typer.echo(json.dumps(openapi_spec(), indent=2, sort_keys=True))
        return
    console.print(f"openapi: {write_openapi(out)}", highlight=False, soft_wrap=True)
