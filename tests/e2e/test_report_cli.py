"""`indexops report` end to end in a subprocess: files written, verdicts printed, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.drift_helpers import EMAIL, PHONE, build_workspace

CLI = [sys.executable, "-m", "indexops.cli"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("report-cli"))


def _run(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, cwd=cwd, timeout=600)


def test_report_command_writes_both_files_and_prints_verdicts(planted, tmp_path):
    out = tmp_path / "out"
    p = _run("report", "--workspace", str(planted["workspace"]), "--out", str(out), "--config", str(planted["config"]),
             "--query-log", str(planted["query_log"]), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "drift report: ALERT" in p.stdout
    for title in ("Retrieval quality over time", "Corpus change", "Embedding drift", "Coverage of production queries"):
        assert title in p.stdout
    assert str(out / "drift-report.html") in p.stdout and (out / "drift-report.json").is_file()
    assert EMAIL not in p.stdout + (out / "drift-report.json").read_text()
    j = _run("report", "-w", str(planted["workspace"]), "-o", str(out), "-c", str(planted["config"]), "--json", "--no-redact",
             "--query-log", str(planted["query_log"]), "--since", "2000-01-01", cwd=tmp_path)
    summary = json.loads(j.stdout)
    assert summary["verdict"] == "alert" and summary["sections"]["retrieval"] == "alert"
    data = json.loads((out / "drift-report.json").read_text())
    assert data["since"].startswith("2000-01-01") and PHONE in json.dumps(data)


def test_missing_workspace_and_bad_date_fail_clearly(tmp_path, planted):
    p = _run("report", "--workspace", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert p.returncode == 1 and "does not exist" in p.stderr and "Traceback" not in p.stderr + p.stdout
    p = _run("report", "--workspace", str(planted["workspace"]), "--out", str(tmp_path / "o"), "--since", "last tuesday", cwd=tmp_path)
    assert p.returncode == 2 and "ISO date" in p.stderr and "Traceback" not in p.stderr
    assert "Usage" in _run("report", "--help", cwd=tmp_path).stdout
