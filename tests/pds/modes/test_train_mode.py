"""The train mode's checks on the state it is about to save."""

import jax.numpy as jnp
import numpy as np
import pytest

from pds.modes.train import all_finite, finite_groups


def test_groups_hold_each_floating_leaf_once_within_the_limit():
    shapes = [((3, 4), jnp.float32), ((), jnp.int32), ((10,), jnp.float32),
              ((2,), jnp.bfloat16), ((40,), jnp.float32), ((5,), jnp.float32),
              ((1,), jnp.bfloat16)]
    groups = finite_groups(shapes, limit=25)
    assert sorted(i for g in groups for i in g) == [0, 2, 3, 4, 5, 6]
    for g in groups:
        assert len({shapes[i][1] for i in g}) == 1  # one dtype per concatenation
        size = sum(int(np.prod(shapes[i][0])) for i in g)
        assert size <= 25 or len(g) == 1  # a leaf over the limit stands alone
    assert [4] in groups and [0, 2] in groups and [3, 6] in groups


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_all_finite_finds_one_bad_value_in_any_leaf(bad):
    tree = {'a': jnp.ones((3, 4)), 'b': {'c': jnp.zeros(7, jnp.bfloat16),
                                         'd': jnp.arange(5)}, 'e': jnp.full((), 2.0)}
    assert bool(all_finite(tree))
    for path in (('a',), ('b', 'c'), ('e',)):
        broken = {'a': tree['a'], 'b': dict(tree['b']), 'e': tree['e']}
        node = broken if len(path) == 1 else broken['b']
        leaf = np.array(node[path[-1]], np.float32)
        leaf.reshape(-1)[-1] = bad
        node[path[-1]] = jnp.asarray(leaf, node[path[-1]].dtype)
        assert not bool(all_finite(broken)), path
    assert bool(all_finite({'i': jnp.arange(3)}))  # no floating leaf: nothing to fail
