"""Exact and near-duplicate detection (indexops/ingest/dedupe.py and its use in indexops/ingest/plan.py: plan_batch)."""

from __future__ import annotations

import numpy as np
import pytest

from indexops.ids import normalize_text
from indexops.index.snapshot import current_snapshot_id
from indexops.ingest import dedupe
from indexops.ingest.dedupe import BatchBuckets, NearDuplicateIndex, Signature, lsh_params
from indexops.ingest.stages import apply_batch
from indexops.settings import DedupeSettings
from tests.unit._helpers import assert_store_matches_ledger, doc_ids_in_store, rm, settings_for, statuses, up

BASE = [f"tok{i}" for i in range(100)]
LONG = " ".join(BASE)
NEAR = " ".join(BASE[:50] + ["changed"] + BASE[51:])  # one word of 100: shingle Jaccard 95/101
FAR = " ".join(f"other{i}" for i in range(100))
SAME = "The quick brown fox jumps over the lazy dog."


def _top_doc(ctx, text):
    vec = ctx.embedder.embed([text])[0]
    hits = ctx.store.search_dense(vec, 1)
    return hits[0].payload["doc_id"] if hits else None


# ---- MinHash / LSH building blocks ------------------------------------------------------------


@pytest.mark.parametrize("num_perm", [64, 128, 256])
@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.85, 0.9, 0.95])
def test_lsh_params_find_a_pair_at_the_threshold_with_probability_099(threshold, num_perm):
    """P(a pair of Jaccard s shares a band) = 1 - (1 - s^r)^b: >= 0.99 at the threshold, and one more
    row per band (fewer false candidates) would fall below it."""
    b, r = lsh_params(threshold, num_perm)
    assert b >= 1 and r >= 1 and b * r <= num_perm
    assert 1 - (1 - threshold**r) ** b >= 0.99
    assert 1 - (1 - threshold ** (r + 1)) ** (num_perm // (r + 1)) < 0.99


def _pairs(n_pairs: int, n_words: int, swaps: int, seed: int) -> list[tuple[str, str]]:
    """Pairs of texts of distinct words, the second with `swaps` words replaced at random positions
    3 apart: each swap changes 3 of the S = n_words - 2 shingles, so Jaccard = (S - 3k) / (S + 3k)."""
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_pairs):
        words = [f"s{seed}p{p}w{i}" for i in range(n_words)]
        other = list(words)
        for v in rng.choice(np.arange(1, (n_words - 3) // 3 + 1), size=swaps, replace=False):
            other[3 * v] = f"s{seed}p{p}x{v}"
        out.append((" ".join(words), " ".join(other)))
    return out


def _found_and_verified(n: NearDuplicateIndex, pairs, jaccard: float) -> tuple[float, float]:
    for a, b in pairs[:20]:  # the construction gives the Jaccard asked for
        sa, sb = set(n.shingles(a)), set(n.shingles(b))
        assert abs(len(sa & sb) / len(sa | sb) - jaccard) < 1e-9
    sigs = n.signatures([t for p in pairs for t in p])
    found = verified = 0
    for sa, sb in zip(sigs[::2], sigs[1::2]):
        found += bool(set(n.buckets(sa)) & set(n.buckets(sb)))
        verified += sa.jaccard(sb) >= n.settings.near_threshold
    return found / len(pairs), verified / len(pairs)


def test_near_pairs_at_and_above_the_threshold_are_found_99_percent_of_the_time():
    """README: a pair at the threshold is found with probability >= 0.99 (here 0.994; seeded pairs)."""
    n = NearDuplicateIndex(DedupeSettings())
    assert n.settings.near_threshold == 0.85
    at, _ = _found_and_verified(n, _pairs(1500, 39, 1, seed=1), 34 / 40)  # exactly the threshold
    above, _ = _found_and_verified(n, _pairs(1000, 82, 2, seed=2), 74 / 86)  # 0.860
    assert at >= 0.99 and above >= 0.99, (at, above)
    below, verified = _found_and_verified(n, _pairs(500, 39, 4, seed=3), 25 / 49)  # 0.51: P(candidate) 0.06
    assert below < 0.15 and verified == 0.0, (below, verified)  # a few candidates, none verified


def test_signature_similarity_tracks_jaccard():
    n = NearDuplicateIndex(DedupeSettings())
    s = n.signature(LONG)
    assert s.jaccard(n.signature(LONG)) == 1.0
    assert s.jaccard(n.signature(LONG.upper().replace(" ", "  "))) == 1.0  # normalised before shingling
    assert s.jaccard(n.signature(NEAR)) >= 0.85
    assert s.jaccard(n.signature(FAR)) < 0.2
    assert len(s.values) == 128 and s.values.dtype == np.uint64


def test_signature_bytes_round_trip_and_deterministic():
    n1, n2 = NearDuplicateIndex(DedupeSettings()), NearDuplicateIndex(DedupeSettings())
    s = n1.signature(LONG)
    assert np.array_equal(Signature.from_bytes(s.to_bytes()).values, s.values)
    assert np.array_equal(n2.signature(LONG).values, s.values)  # seeded, stable across instances
    assert n1.buckets(s) == n2.buckets(s) and len(n1.buckets(s)) == n1.bands


def test_near_pair_shares_a_bucket_and_far_pair_does_not():
    n = NearDuplicateIndex(DedupeSettings())
    b = set(n.buckets(n.signature(LONG)))
    assert b & set(n.buckets(n.signature(NEAR)))
    assert not b & set(n.buckets(n.signature(FAR)))


def test_shingles_short_text_is_one_shingle():
    n = NearDuplicateIndex(DedupeSettings(shingle_words=3))
    assert n.shingles("A  b") == [b"a b"]
    assert sorted(n.shingles("a b c d")) == [b"a b c", b"b c d"]


def _reference_signature(nd: NearDuplicateIndex, text: str) -> np.ndarray:
    """The signature as the ledgers written so far computed it (word joins, `int.from_bytes`, numpy
    `%`): stored signatures and band keys depend on these exact values."""
    import hashlib

    from indexops.ids import normalize_text
    from indexops.ingest.dedupe import _MAX_HASH, _PRIME

    words = normalize_text(text).split(" ")
    n = nd.settings.shingle_words
    if len(words) <= n:
        sh = [" ".join(words).encode("utf-8", "surrogatepass")]
    else:
        sh = list({" ".join(words[i : i + n]).encode("utf-8", "surrogatepass") for i in range(len(words) - n + 1)})
    hv = np.array([int.from_bytes(hashlib.blake2b(x, digest_size=4).digest(), "little") for x in sh], dtype=np.uint64)
    with np.errstate(over="ignore"):
        ph = (nd._a[:, None] * hv[None, :] + nd._b[:, None]) % _PRIME
    return (ph & _MAX_HASH).min(axis=1).astype(np.uint64)


@pytest.mark.parametrize("shingle_words", [1, 3, 5])
def test_signature_equals_the_reference_computation_bit_for_bit(shingle_words, monkeypatch):
    rng = np.random.default_rng(3)
    vocab = ["insulin", "Ärzte", "naïve", "ﬁle", "日本語", "emoji🙂", "x", "\ud800lone", "straße", "İstanbul", "a\u00a0b", "tab\tsep"]
    texts = ["", " ", "one", "two words", "exactly three words", "  Leading and   trailing  ", "\ud83d\ude00 pair"]
    texts += [" ".join(rng.choice(vocab, size=int(k))) for k in rng.integers(1, 60, size=200)]
    nd = NearDuplicateIndex(DedupeSettings(shingle_words=shingle_words))
    refs = [_reference_signature(nd, t) for t in texts]
    for t, ref in zip(texts, refs):
        np.testing.assert_array_equal(nd.signature(t).values, ref, err_msg=repr(t))
    for per_pass in (1, 50, 8192):  # texts share numpy passes; a pass ends inside, between and after texts
        monkeypatch.setattr(dedupe, "_COLUMNS_PER_PASS", per_pass)
        got = nd.signatures(texts)
        assert len(got) == len(texts)
        for t, sig, ref in zip(texts, got, refs):
            np.testing.assert_array_equal(sig.values, ref, err_msg=f"{per_pass}: {t!r}")
    normalized = nd.signatures([normalize_text(t) for t in texts[:20]], normalized=True)
    assert [s.values.tolist() for s in normalized] == [r.tolist() for r in refs[:20]]


def test_bucket_keys_equal_the_reference_computation():
    """Band keys live in the ledger: per band, SHA-1 of the band number and its rows' bytes."""
    import hashlib

    from indexops.ingest.dedupe import band_key

    nd = NearDuplicateIndex(DedupeSettings())
    for t in (LONG, NEAR, FAR, ""):
        v = nd.signature(t).values
        ref = [band_key(hashlib.sha1(b.to_bytes(2, "big") + v[b * nd.rows : (b + 1) * nd.rows].astype("<u8").tobytes()).digest())
               for b in range(nd.bands)]
        assert nd.buckets(nd.signature(t)) == ref


def test_signature_jaccard_of_different_lengths_is_zero():
    assert Signature(np.zeros(4, dtype=np.uint64)).jaccard(Signature(np.zeros(8, dtype=np.uint64))) == 0.0


def test_batch_buckets_candidates():
    bb = BatchBuckets()
    n = NearDuplicateIndex(DedupeSettings())
    s = n.signature(LONG)
    bb.add("a", s, n.buckets(s))
    assert bb.candidates(n.buckets(n.signature(NEAR))) == {"a"}
    assert bb.candidates(n.buckets(n.signature(FAR))) == set()


# ---- exact duplicates in the pipeline ---------------------------------------------------------


@pytest.mark.parametrize("batches", [[["b"], ["a"]], [["a"], ["b"]], [["b", "a"]], [["a", "b"]]], ids=["b-then-a", "a-then-b", "one-batch-ba", "one-batch-ab"])
def test_exact_duplicate_keeps_smallest_id_in_any_order(make_ctx, batches):
    ctx = make_ctx()
    for i, ids in enumerate(batches):
        apply_batch(ctx, [up(d, SAME if d == "a" else SAME.upper() + "  ") for d in ids], "f", f"r{i}")
    assert statuses(ctx, ["a", "b"]) == {"a": ("active", None), "b": ("duplicate", "a")}
    assert ctx.ledger.list_duplicates()[0]["dup_kind"] == "exact"
    assert doc_ids_in_store(ctx) == {"a"}
    assert_store_matches_ledger(ctx)


def test_exact_duplicate_snapshot_is_order_independent(make_ctx):
    one, two = make_ctx(), make_ctx()
    apply_batch(one, [up("b", SAME), up("a", SAME), up("z", "unrelated text")], "f", "r")
    apply_batch(two, [up("z", "unrelated text")], "f", "r1")
    apply_batch(two, [up("b", SAME)], "f", "r2")
    apply_batch(two, [up("a", SAME)], "f", "r3")
    assert current_snapshot_id(one.ledger, one.collection) == current_snapshot_id(two.ledger, two.collection)


def test_smaller_arrival_takes_over_and_rewrites_existing_duplicates(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("c", SAME)], "f", "r1")
    c2 = apply_batch(ctx, [up("b", SAME)], "f", "r2")
    assert c2.exact_duplicates == 1
    assert statuses(ctx, "bc") == {"b": ("active", None), "c": ("duplicate", "b")}
    apply_batch(ctx, [up("a", SAME)], "f", "r3")
    assert statuses(ctx, "abc") == {"a": ("active", None), "b": ("duplicate", "a"), "c": ("duplicate", "a")}
    assert doc_ids_in_store(ctx) == {"a"}
    assert_store_matches_ledger(ctx)


def test_deleting_the_kept_original_promotes_a_duplicate(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("a", SAME), up("b", SAME), up("c", SAME), up("x", "something else entirely")], "f", "r1")
    assert doc_ids_in_store(ctx) == {"a", "x"}
    counts = apply_batch(ctx, [rm("a")], "f", "r2")
    assert counts.deleted == 1 and counts.promoted == 1
    assert statuses(ctx, "abc") == {"a": ("deleted", None), "b": ("active", None), "c": ("duplicate", "b")}
    assert doc_ids_in_store(ctx) == {"b", "x"}
    assert _top_doc(ctx, SAME) == "b"  # the promoted copy is searchable
    assert_store_matches_ledger(ctx)


def test_changing_the_kept_original_promotes_a_duplicate(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("a", SAME), up("b", SAME)], "f", "r1")
    counts = apply_batch(ctx, [up("a", "a brand new text for a")], "f", "r2")
    assert counts.promoted == 1 and counts.upserted == 1
    assert statuses(ctx, "ab") == {"a": ("active", None), "b": ("active", None)}
    assert doc_ids_in_store(ctx) == {"a", "b"}
    assert _top_doc(ctx, SAME) == "b"
    assert_store_matches_ledger(ctx)


def test_deleting_a_duplicate_leaves_the_store_alone(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("a", SAME), up("b", SAME)], "f", "r1")
    before = ctx.store.count()
    counts = apply_batch(ctx, [rm("b")], "f", "r2")
    assert counts.deleted == 1 and counts.chunks_deleted == 0 and counts.promoted == 0
    assert ctx.store.count() == before
    assert statuses(ctx, "ab") == {"a": ("active", None), "b": ("deleted", None)}


def test_exact_dedupe_off_indexes_every_copy(make_ctx):
    ctx = make_ctx(settings_for({"dedupe": {"exact": False, "near": False}}))
    apply_batch(ctx, [up("a", SAME), up("b", SAME)], "f", "r1")
    assert doc_ids_in_store(ctx) == {"a", "b"}


# ---- near duplicates in the pipeline ----------------------------------------------------------


def test_near_duplicate_found_against_the_existing_index(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("m", LONG), up("q", FAR)], "f", "r1")
    counts = apply_batch(ctx, [up("a", NEAR)], "f", "r2")  # "a" < "m": near keeps the indexed copy
    assert counts.near_duplicates == 1
    dups = {d["doc_id"]: d for d in ctx.ledger.list_duplicates()}
    assert dups["a"]["duplicate_of"] == "m" and dups["a"]["dup_kind"] == "near"
    assert 0.85 <= dups["a"]["similarity"] < 1.0
    assert doc_ids_in_store(ctx) == {"m", "q"}
    assert_store_matches_ledger(ctx)


def test_near_duplicate_within_one_batch_keeps_smallest_id(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("n2", NEAR), up("n1", LONG), up("q", FAR)], "f", "r1")
    assert statuses(ctx, ["n1", "n2", "q"]) == {"n1": ("active", None), "n2": ("duplicate", "n1"), "q": ("active", None)}


def test_far_document_is_not_a_near_duplicate(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("m", LONG)], "f", "r1")
    counts = apply_batch(ctx, [up("q", FAR)], "f", "r2")
    assert counts.near_duplicates == 0 and counts.exact_duplicates == 0


def test_near_threshold_is_respected(make_ctx):
    ctx = make_ctx(settings_for({"dedupe": {"near_threshold": 0.99}}))
    apply_batch(ctx, [up("m", LONG)], "f", "r1")
    counts = apply_batch(ctx, [up("a", NEAR)], "f", "r2")
    assert counts.near_duplicates == 0
    assert doc_ids_in_store(ctx) == {"a", "m"}


def test_deleting_near_original_promotes_the_near_duplicate(make_ctx):
    ctx = make_ctx()
    apply_batch(ctx, [up("m", LONG)], "f", "r1")
    apply_batch(ctx, [up("a", NEAR)], "f", "r2")
    counts = apply_batch(ctx, [rm("m")], "f", "r3")
    assert counts.promoted == 1
    assert statuses(ctx, "am") == {"a": ("active", None), "m": ("deleted", None)}
    assert doc_ids_in_store(ctx) == {"a"}
    # the promoted doc now anchors near-dup detection for later arrivals
    counts = apply_batch(ctx, [up("z", LONG)], "f", "r4")
    assert counts.near_duplicates == 1
    assert statuses(ctx, "z") == {"z": ("duplicate", "a")}
    assert_store_matches_ledger(ctx)
