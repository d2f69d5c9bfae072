"""`achievements`: the operator's and the demo's command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from services.core.db import migrate
from services.core.events import Topics
from services.core.kafka import ensure_topics
from services.core.settings import CommonSettings, SchemeLimits, load_settings
from services.upload_gateway.keys import NewKey, create_ato, create_key, revoke_key


async def _with_connection(
    action: Callable[[asyncpg.Connection], Awaitable[int]],
) -> int:
    settings = load_settings(CommonSettings, "achievements")
    connection = await asyncpg.connect(settings.postgres.database_url.get_secret_value())
    try:
        return await action(connection)
    finally:
        await connection.close()


async def _migrate(_: argparse.Namespace) -> int:
    async def run(connection: asyncpg.Connection) -> int:
        applied = await migrate(connection)
        print(f"migrations applied: {len(applied)}")
        return 0

    return await _with_connection(run)


async def _topics(_: argparse.Namespace) -> int:
    settings = load_settings(CommonSettings, "achievements")
    await ensure_topics(settings.kafka, Topics(settings.kafka.topic_prefix))
    print("topics ready")
    return 0


async def _reference_load(args: argparse.Namespace) -> int:
    from services.core.reference_store import load_into_database

    async def run(connection: asyncpg.Connection) -> int:
        version = await load_into_database(connection, Path(args.dir) if args.dir else None)
        print(f"reference data loaded (version {version})")
        return 0

    return await _with_connection(run)


def _print_new_key(key: NewKey, as_json: bool, created: str) -> None:
    if as_json:
        print(json.dumps({"ato_id": key.ato_id, "api_key": key.api_key, "key_id": str(key.key_id)}))
    else:
        print(f"{created}; API key {key.key_id} (shown once): {key.api_key}")


async def _ato_create(args: argparse.Namespace) -> int:
    async def run(connection: asyncpg.Connection) -> int:
        key = await create_ato(connection, args.name, args.policy)
        _print_new_key(key, args.json, f"ATO {key.ato_id} created")
        return 0

    return await _with_connection(run)


async def _key_create(args: argparse.Namespace) -> int:
    async def run(connection: asyncpg.Connection) -> int:
        key = await create_key(connection, args.ato_id)
        _print_new_key(key, args.json, f"new key for {key.ato_id}")
        return 0

    return await _with_connection(run)


async def _key_revoke(args: argparse.Namespace) -> int:
    async def run(connection: asyncpg.Connection) -> int:
        revoked = await revoke_key(connection, uuid.UUID(args.key_id))
        print("revoked" if revoked else "no such active key")
        return 0 if revoked else 1

    return await _with_connection(run)


API_KEY_VARIABLE = "ACHIEVEMENTS_API_KEY"


class MissingApiKey(Exception):
    pass


def read_api_key() -> str:
    """The ATO API key: from ACHIEVEMENTS_API_KEY, else asked for (not echoed) on a terminal.

    Never an argument: a command line is visible to every user of the machine and kept in shell
    history.
    """
    api_key = os.environ.get(API_KEY_VARIABLE, "").strip()
    if not api_key and sys.stdin.isatty():
        api_key = getpass.getpass("ATO API key: ").strip()
    if not api_key:
        raise MissingApiKey(f"no API key: set {API_KEY_VARIABLE} (or run it on a terminal)")
    return api_key


async def _upload(args: argparse.Namespace) -> int:
    from services.upload_client import upload_file

    result = await upload_file(
        Path(args.file),
        api_key=args.api_key,
        gateway_url=args.gateway,
        policy=args.policy,
        wait=args.wait,
        timeout_s=args.timeout,
    )
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name}: {value}")
    return 0


def _check(argv: list[str]) -> int:
    from services.validator.offline_check import main as check_main

    # The same `SCHEME_*` limits as the gateway and the validator.
    return check_main(argv, SchemeLimits())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="achievements")
    commands = parser.add_subparsers(dest="command", required=True)

    admin = commands.add_parser("admin", help="set up the database and topics").add_subparsers(
        dest="admin_command", required=True
    )
    admin.add_parser("migrate").set_defaults(action=_migrate)
    admin.add_parser("topics").set_defaults(action=_topics)

    reference = commands.add_parser("reference", help="reference data").add_subparsers(
        dest="reference_command", required=True
    )
    load = reference.add_parser("load", help="load courses.csv and employers.csv from DIR")
    load.add_argument("dir", nargs="?", help="folder with the two CSVs (default: bundled copy)")
    load.set_defaults(action=_reference_load)

    ato = commands.add_parser("ato", help="training organisations and API keys").add_subparsers(
        dest="ato_command", required=True
    )
    create = ato.add_parser("create")
    create.add_argument("name")
    create.add_argument(
        "--policy", default="all_or_nothing", choices=["all_or_nothing", "valid_rows"]
    )
    create.add_argument("--json", action="store_true")
    create.set_defaults(action=_ato_create)
    key = ato.add_parser("key").add_subparsers(dest="key_command", required=True)
    key_create = key.add_parser("create")
    key_create.add_argument("ato_id")
    key_create.add_argument("--json", action="store_true")
    key_create.set_defaults(action=_key_create)
    key_revoke = key.add_parser("revoke")
    key_revoke.add_argument("key_id")
    key_revoke.set_defaults(action=_key_revoke)

    upload = commands.add_parser("upload", help="upload a CSV through the gateway")
    upload.add_argument("file")
    # Removed: the key is read from ACHIEVEMENTS_API_KEY or asked for. Still parsed (hidden) only
    # to explain that, rather than argparse's bare "unrecognized arguments".
    upload.add_argument("--api-key", dest="removed_api_key", help=argparse.SUPPRESS)
    upload.add_argument("--gateway", default="http://127.0.0.1:8080")
    upload.add_argument("--policy", choices=["all_or_nothing", "valid_rows"])
    upload.add_argument("--wait", action="store_true", help="wait for the final status")
    upload.add_argument("--timeout", type=float, default=600.0)
    upload.add_argument("--json", action="store_true")
    upload.set_defaults(action=_upload)

    commands.add_parser("check", help="validate a file offline (see `achievements check -h`)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The offline check owns its own argument parsing (section 7 of the scheme).
    if argv[:1] == ["check"]:
        return _check(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "upload":
        if args.removed_api_key is not None:
            parser.error(f"--api-key was removed: set {API_KEY_VARIABLE} instead (or be asked)")
        try:
            args.api_key = read_api_key()
        except MissingApiKey as missing:
            parser.error(str(missing))
    result: int = asyncio.run(args.action(args))
    return result


if __name__ == "__main__":
    sys.exit(main())
