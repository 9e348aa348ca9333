"""Diel activity: kernel density of event times on the circle and the overlap of two species' activity, as the R
package ``overlap`` (Meredith & Ridout; Ridout & Linkie 2009) computes them. Pure Python.

* Times are radians of the day: 0 at midnight, 2π at the next one; clock time (the camera's, as the animals'
  records say) or apparent solar time (``solar_radians``: longitude and the equation of time).
* **Density**: a von Mises kernel of concentration ``bw`` around each time, averaged:
  ``f(θ) = Σ exp(bw·cos(θ − θᵢ)) / (2π n I₀(bw))`` (``overlap``'s ``densityFit``).
* **Bandwidth**: Taylor's (2008) plug-in rule as ``overlap``'s ``getBandWidth(kmax = 3)`` applies it: for
  k = 1…3 the concentration κ whose ratio I_k(κ)/I₀(κ) equals the sample's k-th trigonometric moment about its
  mean direction (found in (0.0001, 345)), the largest of them κ̂, then
  ``bw = (3 n κ̂² I₂(2κ̂) / (4 √π I₀(κ̂)²))^(2/5)``; divided by ``adjust`` (the package's default 1 for Δ̂4 and
  plots, 0.8 for Δ̂1).
* **Overlap**: Δ̂1 = Σ min(f̂, ĝ) over 128 grid points of [0, 2π] (the first dropped, each density scaled to sum
  to 1); Δ̂4 = ½ (mean over A's times of min(1, ĝ/f̂) + mean over B's of min(1, f̂/ĝ)), with the densities at
  each observation computed directly up to 140 observations of both species, and above that (``overlapEst``'s
  ``n > 1.1 n.grid``) interpolated linearly between the 128 grid points: linear time instead of quadratic, as the
  package does it. Ridout & Linkie recommend Δ̂1 when the smaller sample has fewer than 75 events, Δ̂4 otherwise
  (``recommended``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

KMAX = 3
KAPPA_RANGE = (0.0001, 345.0)  # overlap's uniroot interval
GRID_POINTS = 128  # overlapEst's n.grid
ADJUST_DHAT1, ADJUST_DHAT4 = 0.8, 1.0
SMALL_SAMPLE = 75  # below this (the smaller sample), Dhat1 is the better estimator
INTERPOLATE_ABOVE = 1.1 * GRID_POINTS  # overlapEst: more observations than this, Dhat4's densities are interpolated


def day_radians(moment: datetime) -> float:
    """A clock time as radians of the day."""
    seconds = moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6
    return 2 * math.pi * seconds / 86400


def equation_of_time_minutes(moment: datetime) -> float:
    """Apparent minus mean solar time, in minutes (NOAA's series in the fractional year; within about a minute)."""
    days = 366 if moment.year % 4 == 0 and (moment.year % 100 != 0 or moment.year % 400 == 0) else 365
    gamma = 2 * math.pi / days * (moment.timetuple().tm_yday - 1 + (moment.hour - 12) / 24)
    return 229.18 * (0.000075 + 0.001868 * math.cos(gamma) - 0.032077 * math.sin(gamma)
                     - 0.014615 * math.cos(2 * gamma) - 0.040849 * math.sin(2 * gamma))


def solar_radians(utc: datetime, longitude: float) -> float:
    """Apparent solar time at ``longitude`` (degrees east) of an aware moment, as radians of the day: noon is when
    the sun is highest, wherever the clock's time zone and summer time put it. Unlike sunrise/sunset anchoring it
    is defined under the polar day and night of the Arctic stations."""
    moment = utc.astimezone(UTC)
    seconds = (moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6
               + longitude * 240 + equation_of_time_minutes(moment) * 60)
    return 2 * math.pi * (seconds % 86400) / 86400


ASYMPTOTIC_FROM = 400.0  # above this, I_v(x) by its large-argument expansion (the series would overflow)


def log_bessel_i(order: int, x: float) -> float:
    """log I_order(x), the modified Bessel function of the first kind, for x > 0: its power series (summed in a
    scale that cannot overflow), or above ``ASYMPTOTIC_FROM`` the large-argument expansion
    e^x / √(2πx) · Σ (−1)^k a_k(v) / x^k (Abramowitz & Stegun 9.7.1), whose terms are then far below 1e-15."""
    if x <= 0:
        raise ValueError("x must be above 0")
    if x > ASYMPTOTIC_FROM:
        mu, term, total = 4 * order * order, 1.0, 1.0
        for k in range(1, 12):
            term *= -(mu - (2 * k - 1) ** 2) / (k * 8 * x)
            total += term
        return x - 0.5 * math.log(2 * math.pi * x) + math.log(total)
    half = x / 2
    log_first = order * math.log(half) - math.lgamma(order + 1)
    term = total = 1.0  # in units of the first term
    m = 0
    while True:
        m += 1
        term *= half * half / (m * (m + order))
        total += term
        if term < total * 1e-17 and m > half:
            return log_first + math.log(total)


def bessel_i(order: int, x: float) -> float:
    """I_order(x) (``log_bessel_i``); overflows, as the function does, above x ≈ 710."""
    return math.exp(log_bessel_i(order, x))


def _moment(times: Sequence[float], k: int) -> float:
    mean = math.atan2(sum(math.sin(t) for t in times), sum(math.cos(t) for t in times))
    s = sum(math.sin(k * (t - mean)) for t in times) / len(times)
    c = sum(math.cos(k * (t - mean)) for t in times) / len(times)
    return math.hypot(s, c)


def _kappa(moment: float, k: int) -> float:
    """κ with I_k(κ)/I₀(κ) = moment in ``KAPPA_RANGE`` by bisection; 0 when the ends do not bracket it."""
    def excess(kappa: float) -> float:
        return math.exp(log_bessel_i(k, kappa) - log_bessel_i(0, kappa)) - moment

    low, high = KAPPA_RANGE
    if excess(low) * excess(high) > 0:
        return 0.0
    for _ in range(200):
        middle = (low + high) / 2
        if excess(low) * excess(middle) <= 0:
            high = middle
        else:
            low = middle
        if high - low < 1e-10:
            break
    return (low + high) / 2


def bandwidth(times: Sequence[float], kmax: int = KMAX) -> float | None:
    """Taylor's bandwidth (module doc); None for fewer than two times or when no κ is found."""
    if len(times) < 2:
        return None
    kappa = max(_kappa(_moment(times, k), k) for k in range(1, kmax + 1))
    if kappa <= 0:
        return None
    return math.exp(0.4 * (math.log(3 * len(times) * kappa**2) + log_bessel_i(2, 2 * kappa)
                           - math.log(4 * math.sqrt(math.pi)) - 2 * log_bessel_i(0, kappa)))


def density(times: Sequence[float], at: Sequence[float], bw: float) -> list[float]:
    """The von Mises kernel density of ``times`` at the points ``at`` (radians), concentration ``bw``."""
    scale = math.exp(bw - log_bessel_i(0, bw)) / (2 * math.pi * len(times))  # kernels as exp(bw·(cos − 1))
    return [scale * sum(math.exp(bw * (math.cos(point - t) - 1)) for t in times) for point in at]


def grid(points: int = GRID_POINTS) -> list[float]:
    """``points`` equally spaced radians from 0 to 2π, both ends included (R's ``seq(0, 2*pi, length=n)``)."""
    return [2 * math.pi * i / (points - 1) for i in range(points)]


@dataclass(frozen=True, slots=True)
class Overlap:
    n_a: int
    n_b: int
    dhat1: float
    dhat4: float

    @property
    def recommended(self) -> str:
        return "dhat1" if min(self.n_a, self.n_b) < SMALL_SAMPLE else "dhat4"

    @property
    def value(self) -> float:
        return self.dhat1 if self.recommended == "dhat1" else self.dhat4


def interpolated(points: Sequence[float], values: Sequence[float], at: Sequence[float]) -> list[float]:
    """R's ``approx(points, values, at)$y`` for equally spaced ``points`` and ``at`` inside them: linear between the
    two points around each value."""
    step = points[1] - points[0]
    found = []
    for x in at:
        i = min(max(int((x - points[0]) / step), 0), len(points) - 2)
        fraction = (x - points[i]) / step
        found.append(values[i] + (values[i + 1] - values[i]) * fraction)
    return found


def overlap(a: Sequence[float], b: Sequence[float], bw_a: float | None = None,
            bw_b: float | None = None) -> Overlap | None:
    """Δ̂1 and Δ̂4 of two samples of times (module doc); None when a bandwidth cannot be estimated. ``bw_a`` and
    ``bw_b``: the samples' bandwidths when already known (``bandwidth``), else estimated here."""
    bw_a = bw_a if bw_a is not None else bandwidth(a)
    bw_b = bw_b if bw_b is not None else bandwidth(b)
    if bw_a is None or bw_b is None:
        return None
    points = grid()
    fa, fb = density(a, points, bw_a / ADJUST_DHAT1)[1:], density(b, points, bw_b / ADJUST_DHAT1)[1:]
    sa, sb = sum(fa), sum(fb)
    dhat1 = sum(min(x / sa, y / sb) for x, y in zip(fa, fb, strict=True))
    both = [*a, *b]
    if len(both) > INTERPOLATE_ABOVE:
        da = interpolated(points, density(a, points, bw_a / ADJUST_DHAT4), both)
        db = interpolated(points, density(b, points, bw_b / ADJUST_DHAT4), both)
    else:
        da, db = density(a, both, bw_a / ADJUST_DHAT4), density(b, both, bw_b / ADJUST_DHAT4)
    n = len(a)
    dhat4 = (sum(min(1.0, db[i] / da[i]) for i in range(n)) / n
             + sum(min(1.0, da[i] / db[i]) for i in range(n, len(both))) / len(b)) / 2
    return Overlap(len(a), len(b), dhat1, dhat4)
