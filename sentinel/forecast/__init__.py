"""Pure, incremental estimation of the time until the kernel's OOM kill. No I/O, no clock."""

from sentinel.forecast.forecaster import Forecaster
from sentinel.forecast.types import Forecast

__all__ = ["Forecast", "Forecaster"]
