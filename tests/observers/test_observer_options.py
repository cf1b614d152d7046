"""Every observer: registered by name, options validated (one-line ConfigError), shapes, NaN shown."""

from __future__ import annotations

import math

import pytest
import torch

from quantlens.errors import ConfigError, UnknownNameError
from quantlens.observers import (
    OBSERVERS,
    EntropyObserver,
    MinMaxObserver,
    MovingAverageObserver,
    MseObserver,
    PercentileObserver,
)

ALL = ["max", "moving_average", "percentile", "entropy", "mse"]
PER_CHANNEL = ["max", "moving_average", "percentile", "mse"]


def test_registered_by_name():
    assert OBSERVERS.get("max") is MinMaxObserver
    assert OBSERVERS.get("moving_average") is MovingAverageObserver
    assert OBSERVERS.get("percentile") is PercentileObserver
    assert OBSERVERS.get("entropy") is EntropyObserver
    assert OBSERVERS.get("mse") is MseObserver
    with pytest.raises(UnknownNameError, match="entropy"):
        OBSERVERS.get("entropi")


@pytest.mark.parametrize("name, options, field", [
    ("moving_average", {"momentum": 1.0}, "momentum"),
    ("moving_average", {"momentum": -0.1}, "momentum"),
    ("moving_average", {"momentum": "0.9"}, "momentum"),
    ("percentile", {"percentile": 0}, "percentile"),
    ("percentile", {"percentile": 100.5}, "percentile"),
    ("percentile", {"percentile": True}, "percentile"),
    ("percentile", {"bins": 2.5}, "bins"),
    ("entropy", {"bins": 4}, "bins"),
    ("mse", {"grid": 0}, "grid"),
    ("mse", {"min_ratio": 0.0}, "min_ratio"),
    ("mse", {"min_ratio": 1.5}, "min_ratio"),
    ("mse", {"min_ratio": math.nan}, "min_ratio"),
    ("max", {"momentum": 0.5}, "momentum"),
    ("percentile", {"percentil": 99.0}, "percentil"),
])
def test_bad_option_is_a_one_line_config_error_naming_it(name, options, field):
    with pytest.raises(ConfigError) as err:
        OBSERVERS.get(name)("int8", None, **options)
    assert repr(field) in str(err.value) and "\n" not in str(err.value)


def test_entropy_is_per_tensor_and_searches_need_a_scalar_format():
    with pytest.raises(ConfigError, match="per tensor"):
        EntropyObserver("int8", 0)
    for cls in (EntropyObserver, MseObserver):
        with pytest.raises(ConfigError, match="block format"):
            cls("mxfp4")
        with pytest.raises(ConfigError, match="format"):
            cls(None)


@pytest.mark.parametrize("name", ALL)
def test_per_tensor_range_is_0d_and_within_the_data(name):
    x = torch.randn(8, 3, 5, 5)
    obs = OBSERVERS.get(name)("int8", None)
    assert not obs.calibrated
    for part in x.split(4):
        obs.update(part)
    assert obs.calibrated
    lo, hi = obs.range()
    assert lo.shape == () and hi.shape == ()
    assert lo <= 0 <= hi
    assert 0.5 * x.abs().max() <= torch.maximum(-lo, hi) <= x.abs().max()  # symmetric: (-t, t) is allowed


@pytest.mark.parametrize("name", PER_CHANNEL)
def test_per_channel_range_has_one_entry_per_channel(name):
    x = torch.randn(6, 4, 3, 3) * torch.tensor([0.1, 1.0, 10.0, 100.0]).reshape(1, 4, 1, 1)
    obs = OBSERVERS.get(name)("int8", 1)
    obs.update(x)
    lo, hi = obs.range()
    assert lo.shape == (4,) and hi.shape == (4,)
    amax = x.abs().amax(dim=(0, 2, 3))
    assert torch.all(hi <= amax * (1 + 1e-6)) and torch.all(hi >= 0.1 * amax)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_input_is_not_hidden(name, bad):
    x = torch.randn(1000)
    x[17] = bad
    obs = OBSERVERS.get(name)("int8", None)
    obs.update(torch.randn(1000))
    obs.update(x)
    lo, hi = obs.range()
    assert not (torch.isfinite(lo) and torch.isfinite(hi)), f"{name} hid a {bad} in its range"


def test_nan_stays_in_its_own_channel():
    x = torch.randn(3, 50)
    x[1, 7] = math.nan
    for name in PER_CHANNEL:
        obs = OBSERVERS.get(name)("int8", 0)
        obs.update(x)
        lo, hi = obs.range()
        assert torch.isnan(hi[1]) or torch.isnan(lo[1]), name
        assert torch.isfinite(hi[[0, 2]]).all() and torch.isfinite(lo[[0, 2]]).all(), name


def test_moving_average_follows_the_ema():
    obs = MovingAverageObserver("int8", None, momentum=0.75)
    obs.update(torch.tensor([-1.0, 2.0]))
    obs.update(torch.tensor([-3.0, 6.0]))
    lo, hi = obs.range()
    assert float(lo) == pytest.approx(0.75 * -1 + 0.25 * -3)
    assert float(hi) == pytest.approx(0.75 * 2 + 0.25 * 6)
    per_channel = MovingAverageObserver("int8", 0, momentum=0.0)  # the last batch alone
    per_channel.update(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    per_channel.update(torch.tensor([[-1.0, 0.5], [0.0, 8.0]]))
    lo, hi = per_channel.range()
    assert lo.tolist() == [-1.0, 0.0] and hi.tolist() == [0.5, 8.0]
