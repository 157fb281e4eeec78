"""autosam_hf.volumes.intensity: CT windows by name or in HU, per-volume percentiles, scaling to uint8."""

import numpy as np
import pytest

from autosam_hf.volumes import CT_WINDOWS, apply_window, parse_window, percentile_window


def test_named_windows_are_level_and_width_and_text_windows_are_low_high():
    assert parse_window("abdomen") == parse_window(" -160,240 ") == (-160.0, 240.0)
    assert parse_window("Lung") == (-1350.0, 150.0)
    assert parse_window("bone") == (-500.0, 1300.0) and parse_window("brain") == (0.0, 80.0)
    assert set(CT_WINDOWS) == {"abdomen", "lung", "bone", "brain"}


@pytest.mark.parametrize("text", ["liver", "-160", "240,-160", "a,b"])
def test_bad_windows_name_the_argument(text):
    with pytest.raises(ValueError, match=f"^--window: {text!r}"):
        parse_window(text, name="--window")


def test_apply_window_maps_low_to_0_high_to_255_and_clips():
    hu = np.array([-1000, -160, 40, 240, 3000], dtype=np.int16)
    np.testing.assert_array_equal(apply_window(hu, (-160, 240)), [0, 0, 128, 255, 255])  # 200/400*255 = 127.5


def test_percentile_window_is_the_volumes_own_0_5_and_99_5_percentiles():
    volume = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    assert percentile_window(volume) == pytest.approx((4.995, 994.005))
    assert apply_window(volume, percentile_window(volume)).max() == 255
    constant = np.full((2, 2, 2), 7.0)
    assert apply_window(constant, percentile_window(constant)).max() == 0
