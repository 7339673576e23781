"""configs/default.yaml, written from the settings models so the file and the code cannot disagree.

`python -m indexops.config_file` (`make config`) rewrites it; `--check` fails when it is stale.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from indexops.settings import DEFAULT_CONFIG, Settings

_HEADER = """\
# indexops defaults, generated from indexops/settings.py by `make config` (python -m indexops.config_file):
# change a default or a description there, never here. An overlay passed with --config changes only the
# keys it sets; the environment beats it, with the key's path as name: store.url is INDEXOPS_STORE__URL.
"""
_WIDTH = 110


def render_defaults() -> str:
    """The defaults of every settings group as YAML, each key under its description as a comment.

    Returns:
        The text of configs/default.yaml.
    """
    out = [_HEADER.rstrip("\n")]
    for group, field in Settings.model_fields.items():
        out += ["", *_comment(field.description, ""), f"{group}:"]
        for name, f in field.annotation.model_fields.items():  # type: ignore[union-attr]
            out += [*_comment(f.description, "  "), f"  {name}: {_value(f.get_default(call_default_factory=True))}"]
    return "\n".join(out) + "\n"


def _comment(text: str | None, indent: str) -> list[str]:
    return textwrap.wrap(text or "", _WIDTH, initial_indent=f"{indent}# ", subsequent_indent=f"{indent}# ")


def _value(v: Any) -> str:
    """One YAML scalar or flow list (a Path as written, relative to configs/)."""
    v = str(v) if isinstance(v, Path) else v
    return yaml.safe_dump(v, default_flow_style=True, width=10_000).removesuffix("\n").removesuffix("\n...")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the file differs from the models")
    ap.add_argument("--path", type=Path, default=DEFAULT_CONFIG)
    a = ap.parse_args(argv)
    text = render_defaults()
    if a.check:
        stale = not a.path.exists() or a.path.read_text() != text
        if stale:
            print(f"{a.path} is stale: run `make config`", file=sys.stderr)
        return int(stale)
    a.path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
