"""Chunkers (indexops/ingest/chunking.py): windows and sentence packing measured in the embedder's tokens."""

from __future__ import annotations

import pytest

from indexops.embed.hashing import HashingEmbedder, WordTokenizer
from indexops.ingest.chunking import Chunker
from indexops.settings import ChunkingSettings

WORDS20 = " ".join(f"w{i}" for i in range(20))


def _chunker(strategy="token_window", max_tokens=10, overlap=2, include_title=False, tok=None, tok_id="tok"):
    s = ChunkingSettings(strategy=strategy, max_tokens=max_tokens, overlap_tokens=overlap, include_title=include_title)
    return Chunker(s, tok or WordTokenizer(), tok_id)


class CharTokenizer:
    """Every non-space character is a token: a tokenizer unlike the word one, to prove sizes use it."""

    max_tokens = 1000

    def spans(self, text):
        return [(i, i + 1) for i, ch in enumerate(text) if not ch.isspace()]


def _texts(res):
    return [c.text for c in res.chunks]


def test_token_window_sizes_and_overlap_hand_computed():
    # size 10, overlap 2 -> step 8: tokens [0,10), [8,18), [16,20)
    res = _chunker().chunk("d", "", WORDS20, {})
    assert _texts(res) == [
        "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9",
        "w8 w9 w10 w11 w12 w13 w14 w15 w16 w17",
        "w16 w17 w18 w19",
    ]
    assert [c.position for c in res.chunks] == [0, 1, 2]
    assert res.duplicates_dropped == 0


def test_token_window_without_overlap():
    res = _chunker(overlap=0).chunk("d", "", WORDS20, {})
    assert _texts(res) == [" ".join(f"w{i}" for i in range(0, 10)), " ".join(f"w{i}" for i in range(10, 20))]


def test_recursive_packs_whole_sentences():
    res = _chunker("recursive", max_tokens=9, overlap=0).chunk("d", "", "a b c d. e f g h. i j k l.", {})
    assert _texts(res) == ["a b c d. e f g h.", "i j k l."]


def test_recursive_overlap_carries_trailing_sentence():
    # overlap 4 = one 4-token sentence: the second chunk starts with the last sentence of the first
    res = _chunker("recursive", max_tokens=9, overlap=4).chunk("d", "", "a b c d. e f g h. i j k l.", {})
    assert _texts(res) == ["a b c d. e f g h.", "e f g h. i j k l."]


def test_recursive_long_sentence_falls_back_to_windows():
    res = _chunker("recursive", max_tokens=10, overlap=2).chunk("d", "", WORDS20 + ".", {})
    assert _texts(res) == [
        "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9",
        "w8 w9 w10 w11 w12 w13 w14 w15 w16 w17",
        "w16 w17 w18 w19",
    ]


def test_sizes_are_counted_in_the_given_tokenizer():
    text = "abcdefghijklmnopqrst"  # one word, 20 characters
    assert _texts(_chunker(tok=WordTokenizer()).chunk("d", "", text, {})) == [text]
    assert _texts(_chunker(tok=CharTokenizer()).chunk("d", "", text, {})) == ["abcdefghij", "ijklmnopqr", "qrst"]


def test_effective_size_is_capped_by_the_model_window():
    c = _chunker(max_tokens=256, tok=WordTokenizer(max_tokens=12))
    assert c.max_tokens == 12
    assert c.config()["effective_max_tokens"] == 12
    assert all(len(WordTokenizer().spans(ch.text)) <= 12 for ch in c.chunk("d", "", WORDS20, {}).chunks)
    assert c.version != _chunker(max_tokens=256).version


@pytest.mark.parametrize("strategy", ["token_window", "recursive"])
def test_every_token_is_covered_and_embed_text_fits_window(strategy):
    sentences = [" ".join(f"s{i}w{j}" for j in range(n)) + "." for i, n in enumerate([3, 7, 25, 2, 11, 4])]
    text = " ".join(sentences[:3]) + "\n\n" + " ".join(sentences[3:])
    title = "Short title"
    tok = WordTokenizer()
    c = _chunker(strategy, max_tokens=20, overlap=3, include_title=True)
    res = c.chunk("d", title, text, {})
    assert len(res.chunks) > 1
    covered = {w for ch in res.chunks for w in ch.text.replace(".", " ").split()}
    assert covered == set(text.replace(".", " ").split())
    for ch in res.chunks:
        assert ch.embed_text == f"{title}\n{ch.text}"
        assert len(tok.spans(ch.embed_text)) <= 20, ch.embed_text
        assert ch.tokens == len(tok.spans(ch.embed_text))  # the count the encoder pool sorts by


def test_embed_text_fits_window_with_a_long_title():
    """Chunker's contract: 'chunks whose embed text fits the model window' - also when the
    title takes more than half of it (the model would silently truncate the chunk's tail)."""
    title = " ".join(f"t{i}" for i in range(20))  # 20 tokens of a 32-token window
    text = " ".join(f"w{i}" for i in range(60))
    tok = WordTokenizer()
    res = _chunker("token_window", max_tokens=32, overlap=0, include_title=True).chunk("d", title, text, {})
    assert max(len(tok.spans(ch.embed_text)) for ch in res.chunks) <= 32


def test_title_prefix_only_when_enabled():
    res = _chunker(include_title=False).chunk("d", "The Title", "alpha beta", {})
    assert res.chunks[0].embed_text == "alpha beta"
    assert res.chunks[0].title == "The Title"
    res = _chunker(include_title=True).chunk("d", "   ", "alpha beta", {})  # a blank title is no prefix
    assert res.chunks[0].embed_text == "alpha beta"


def test_repeated_identical_chunks_in_one_doc_are_dropped():
    # 5-token sentences in a 9-token window: one sentence per chunk; the 2nd and 3rd repeat the 1st
    text = "x y z w v. x y z w v. X  y z w v. other words here now ok."
    res = _chunker("recursive", max_tokens=9, overlap=0).chunk("d", "", text, {})
    assert _texts(res) == ["x y z w v.", "other words here now ok."]
    assert res.duplicates_dropped == 2
    assert [c.position for c in res.chunks] == [0, 3]


def test_chunk_ids_are_deterministic_and_content_addressed():
    c = _chunker()
    a = c.chunk("d", "T", WORDS20, {"k": 1})
    b = c.chunk("d", "T", WORDS20, {"k": 1})
    assert [x.chunk_id for x in a.chunks] == [x.chunk_id for x in b.chunks]
    assert len({x.chunk_id for x in a.chunks}) == 3
    # another doc id, another chunker version: other ids
    assert not {x.chunk_id for x in a.chunks} & {x.chunk_id for x in c.chunk("e", "T", WORDS20, {"k": 1}).chunks}
    other = _chunker(overlap=3)
    assert other.version != c.version
    assert a.chunks[0].chunk_id != other.chunk("d", "T", WORDS20, {"k": 1}).chunks[0].chunk_id
    # metadata and title change the chunk hash but not the id (same passage at the same place)
    m = c.chunk("d", "T", WORDS20, {"k": 2})
    assert [x.chunk_id for x in m.chunks] == [x.chunk_id for x in a.chunks]
    assert all(x.chunk_hash != y.chunk_hash for x, y in zip(m.chunks, a.chunks))
    t = c.chunk("d", "U", WORDS20, {"k": 1})
    assert [x.chunk_id for x in t.chunks] == [x.chunk_id for x in a.chunks]
    assert all(x.chunk_hash != y.chunk_hash for x, y in zip(t.chunks, a.chunks))


def test_editing_the_tail_keeps_earlier_chunk_ids():
    c = _chunker("recursive", max_tokens=9, overlap=0)
    a = c.chunk("d", "", "a b c d. e f g h. i j k l.", {})
    b = c.chunk("d", "", "a b c d. e f g h. i j k CHANGED.", {})
    assert a.chunks[0].chunk_id == b.chunks[0].chunk_id
    assert a.chunks[1].chunk_id != b.chunks[1].chunk_id


def test_text_without_word_tokens_is_one_chunk():
    res = _chunker().chunk("d", "", "!!! ???", {})
    assert _texts(res) == ["!!! ???"]


def test_hashing_embedder_tokenizer_is_the_chunkers_default_counter():
    emb = HashingEmbedder(dim=16)
    c = Chunker(ChunkingSettings(strategy="token_window", max_tokens=10, overlap_tokens=0, include_title=False), emb.tokenizer(), emb.fingerprint()[:16])
    assert len(c.chunk("d", "", WORDS20, {}).chunks) == 2


@pytest.mark.parametrize("overlap", [10, 11])
def test_overlap_must_be_below_size(overlap):
    with pytest.raises(ValueError, match="overlap_tokens"):
        ChunkingSettings(max_tokens=10, overlap_tokens=overlap)


def test_warming_the_model_tokenizer_in_batches_changes_no_chunk():
    """`Chunker.warm` (one batched tokenizer call per slice of documents) is a speed-up only."""
    from indexops.embed.factory import make_embedder

    emb = make_embedder("all-MiniLM-L6-v2", backend="onnx-int8")
    settings = ChunkingSettings(max_tokens=40, overlap_tokens=8)
    docs = [(f"d{i}", f"Title {i}", (WORDS20 + ". ") * (i % 5 + 1) + "Ünïcödé ✓ tail.") for i in range(12)] + [("e", "", "")]
    cold = Chunker(settings, emb.tokenizer(), "t")
    plain = [cold.chunk(d, t, x, {}).chunks for d, t, x in docs]
    warm = Chunker(settings, emb.tokenizer(), "t")
    warm.warm([s for _, t, x in docs for s in (t, x)])
    assert [warm.chunk(d, t, x, {}).chunks for d, t, x in docs] == plain
    assert any(len(c) > 1 for c in plain)
    tok = emb.tokenizer()
    assert all(c.tokens == len(tok.spans(c.embed_text)) for cs in plain for c in cs)  # model tokens of the embed text


def test_document_strategy_makes_one_chunk_of_the_whole_text():
    """One chunk per document (as the peers without a splitter): whole text kept, the title prefixes
    what the model reads, an empty text makes none, and the recipe version differs from other strategies."""
    c = _chunker("document", max_tokens=10, include_title=True)
    long = (WORDS20 + ". ") * 5
    r = c.chunk("d1", "The title", "  " + long + "  ", {"k": 1})
    assert len(r.chunks) == 1
    (ch,) = r.chunks
    assert ch.text == long.strip() and ch.embed_text == "The title\n" + long.strip() and ch.position == 0
    assert c.chunk("d1", "The title", long, {"k": 1}).chunks[0].chunk_id == ch.chunk_id
    assert c.chunk("d2", "t", "   ", {}).chunks == []
    assert _chunker("document", include_title=False).chunk("d", "T", "x y", {}).chunks[0].embed_text == "x y"
    assert c.version != _chunker("recursive", max_tokens=10, include_title=True).version


def test_chunks_carry_the_model_token_ids_of_their_embed_text_or_none():
    """Where a chunk starts and ends at word boundaries its `token_ids` are cut from the document's
    tokenization and must equal the tokenizer's own ids for the embed text (what the encoder would
    make of it); a window cut inside a word, or a title cut inside one, carries none."""
    import numpy as np

    from indexops.embed.factory import make_embedder

    emb = make_embedder("all-MiniLM-L6-v2", backend="onnx-int8")
    tok = emb.tokenizer()
    ch = Chunker(ChunkingSettings(strategy="recursive", max_tokens=24, overlap_tokens=6), tok, "t")
    long_word = "Pneumonoultramicroscopicsilicovolcanoconiosis"  # many word pieces: windows cut inside it
    docs = [
        ("a", "Ünïcödé (title)!", (WORDS20 + ". ") * 3 + "Crème brûlée; naïve café. 漢字テスト ok. ✓ done."),
        ("b", "", "Tabs\tand\u00a0odd\u200bspaces.\n\nA new paragraph: don't split 3'-UTR, e.g. BRCA1/2. " * 3),
        ("c", "A very long title " * 20, "Short text."),  # cut at a word boundary: still exact
        ("e", "Pneumonoultramicroscopicsilicovolcanoconiosis " * 9, "Short text."),  # title cut inside a word
        ("d", "T", " ".join([long_word] * 6)),
    ]
    with_ids = without = 0
    for did, title, text in docs:
        for c in ch.chunk(did, title, text, {}).chunks:
            if c.token_ids is None:
                without += 1
                continue
            with_ids += 1
            got = np.frombuffer(c.token_ids, dtype=tok.id_dtype).tolist()
            assert got == tok._tok.encode(c.embed_text, add_special_tokens=False).ids, (did, c.embed_text)
            assert len(got) == c.tokens
    assert with_ids >= 8 and without >= 1  # ordinary text has ids; the word cut by windows has none
    assert tok.id_dtype == "<u2"  # 30,522 ids: two bytes each
    assert all(c.token_ids is None for c in _chunker().chunk("d", "", WORDS20, {}).chunks)  # word tokenizer: no ids


def test_sections_split_first_and_number_positions_without_collisions():
    """A sectioned document: no chunk crosses a section, each carries its path, and positions stay
    unique when a section's repeated passage is dropped (a later section once reused its number)."""
    ch = Chunker(ChunkingSettings(strategy="recursive", max_tokens=9, overlap_tokens=0, include_title=False), WordTokenizer(), "words")
    p, r = "alpha beta gamma delta epsilon zeta.", "omega sigma tau rho phi chi."  # 6 words each: one per chunk
    text = f"{p}\n\n{p}\n\n{r}\n\n{r}"
    linux, mac = 0, text.index(r, len(p) * 2 + 4) + len(r) + 2
    res = ch.chunk("d", "", text, {"lang": "en", "section_starts": [[linux, ["Linux"]], [mac, ["Mac"]]]})
    ids = [c.chunk_id for c in res.chunks]
    assert len(ids) == len(set(ids)) == 3 and res.duplicates_dropped == 1
    assert [(c.text, c.metadata) for c in res.chunks] == [
        (p, {"lang": "en", "section": "Linux"}), (r, {"lang": "en", "section": "Linux"}), (r, {"lang": "en", "section": "Mac"})]
