"""The Python text analyser for the rank-bm25 reference: lower-case word tokens, English stop
words, Snowball stemming — the same steps as Qdrant's `Bm25` analyser, so the two BM25s can be
held against each other."""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# Snowball's English stop word list.
ENGLISH_STOPWORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
    her hers herself it its itself they them their theirs themselves what which who whom this that these
    those am is are was were be been being have has had having do does did doing would should could
    ought i'm you're he's she's it's we're they're i've you've we've they've i'd you'd he'd she'd we'd
    they'd i'll you'll he'll she'll we'll they'll isn't aren't wasn't weren't hasn't haven't hadn't
    doesn't don't didn't won't wouldn't shan't shouldn't can't cannot couldn't mustn't let's that's
    who's what's here's there's when's where's why's how's a an the and but if or because as until while
    of at by for with about against between into through during before after above below to from up
    down in out on off over under again further then once here there when where why how all any both
    each few more most other some such no nor not only own same so than too very s t can will just don
    now""".split()
)


@lru_cache(maxsize=1)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


class Analyzer:
    def __init__(self, stem: bool = True, stopwords: bool = True) -> None:
        self.stem = stem
        self.stopwords = stopwords
        self._cache: dict[str, str] = {}

    def __call__(self, text: str) -> list[str]:
        toks = [t for t in _WORD.findall(text.lower())]
        if self.stopwords:
            toks = [t for t in toks if t not in ENGLISH_STOPWORDS]
        if self.stem:
            st = _stemmer()
            out = []
            for t in toks:
                s = self._cache.get(t)
                if s is None:
                    s = self._cache[t] = st.stemWord(t)
                out.append(s)
            toks = out
        return toks
