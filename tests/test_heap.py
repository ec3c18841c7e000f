"""The collector of a long-running gateway (gateway/heap.py): start-up's objects frozen out of its
way, and full collections (which walk every live object: a backlog of thousands of replies made
them pause the reactor for a quarter of a second) ten times rarer than CPython's default."""
import gc

from gateway.heap import FULL_COLLECTION_EVERY, settle_after_start


def test_after_start_the_heap_is_frozen_and_full_collections_are_rarer():
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        kept = [object() for _ in range(1000)]       # noqa: F841 - alive across the freeze
        settle_after_start()
        young, middle, full = gc.get_threshold()
        assert (young, middle) == before[:2] and full == FULL_COLLECTION_EVERY == 10 * 10
        assert gc.get_freeze_count() >= 1000
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
