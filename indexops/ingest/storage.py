"""Where a feed's files live: a local directory, or any fsspec URL (`s3://`, `gs://`, `az://`,
`file://`). Remote filesystems take their credentials from the environment the way their own SDKs
do (AWS_ACCESS_KEY_ID / AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*) or
from the options a caller passes (the flows read them from a Prefect block), and
`source.storage_options` refuses credentials, so none reaches a config, a log or the ledger.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from indexops.settings import url_has_password
from urllib.parse import unquote, urlsplit

SQL_SCHEMES = ("postgresql", "postgres", "sqlite", "mysql", "mariadb", "mssql", "oracle")
_EXTRAS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs"}


def url_scheme(path: str | Path) -> str | None:
    """The scheme of a URL (`s3`, `postgresql+psycopg` -> `postgresql`), None for a plain path."""
    s = str(path)
    if "://" not in s:
        return None
    return s.split("://", 1)[0].split("+", 1)[0].lower() or None


def is_remote(path: str | Path) -> bool:
    """A filesystem URL other than `file://` (which is read as a local path)."""
    scheme = url_scheme(path)
    return scheme is not None and scheme != "file" and scheme not in SQL_SCHEMES


def is_sql_url(path: str | Path) -> bool:
    return url_scheme(path) in SQL_SCHEMES


def has_password(path: str | Path) -> bool:
    """A URL with a password in it (`scheme://user:secret@host/...`, `?password=...`)."""
    s = str(path)
    return "://" in s and url_has_password(s)


def local_path(path: str | Path) -> Path:
    """A plain path, or the path of a `file://` URL (absolute: `file:///data/kb`).

    Raises:
        ValueError: a `file://` URL naming a host (`file://kb` reads as host `kb`, not a folder).
    """
    s = str(path)
    if url_scheme(s) != "file":
        return Path(s)
    parts = urlsplit(s)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"{s}: a file URL names an absolute path (file:///data/kb); {parts.netloc!r} reads as a host")
    return Path(unquote(parts.path))


_NESTED_OPTIONS = ("client_kwargs", "config_kwargs")


def merge_storage_options(config: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The config's fsspec options with the caller's over them (a credentials block's); the nested
    client and botocore options are merged key by key, so a block's region keeps the config's CA."""
    out = {**config, **given}
    for k in _NESTED_OPTIONS:
        if isinstance(config.get(k), dict) and isinstance(given.get(k), dict):
            out[k] = {**config[k], **given[k]}
    return out


def url_basename(url: str) -> str:
    """The last path segment of a URL (`s3://bucket/exports/help/` -> `help`), else its host."""
    parts = urlsplit(url)
    segs = [p for p in parts.path.split("/") if p]
    return segs[-1] if segs else (parts.hostname or parts.netloc or "feed")


@dataclass(frozen=True)
class SourceCredentials:
    """What a caller read for one run (the flows: from Prefect blocks) and hands to a source: filesystem
    options for a bucket, a password for a database. Kept out of every repr, config and record."""

    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RemoteFile:
    """A file as a listing saw it: path relative to the root, size and a version fingerprint."""

    rel: str
    path: str
    size: int | None
    fingerprint: str
    mtime_ns: int | None


class RemoteDir:
    """A directory of an fsspec filesystem: list its files with fingerprints, read one's bytes."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        opts = dict(storage_options or {})
        scheme = url_scheme(url) or "file"
        if scheme in ("s3", "s3a") and "endpoint_url" not in opts and os.environ.get("AWS_ENDPOINT_URL"):
            opts.setdefault("endpoint_url", os.environ["AWS_ENDPOINT_URL"])  # S3-compatible stores: MinIO, Ceph, R2
        try:
            # a new filesystem per run: fsspec caches instances by their arguments, and one made from the
            # environment would keep the credentials it was made with after the environment changed
            self.fs, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, **opts)
        except ImportError as e:
            pkg = _EXTRAS.get(scheme, "the fsspec implementation")
            raise ImportError(f"reading {scheme}:// needs {pkg}: pip install {pkg}") from e
        self.url = url
        self.root = root.rstrip("/")

    def files(self, recursive: bool) -> Iterator[RemoteFile]:
        """Every file under the root (directly in it unless `recursive`), in path order.

        Raises:
            FileNotFoundError: the root does not exist (an empty prefix of a bucket lists nothing).
        """
        self.fs.invalidate_cache(self.root)  # a listing cached by an earlier call on this filesystem is stale
        if recursive:
            found = self.fs.find(self.root, detail=True)
        else:
            found = {e["name"]: e for e in self.fs.ls(self.root, detail=True)}
        if not found and not self.fs.exists(self.root):  # object stores list a mistyped prefix as empty
            raise FileNotFoundError(f"nothing at {self.url}: no such bucket, prefix or directory")
        if set(found) == {self.root} and found[self.root].get("type") != "directory":
            raise NotADirectoryError(f"{self.url} is a file, not a folder of files")
        for name in sorted(found):
            info = found[name]
            if info.get("type") == "directory":
                continue
            rel = str(PurePosixPath(name).relative_to(PurePosixPath(self.root))) if name != self.root else PurePosixPath(name).name
            yield RemoteFile(rel, name, info.get("size"), _fingerprint(info), _mtime_ns(info))

    def read(self, f: RemoteFile) -> bytes:
        return self.fs.cat_file(f.path)


def _mtime_ns(info: dict[str, Any]) -> int | None:
    t = info.get("LastModified") or info.get("mtime") or info.get("last_modified") or info.get("updated")
    if isinstance(t, datetime):
        return int(t.timestamp() * 1_000_000_000)
    if isinstance(t, (int, float)):
        return int(t * 1_000_000_000)
    if isinstance(t, str):
        try:
            return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1_000_000_000)
        except ValueError:
            return None
    return None


def _fingerprint(info: dict[str, Any]) -> str:
    """The object store's version of a file: its ETag (or generation / content MD5) where it has one,
    else size and modification time."""
    for k in ("ETag", "etag", "generation", "md5Hash", "content_md5"):
        v = info.get(k)
        if v:
            return f"{k}:{str(v).strip(chr(34))}"
    return f"size:{info.get('size')}:mtime:{_mtime_ns(info)}"
