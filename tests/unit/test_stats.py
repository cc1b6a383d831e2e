import numpy as np
import pytest

from robocurate.stats import RunningStats, merge_all, merge_keyed

REL = 1e-9


def _check(st: RunningStats, data: np.ndarray):
    np.testing.assert_allclose(st.mean, data.mean(axis=0), rtol=REL, atol=0)
    np.testing.assert_allclose(st.std, data.std(axis=0), rtol=REL, atol=0)
    np.testing.assert_array_equal(st.min, data.min(axis=0))
    np.testing.assert_array_equal(st.max, data.max(axis=0))
    np.testing.assert_allclose(st.sum, data.sum(axis=0), rtol=REL)
    np.testing.assert_allclose(st.sum_sq, (data ** 2).sum(axis=0), rtol=REL)
    assert st.count == data.shape[0]


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e8])
def test_merge_matches_numpy_over_concatenation(offset):
    rng = np.random.default_rng(1)
    parts = [offset + rng.normal(size=(int(n), 5)) * rng.uniform(0.01, 3, 5)
             for n in rng.integers(1, 300, 40)]
    merged = merge_all(RunningStats.from_array(p) for p in parts)
    _check(merged, np.concatenate(parts))


def test_large_offset_beats_sum_of_squares():
    rng = np.random.default_rng(2)
    data = 1e9 + rng.normal(size=(20000, 3))
    parts = np.array_split(data, 17)
    merged = merge_all(RunningStats.from_array(p) for p in parts)
    np.testing.assert_allclose(merged.std, data.std(axis=0), rtol=REL)
    # The original tool's formula loses every significant digit here.
    with np.errstate(invalid="ignore"):  # negative "variances" are part of the failure
        naive = np.sqrt(merged.sum_sq / merged.count - (merged.sum / merged.count) ** 2)
    assert not np.allclose(naive, data.std(axis=0), rtol=1e-3)


def test_chain_and_tree_merges_agree_and_state_round_trips():
    rng = np.random.default_rng(3)
    parts = [RunningStats.from_array(rng.normal(5, 2, size=(50, 2))) for _ in range(9)]
    chain = parts[0]
    for p in parts[1:]:
        chain = chain.merge(RunningStats.from_state(p.to_state()))
    tree = merge_all(parts)
    np.testing.assert_allclose(chain.mean, tree.mean, rtol=1e-12)
    np.testing.assert_allclose(chain.m2, tree.m2, rtol=1e-12)


def test_empty_width_vectors_and_keyed_merge():
    st = RunningStats.from_array(np.zeros((4, 0)))
    assert st.summary()["mean"] == [] and st.count == 4
    merged = merge_keyed([{"a": RunningStats.from_array([[1.0]])},
                          {"a": RunningStats.from_array([[3.0]]), "b": st}])
    assert merged["a"].mean.tolist() == [2.0] and merged["b"].count == 4


def test_width_mismatch_is_an_error():
    with pytest.raises(ValueError):
        RunningStats.from_array(np.ones((2, 2))).merge(RunningStats.from_array(np.ones((2, 3))))
