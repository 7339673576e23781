"""`source.credentials_block`: what a Prefect block gives the filesystem (tasks/source_credentials.py).
Blocks are built in memory here; tests/integration/test_object_storage.py loads one from a server."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from indexops.settings import load_settings
from tasks.source_credentials import SourceCredentialsError, block_storage_options, remote_storage_options, source_credentials

pytestmark = pytest.mark.unit


@pytest.fixture
def no_aws_env(monkeypatch, tmp_path):
    """No credentials but the block's: none in the environment, no shared files, no instance metadata."""
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def test_aws_credentials_keys_region_and_endpoint_become_s3fs_options(no_aws_env):
    from prefect_aws import AwsCredentials

    block = AwsCredentials(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="s3cr3t", aws_session_token="tok",
                           region_name="eu-west-1", aws_client_parameters={"endpoint_url": "http://127.0.0.1:9000", "verify": False})
    assert block_storage_options(block, "aws-credentials/exports") == {
        "key": "AKIAEXAMPLE", "secret": "s3cr3t", "token": "tok", "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1", "verify": False}}


def test_aws_client_parameters_tls_bundle_botocore_config_and_plain_http(no_aws_env):
    from prefect_aws import AwsCredentials

    ca = no_aws_env / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    block = AwsCredentials(aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="s3cr3t", aws_client_parameters={
        "verify": ca, "use_ssl": False, "api_version": "2006-03-01", "config": {"s3": {"addressing_style": "path"}}})
    assert block_storage_options(block, "aws-credentials/ceph") == {
        "key": "AKIAEXAMPLE", "secret": "s3cr3t", "use_ssl": False, "config_kwargs": {"s3": {"addressing_style": "path"}},
        "client_kwargs": {"api_version": "2006-03-01", "verify": str(ca)}}


def test_aws_credentials_naming_a_profile_resolve_through_boto3(no_aws_env):
    from prefect_aws import AwsCredentials

    (no_aws_env / "no-credentials").write_text("[team]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = from-file\n")
    (no_aws_env / "no-config").write_text("[profile team]\nregion = ap-south-1\n")
    opts = block_storage_options(AwsCredentials(profile_name="team"), "aws-credentials/team")
    assert opts == {"key": "AKIAPROFILE", "secret": "from-file", "client_kwargs": {"region_name": "ap-south-1"}}


def test_aws_credentials_without_any_credentials_is_a_clear_error(no_aws_env):
    from prefect_aws import AwsCredentials

    with pytest.raises(SourceCredentialsError, match="aws-credentials/empty.*resolves to no credentials"):
        block_storage_options(AwsCredentials(), "aws-credentials/empty")


def test_a_secret_holding_a_json_object_is_taken_as_fsspec_options_for_any_store():
    from prefect.blocks.system import Secret

    gcs = {"token": {"type": "service_account", "private_key": "-----BEGIN..."}, "project": "kb"}
    assert block_storage_options(Secret(value=json.dumps(gcs)), "secret/gcs") == gcs
    assert block_storage_options(Secret(value={"connection_string": "AccountKey=abc"}), "secret/az") == {"connection_string": "AccountKey=abc"}
    with pytest.raises(SourceCredentialsError, match="secret/empty.*non-empty JSON object"):
        block_storage_options(Secret(value={}), "secret/empty")  # not a silent fall-back to the environment
    with pytest.raises(SourceCredentialsError, match="secret/plain.*JSON object") as e:
        block_storage_options(Secret(value="just-a-password"), "secret/plain")
    assert "just-a-password" not in str(e.value)


def test_minio_credentials_give_the_root_user_and_the_endpoint():
    from prefect_aws import MinIOCredentials

    block = MinIOCredentials(minio_root_user="indexops", minio_root_password="minio-pw", region_name="us-east-1",
                             aws_client_parameters={"endpoint_url": "http://minio:9000"})
    assert block_storage_options(block, "minio-credentials/lab") == {
        "key": "indexops", "secret": "minio-pw", "endpoint_url": "http://minio:9000", "client_kwargs": {"region_name": "us-east-1"}}


def test_another_block_type_is_refused_by_name():
    from prefect.blocks.notifications import SlackWebhook

    with pytest.raises(SourceCredentialsError, match="slack-webhook block"):
        block_storage_options(SlackWebhook(url="https://hooks.slack.com/services/T0/B0/x"), "slack-webhook/oncall")


def test_no_block_is_read_for_a_local_path_or_without_the_setting():
    """No Prefect server is reachable from a unit test: a lookup here would fail, so {} shows none was made."""
    s = load_settings(None, {"source": {"credentials_block": "aws-credentials/never-created"}})
    assert remote_storage_options(s, "/data/kb") == {}
    assert remote_storage_options(s, "file:///data/kb") == {}
    assert remote_storage_options(load_settings(), "s3://bucket/kb") == {}
    both = load_settings(None, {"source": {"credentials_block": "aws-credentials/never-created"},
                                "sql": {"password_block": "never-created"}})
    assert source_credentials(both, "./handbook") is None  # a block applies to its kind of location only
    assert source_credentials(load_settings(), "postgresql+psycopg://app@db/crm") is None


@pytest.mark.parametrize("slug", ["exports", "aws-credentials/", "AWS/x", "aws-credentials/a b", "s3://bucket"])
def test_the_setting_is_a_block_type_and_name(slug):
    with pytest.raises(ValidationError, match="credentials_block"):
        load_settings(None, {"source": {"credentials_block": slug}})
