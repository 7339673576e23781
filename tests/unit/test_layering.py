"""Imports run one way: flows -> tasks -> indexops. The core never imports Prefect."""

import pkgutil
import subprocess
import sys

import indexops

CORE = sorted(
    m.name for m in pkgutil.walk_packages(indexops.__path__, "indexops.") if m.name not in {"indexops.cli"}
)


def test_core_modules_do_not_import_prefect():
    code = "import sys\n" + "".join(f"import {m}\n" for m in CORE) + "print(sorted(k for k in sys.modules if k == 'prefect' or k.startswith('prefect.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"core imported Prefect: {out[:300]}"


def test_cli_help_is_prefect_free_and_core_list_is_not_empty():
    assert "indexops.pipeline" in CORE and "indexops.ledger" in CORE
    code = "import sys, indexops.cli; print('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
