"""app/main_thread_gc.py: cyclic garbage is collected by a main-thread timer, never by a worker thread."""

import gc
import weakref

from app.main_thread_gc import MainThreadGarbageCollector


class Node:
    pass


def test_collects_on_the_main_thread_when_gc_would_and_restores_gc(qapp):
    was_enabled = gc.isenabled()
    collector = MainThreadGarbageCollector()
    try:
        assert not gc.isenabled()  # no automatic collection in whichever thread allocates
        gc.collect()
        assert collector.check() is None  # nothing allocated since: nothing to do
        first = Node()
        first.self = first
        alive = weakref.ref(first)
        del first
        keep = [Node() for _ in range(gc.get_threshold()[0] + 10)]  # pass the generation-0 threshold
        assert alive() is not None  # a cycle: only the collector frees it
        assert collector.check() is not None
        assert alive() is None
        del keep
    finally:
        collector.stop()
    assert gc.isenabled() == was_enabled
