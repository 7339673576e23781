"""Shared fixtures: markers by folder, hashing-embedder settings, a real PostgreSQL server and a
real Prefect server for the session (both started here and always stopped).

Under `CI=true` a skipped test fails the run: a skip would hide a missing real part (PostgreSQL,
Chromium, the Prefect server, the real model). Only `skip_without_shared` may skip, and only while
`../shared` is absent. Hypothesis is derandomised there (`ci` profile); every profile prints the
blob that replays a failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
_PREFECT_HOME = tempfile.mkdtemp(prefix="indexops-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME

REPO = Path(__file__).resolve().parent.parent
SHARED = (REPO.parent / "shared").resolve()
SCIFACT = SHARED / "data" / "scifact"
CHROMIUM = Path(os.environ.get("INDEXOPS_TEST_CHROMIUM", "/usr/bin/chromium"))  # Debian's; never `playwright install`
CI = os.environ.get("CI", "").lower() in ("true", "1")
_SHARED_SKIP = "needs ../shared data:"

# max_examples for tests that do not set their own (the incremental property); `make test-deep` runs `deep`
hypothesis_settings.register_profile("dev", max_examples=25, print_blob=True)
hypothesis_settings.register_profile("ci", max_examples=25, derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("deep", max_examples=400, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if CI else "dev"))
_MARKER_BY_DIR = {"unit": "unit", "flows": "flows", "integration": "integration", "e2e": "e2e"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        if parts and parts[0] in _MARKER_BY_DIR:
            item.add_marker(getattr(pytest.mark, _MARKER_BY_DIR[parts[0]]))


def skip_without_shared(what: str) -> None:
    """The one skip CI tolerates: data that lives in ../shared beside the repo (a fresh clone lacks it)."""
    pytest.skip(f"{_SHARED_SKIP} {what} (../shared is beside the repo; a fresh clone lacks it)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not CI or not rep.skipped or hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    if reason.removeprefix("Skipped: ").startswith(_SHARED_SKIP) and not SHARED.exists():
        return
    rep.outcome = "failed"
    rep.longrepr = f"skipped under CI=true, which hides a missing real part: {reason}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hashing_settings():
    from indexops.settings import load_settings

    return load_settings(REPO / "configs" / "hashing.yaml")


@pytest.fixture
def make_ctx(tmp_path, hashing_settings):
    """Open an index in a fresh workspace with the hashing embedder; closed after the test."""
    from indexops.index.context import open_index

    opened = []

    def _make(settings=None, workspace=None):
        ctx = open_index(workspace or tmp_path / f"ws{len(opened)}", settings or hashing_settings)
        opened.append(ctx)
        return ctx

    yield _make
    for c in opened:
        c.close()


def _pg_bin() -> Path | None:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").exists():
            return d
    found = shutil.which("initdb")
    return Path(found).parent if found else None


PG_PASSWORD_ROLE = "indexops_sql_reader"  # the one role of the test server that logs in with a password


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server in a temp dir on a free loopback port (Debian's postgresql)."""
    if os.environ.get("INDEXOPS_TEST_PG_URL"):
        yield os.environ["INDEXOPS_TEST_PG_URL"]
        return
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql); .ci/run installs them")
    data = Path(tempfile.mkdtemp(prefix="indexops-pg-"))
    port = free_port()
    as_pg: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    hba = data / "pg_hba.conf"  # the source tests' reader role must really authenticate (first matching line wins)
    hba.write_text(f"host all {PG_PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    log = data / "server.log"
    subprocess.run(
        as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                 "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
        check=True, capture_output=True,
    )
    try:
        subprocess.run(as_pg + [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "indexops_test"], check=True, capture_output=True)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/indexops_test"
    finally:
        subprocess.run(as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


S3_SECRET = "moto-secret-Zq81vX3kP0"  # planted: it must appear in no output, ledger row, artifact or log


class S3Server:
    """moto's S3 server on a loopback port (what s3fs's own tests use); `object_gets()` counts the
    object bodies it served, from its request log (not from anything indexops counts)."""

    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log
        self.env = {"AWS_ACCESS_KEY_ID": "AKIAINDEXOPSTEST", "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_ENDPOINT_URL": url,
                    "AWS_DEFAULT_REGION": "us-east-1"}

    def object_gets(self, bucket: str) -> list[str]:
        """Keys of every object GET so far (listings are `GET /bucket?...` and are not counted)."""
        import re

        pat = re.compile(rf'"GET /{re.escape(bucket)}/([^? ]+) HTTP')
        return [m.group(1) for m in pat.finditer(self.log.read_text(errors="replace"))]


@contextlib.contextmanager
def loopback_server(name: str, cmd: list[str], probe: str, log: Path, wait_s: float = 60.0) -> Iterator[None]:
    """Run `cmd` (its output to `log`) until `probe` answers over HTTP with any status; always stop it."""
    import urllib.error
    import urllib.request

    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                urllib.request.urlopen(probe, timeout=1)
                break
            except urllib.error.HTTPError:
                break  # an answer all the same (Azurite refuses an unsigned request)
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: {log.read_text(errors='replace')[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not answer at {probe} within {wait_s:.0f} s")
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto in server mode on a free loopback port, started as its own process and always stopped."""
    log = tmp_path_factory.mktemp("moto") / "requests.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with loopback_server("moto server", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], url + "/moto-api/", log):
        yield S3Server(url, log)


@pytest.fixture
def s3(s3_server, monkeypatch):
    """Credentials and the endpoint in the environment, as a user sets them; yields the server."""
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    return s3_server


AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's documented dev key
AZURITE_BIN = REPO / ".venv" / "node" / "node_modules" / ".bin" / "azurite-blob"


class AzuriteServer:
    """Azurite's Blob service on a loopback port; `blob_gets()` counts the blob bodies it served, from
    its access log (not from anything indexops counts). Shared-key signatures are checked for real."""

    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log
        self.connection_string = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
                                  f"BlobEndpoint={url}/devstoreaccount1;")

    def blob_gets(self, container: str) -> list[str]:
        """Blob paths of every GET so far (container listings carry `?restype=` and are not counted)."""
        import re

        pat = re.compile(rf'"GET /devstoreaccount1/{re.escape(container)}/([^? ]+) HTTP')
        return [m.group(1) for m in pat.finditer(self.log.read_text(errors="replace"))]


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    """Azurite (npm; `make install` puts it in .venv/node) on a free loopback port, always stopped."""
    exe = AZURITE_BIN if AZURITE_BIN.exists() else shutil.which("azurite-blob")
    if exe is None:
        pytest.skip("Azurite not installed (`make install` installs it with npm)")
    base = tmp_path_factory.mktemp("azurite")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(exe), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(base / "data"), "--skipApiVersionCheck", "--loose"]
    with loopback_server("azurite", cmd, url + "/devstoreaccount1?comp=list", base / "access.log"):
        yield AzuriteServer(url, base / "access.log")


@pytest.fixture
def azurite(azurite_server, monkeypatch):
    """The connection string in the environment, where adlfs reads it as a user sets it."""
    for k in [k for k in os.environ if k.startswith("AZURE_STORAGE_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server.connection_string)
    return azurite_server


@pytest.fixture(scope="session")
def prefect_server():
    """`prefect server start` on a free loopback port for the whole session; yields the API URL."""
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=_PREFECT_HOME, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="false" if os.environ.get("INDEXOPS_TEST_NO_UI") else "true",
               PREFECT_UI_URL=f"http://127.0.0.1:{port}",  # links in alerts point at this UI
               PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api")  # the UI's own calls (default: port 4200)
    env.pop("PREFECT_API_URL", None)
    log = open(Path(_PREFECT_HOME) / "server.log", "wb")
    prefect_bin = str(Path(sys.executable).parent / "prefect")
    proc = subprocess.Popen([prefect_bin, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited: {(Path(_PREFECT_HOME) / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("prefect server did not become healthy in 120 s")
    try:
        yield url
    finally:
        import signal

        try:  # send buffered run logs while the server still listens
            from prefect.logging.handlers import APILogHandler

            APILogHandler.flush()
        except Exception:  # noqa: BLE001
            pass

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def prefect_api(prefect_server, monkeypatch):
    """Point this test's Prefect client at the session server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        yield prefect_server


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def scifact_dir():
    if not (SCIFACT / "corpus.jsonl").exists():
        skip_without_shared(f"SciFact at {SCIFACT}")
    return SCIFACT
