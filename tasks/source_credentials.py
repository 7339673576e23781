"""A source's credentials from Prefect blocks: a bucket's as fsspec options (`source.credentials_block`),
a database's password (`sql.password_block`, a Secret).

The block is read inside the task that lists the source, and its values live only in memory for
that run: they are no flow or task parameter, and reach no log, result, artifact or ledger row. The
config names the block, never a key. Understood: prefect-aws's `AwsCredentials` (keys, a profile or
an assumed role, resolved through boto3 as its own S3 blocks do; region and endpoint from the
block) and `MinIOCredentials` (any S3-compatible store), and a `Secret` whose value is a JSON object of fsspec options, for any store
(`{"token": {...service account...}}` for gs://, `{"connection_string": "..."}` for az://).
"""

from __future__ import annotations

import json
from typing import Any

from indexops.ingest.storage import SourceCredentials, is_remote, is_sql_url
from indexops.settings import Settings


class SourceCredentialsError(RuntimeError):
    """The credentials block is missing or cannot give credentials; the message names it, not its values."""


def source_credentials(settings: Settings, path: str) -> SourceCredentials | None:
    """What the configured blocks give the source at `path`: filesystem options from
    `source.credentials_block` for a bucket, the password in the Secret `sql.password_block` names
    for a database; None when no block applies (the environment's credentials are used)."""
    if is_sql_url(path) and settings.sql.password_block:
        return SourceCredentials(password=_sql_password(settings.sql.password_block))
    options = remote_storage_options(settings, path)
    return SourceCredentials(storage_options=options) if options else None


def _sql_password(name: str) -> str:
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()
    except ValueError as e:
        raise SourceCredentialsError(f"Prefect Secret block {name!r} (sql.password_block) could not be loaded: {type(e).__name__}. "
                                     "Create it (`prefect block create secret`) or unset the setting") from None
    if not isinstance(value, str) or not value:
        raise SourceCredentialsError(f"the Secret block {name!r} (sql.password_block) must hold the password as a string")
    return value


def remote_storage_options(settings: Settings, path: str) -> dict[str, Any]:
    """The filesystem options `source.credentials_block` gives a remote `path`; {} when no block is
    set or the path is not a remote URL."""
    slug = settings.source.credentials_block
    if not slug or not is_remote(path):
        return {}
    from prefect.blocks.core import Block

    try:
        block = Block.load(slug)
    except (ValueError, KeyError) as e:
        raise SourceCredentialsError(
            f"Prefect block {slug!r} (source.credentials_block) could not be loaded: {type(e).__name__}. Create it "
            "(`prefect block create aws-credentials`, or a Secret holding a JSON object of fsspec options) or unset the setting"
        ) from None
    return block_storage_options(block, slug)


def block_storage_options(block: Any, slug: str) -> dict[str, Any]:
    """fsspec options from a loaded block (see the module docstring for the kinds understood)."""
    kind = block.get_block_type_slug()
    if kind == "aws-credentials":
        return _aws_options(block, slug)
    if kind == "minio-credentials":  # prefect-aws's block for S3-compatible stores
        opts = {"key": block.minio_root_user, "secret": block.minio_root_password.get_secret_value()}
        return {**opts, **_client_options(block)}
    if kind == "secret":
        return _secret_options(block, slug)
    raise SourceCredentialsError(f"source.credentials_block {slug!r} is a {kind} block: use an aws-credentials or "
                                 "minio-credentials block, or a secret block whose value is a JSON object of fsspec options")


def _aws_options(block: Any, slug: str) -> dict[str, Any]:
    """s3fs options from an `AwsCredentials` block: the credentials its boto3 session resolves (static
    keys, a profile, an assumed role), its region and its client parameters' endpoint and TLS check."""
    session = block.get_boto3_session()
    resolved = session.get_credentials()
    if resolved is None:
        raise SourceCredentialsError(f"the aws-credentials block {slug!r} resolves to no credentials (no keys, profile or role)")
    frozen = resolved.get_frozen_credentials()
    opts: dict[str, Any] = {"key": frozen.access_key, "secret": frozen.secret_key}
    if frozen.token:
        opts["token"] = frozen.token
    return {**opts, **_client_options(block, session.region_name)}


def _client_options(block: Any, default_region: str | None = None) -> dict[str, Any]:
    """A prefect-aws block's region and client parameters (endpoint, TLS, botocore config) as s3fs options."""
    opts: dict[str, Any] = {}
    client_kwargs: dict[str, Any] = {}
    region = block.region_name or default_region
    if region:
        client_kwargs["region_name"] = region
    params = block.aws_client_parameters
    if params.endpoint_url:
        opts["endpoint_url"] = params.endpoint_url
    if params.use_ssl is False:
        opts["use_ssl"] = False
    if params.config:  # botocore Config: addressing style, retries, signature version
        opts["config_kwargs"] = dict(params.config)
    if params.api_version:
        client_kwargs["api_version"] = params.api_version
    verify = params.verify_cert_path or params.verify  # as prefect-aws reads them: a CA bundle path wins
    if verify is False:
        client_kwargs["verify"] = False
    elif verify not in (None, True):
        client_kwargs["verify"] = str(verify)
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    return opts


def _secret_options(block: Any, slug: str) -> dict[str, Any]:
    value = block.get()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict) or not value:
        raise SourceCredentialsError(f"the secret block {slug!r} must hold a non-empty JSON object of fsspec options "
                                     '(e.g. {"key": ..., "secret": ...} for s3://)')
    return value
