"""The API's parsed-result cache is bounded by entries and by bytes (found by the memory soak in bench/soak.py)."""
from __future__ import annotations

import json

from service.deps import ResultCache
from initscore.server.storage import FileArtifactStore


def _results(store: FileArtifactStore, n: int, width: int) -> list[tuple[str, dict, int]]:
    out = []
    for i in range(n):
        obj = {"kind": "score", "i": i, "layers": [{"name": f"l{j}", "score": j / 7} for j in range(width)]}
        sha = store.put_json(obj)
        out.append((sha, obj, len(store.get(sha))))
    return out


def test_values_equal_the_stored_json(tmp_path):
    store = FileArtifactStore(tmp_path)
    cache = ResultCache(store, size=16, max_bytes=1 << 20)
    for sha, obj, _ in _results(store, 5, 10):
        assert cache(sha) == json.loads(json.dumps(obj)) == cache(sha)


def test_byte_budget_holds_and_evicts_least_recent(tmp_path):
    store = FileArtifactStore(tmp_path)
    items = _results(store, 40, 50)
    size = items[0][2]
    cache = ResultCache(store, size=2048, max_bytes=10 * size + size // 2)  # room for 10 of these results
    for sha, _, _ in items:
        cache(sha)
        n, b = cache.stats()
        assert b <= cache.max_bytes and n <= 10
    assert cache.stats()[0] == 10
    kept = list(cache._items)
    assert kept == [sha for sha, _, _ in items[-10:]]
    cache(items[-10][0])  # touch the oldest: it becomes the newest, the next oldest goes first
    cache(items[0][0])
    assert items[-10][0] in cache._items and items[-9][0] not in cache._items


def test_entry_bound_and_oversized_results(tmp_path):
    store = FileArtifactStore(tmp_path)
    small = _results(store, 6, 2)
    cache = ResultCache(store, size=4, max_bytes=1 << 20)
    for sha, _, _ in small:
        cache(sha)
    assert cache.stats()[0] == 4
    big_sha, big, big_n = _results(store, 1, 5000)[0]
    tiny = ResultCache(store, size=4, max_bytes=big_n - 1)
    assert tiny(big_sha) == json.loads(json.dumps(big))  # served, not kept
    assert tiny.stats() == (0, 0)
    off = ResultCache(store, size=4, max_bytes=0)
    assert off(small[0][0]) is not None and off.stats() == (0, 0)
