"""Warping the moving image, and refusing to draw a transform that throws it off the frame."""
import numpy as np
import pytest

from retreg.core.warp import placement_problem, warp_moving

SHAPE = (100, 200)


def _shift(dx: float, dy: float = 0.0) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("matrix", [
    np.eye(3), -np.eye(3), _shift(150.0), np.array([[-1.0, 0.0, 199.0], [0, 1, 0], [0, 0, 1]]),
    np.array([[1.0, 0, 0], [0, 1, 0], [0.01, 0, 1]]), np.diag([3.0, 3.0, 1.0]),
])
def test_a_transform_that_lands_the_moving_image_on_the_fixed_frame_is_drawn(matrix):
    assert placement_problem(matrix, SHAPE, SHAPE) is None


@pytest.mark.parametrize("matrix, reason", [
    (_shift(1e12), "only 0% of the moving image lands within the fixed frame"),
    (_shift(185.0, 95.0), "only 1% of"),
    (np.diag([20.0, 20.0, 1.0]), "enlarges the moving image to 400x"),
    (np.array([[1.0, 0, 0], [2, 1e-9, 0], [0, 0, 1]]), "shrinks the moving image"),
    (np.array([[1.0, 0, 0], [0, 1, 0], [-0.01, 0, 1]]), "to infinity"),
    (np.full((3, 3), np.nan), "not a finite 3x3"),
])
def test_a_transform_that_throws_the_moving_image_off_the_frame_is_refused_with_a_reason(
        matrix, reason):
    assert reason in placement_problem(matrix, SHAPE, SHAPE)


def test_a_small_moving_image_inside_a_large_fixed_one_is_drawn():
    assert placement_problem(_shift(500.0, 400.0), (320, 320), (2000, 2000)) is None


def test_warp_keeps_the_fixed_canvas_and_dtype():
    moving = np.full((50, 60, 3), 200, np.uint8)
    out = warp_moving(moving, _shift(10.0), (40, 30))
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    assert out[:, :10].max() == 0 and out[:, 11:].min() == 200
