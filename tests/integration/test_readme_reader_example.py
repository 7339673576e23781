"""The README's reader example ("Reading while ingesting") runs as printed, on a real workspace (the
example opens it with the default config, so the real model loads for the recipe check)."""

from __future__ import annotations

import re
import shutil

from indexops.index.context import open_index
from indexops.ingest.driver import ingest_path
from tests.conftest import REPO
from tests.unit._helpers import settings_for


def test_the_readme_reader_example_runs(tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Reading while ingesting"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    feed = tmp_path / "feed"
    feed.mkdir()
    for f in sorted((REPO / "indexops" / "sample_data" / "feed").iterdir())[:1]:
        shutil.copy(f, feed / f.name)
    s = settings_for()
    ctx = open_index(tmp_path / ".demo" / "workspace", s)
    try:
        sid = ingest_path(ctx, feed, "delta")["snapshot"]["snapshot_id"]
    finally:
        ctx.close()
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith(sid) and "kb-" in out
