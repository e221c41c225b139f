"""The relaxed garbage collector still frees reference cycles, and its settings are those the
module documents."""

import gc
import weakref

from pds.runtime.python_gc import GEN0_THRESHOLD, relax_collector


class _Node:
    pass


def test_cycles_made_after_relaxing_are_still_collected():
    relax_collector()
    assert gc.isenabled() and gc.get_threshold()[0] == GEN0_THRESHOLD
    assert gc.get_freeze_count() > 1000  # the imports' objects
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    assert alive() is not None  # a cycle: reference counting alone cannot free it
    gc.collect()
    assert alive() is None
