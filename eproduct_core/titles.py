"""Title pseudo-attributes: tokens mined from listing titles, as multi-label training targets (numpy only).

eProduct ships a listing title with every training image. Tokens that occur in at least `min_count`
titles (and in at most `max_share` of them: a token in every title tells nothing) become attributes;
each training image gets a 0/1 vector saying which of them its title contains. A head trained on these
with binary cross-entropy (`losses.title_bce`) teaches the backbone colour, print and size words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

TOKEN = re.compile(r"[a-z0-9]+")


def tokens(title: str) -> set[str]:
    """The distinct lower-case words and numbers of a title (punctuation is dropped)."""
    return set(TOKEN.findall(str(title).lower()))


def mine_attributes(titles: Sequence[str], min_count: int = 5, max_share: float = 0.5) -> list[str]:
    """Sorted tokens found in at least `min_count` and at most `max_share` of the titles."""
    counts = Counter(token for title in titles for token in tokens(title))
    limit = max_share * len(titles)
    return sorted(token for token, count in counts.items() if min_count <= count <= limit)


def attribute_matrix(titles: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    """float32 (len(titles), len(vocabulary)): 1 where the title contains the token."""
    column = {token: j for j, token in enumerate(vocabulary)}
    matrix = np.zeros((len(titles), len(vocabulary)), np.float32)
    for i, title in enumerate(titles):
        for token in tokens(title):
            if token in column:
                matrix[i, column[token]] = 1.0
    return matrix
