"""Deterministic ids and hashes (indexops/ids.py)."""

from __future__ import annotations

import hashlib
import uuid

from indexops import ids


def test_normalize_text_nfkc_casefold_whitespace():
    # U+FB01 is the "fi" ligature (NFKC -> "fi"); U+00A0 is a no-break space; ß casefolds to ss.
    assert ids.normalize_text("  \ufb01ne\u00a0 Straße\n\tX ") == "fine strasse x"


def test_text_hash_equal_for_exact_duplicates_only():
    assert ids.text_hash("Hello   World\n") == ids.text_hash("hello world")
    assert ids.text_hash("hello world") != ids.text_hash("hello  worlds")


def test_sha256_hex_length_prefixes_parts():
    # hand-computed: one empty part is the 8-byte big-endian length 0 and nothing else
    assert ids.sha256_hex("") == hashlib.sha256(b"\x00" * 8).hexdigest()
    assert ids.sha256_hex("ab") == hashlib.sha256(b"\x00" * 7 + b"\x02" + b"ab").hexdigest()
    # parts are framed, so moving a boundary changes the hash
    assert ids.sha256_hex("ab", "c") != ids.sha256_hex("a", "bc")


def test_canonical_json_sorted_compact_unicode():
    assert ids.canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'


def test_version_hash_ignores_metadata_key_order_but_sees_values():
    a = ids.version_hash("t", "x", {"a": 1, "b": 2})
    assert a == ids.version_hash("t", "x", {"b": 2, "a": 1})
    assert a != ids.version_hash("t", "x", {"a": 1, "b": 3})
    assert a != ids.version_hash("T", "x", {"a": 1, "b": 2})
    assert a != ids.version_hash("t", "x ", {"a": 1, "b": 2})  # version hash is over raw text


def test_chunk_hash_covers_text_title_metadata():
    base = ids.chunk_hash("x", "t", {"k": 1})
    assert base == ids.chunk_hash("x", "t", {"k": 1})
    assert len({base, ids.chunk_hash("y", "t", {"k": 1}), ids.chunk_hash("x", "u", {"k": 1}), ids.chunk_hash("x", "t", {"k": 2})}) == 4


def test_chunk_id_deterministic_and_sensitive_to_every_part():
    c = ids.chunk_id("doc", 0, "h", "v1")
    assert c == ids.chunk_id("doc", 0, "h", "v1")
    assert len(c) == 32 and int(c, 16) >= 0
    others = {ids.chunk_id("doc2", 0, "h", "v1"), ids.chunk_id("doc", 1, "h", "v1"), ids.chunk_id("doc", 0, "h2", "v1"), ids.chunk_id("doc", 0, "h", "v2")}
    assert c not in others and len(others) == 4


def test_point_id_is_uuid5_of_chunk_id():
    p = ids.point_id("abc")
    assert p == str(uuid.uuid5(uuid.UUID("6f1c1a52-6d1e-4a8c-9d0e-2f4b1b7c9a10"), "abc"))
    assert uuid.UUID(p).version == 5
    assert ids.point_id("abd") != p


def test_surrogates_do_not_crash_hashing():
    # a lone surrogate can come from json.loads('"\\ud800"'); hashing must not raise
    assert len(ids.text_hash("a\ud800b")) == 64
