"""The display subset: capped, spread over the whole image, best first inside each region."""
import numpy as np
import pytest

from retreg.core.selection import even_subset


def test_even_subset_keeps_everything_under_the_cap():
    pts = np.random.default_rng(0).uniform(0, 100, (30, 2))
    assert list(even_subset(pts, (100, 100), 30)) == list(range(30))
    assert len(even_subset(np.zeros((0, 2)), (100, 100), 5)) == 0


def test_even_subset_reaches_a_sparse_region_a_dense_cluster_would_hide():
    rng = np.random.default_rng(1)
    cluster = rng.uniform(0, 100, (600, 2))  # dense, high scores, top-left corner
    sparse = rng.uniform(100, 1000, (40, 2))  # spread over the rest, low scores
    pts = np.vstack([cluster, sparse])
    scores = np.r_[np.full(600, 0.9), np.full(40, 0.1)]
    idx = even_subset(pts, (1000, 1000), 150, scores)
    assert len(idx) == 150 and np.all(np.diff(idx) > 0)
    assert np.count_nonzero(idx >= 600) >= 35  # nearly every sparse point, despite its score
    cell = lambda p: set(map(tuple, (p * 12 // 1000).astype(int)))  # noqa: E731  (its grid)
    assert cell(pts[idx]) == cell(pts)  # every occupied region keeps a line


def test_even_subset_prefers_the_best_score_within_a_cell():
    pts = np.array([[10.0, 10.0], [12.0, 11.0], [11.0, 12.0], [90.0, 90.0]])
    idx = even_subset(pts, (100, 100), 2, scores=np.array([0.1, 0.9, 0.5, 0.2]))
    assert list(idx) == [1, 3]


def test_even_subset_is_deterministic_and_rejects_a_zero_cap():
    pts = np.random.default_rng(2).uniform(0, 500, (400, 2))
    assert np.array_equal(even_subset(pts, (500, 300), 50), even_subset(pts, (500, 300), 50))
    with pytest.raises(ValueError):
        even_subset(pts, (500, 300), 0)
