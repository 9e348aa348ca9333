"""shared/activity.py against references built on scipy: the Bessel functions (``scipy.special.ive``), the kernel
density (a mean of ``scipy.stats.vonmises`` densities), and ``overlap``'s bandwidth and Δ̂1/Δ̂4 written out again
with scipy's root finder and Bessel functions, line by line after the R package's getBandWidth and overlapEst."""

from __future__ import annotations

import math
import random
from datetime import datetime

import pytest

from shared.activity import (
    Overlap, bandwidth, day_radians, density, grid, log_bessel_i, overlap,
)

numpy = pytest.importorskip("numpy")
special = pytest.importorskip("scipy.special")
stats = pytest.importorskip("scipy.stats")
optimize = pytest.importorskip("scipy.optimize")


def sample(mean_hour: float, kappa: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.vonmisesvariate(2 * math.pi * mean_hour / 24, kappa) % (2 * math.pi) for _ in range(n)]


FOX = sample(2.0, 2.0, 60, 1)  # nocturnal
HARE = sample(22.0, 1.5, 90, 2)  # crepuscular-nocturnal, overlapping the fox
REINDEER = sample(13.0, 3.0, 120, 3)  # diurnal


def reference_bandwidth(times: list[float], kmax: int = 3) -> float:
    """overlap's getBandWidth with scipy (brentq for uniroot)."""
    mean = math.atan2(sum(map(math.sin, times)), sum(map(math.cos, times)))
    kappas = []
    for k in range(1, kmax + 1):
        moment = math.hypot(sum(math.sin(k * (t - mean)) for t in times) / len(times),
                            sum(math.cos(k * (t - mean)) for t in times) / len(times))
        f = lambda kappa, k=k, moment=moment: special.ive(k, kappa) / special.ive(0, kappa) - moment
        kappas.append(optimize.brentq(f, 0.0001, 345, xtol=1e-12) if f(0.0001) * f(345) <= 0 else 0.0)
    kappa = max(kappas)
    return (3 * len(times) * kappa**2 * special.iv(2, 2 * kappa) / (4 * math.sqrt(math.pi) * special.iv(0, kappa) ** 2)
            ) ** 0.4


def reference_density(times: list[float], at: list[float], bw: float) -> list[float]:
    return [sum(stats.vonmises.pdf(p, bw, loc=t) for t in times) / len(times) for p in at]


def reference_overlap(a: list[float], b: list[float]) -> tuple[float, float]:
    """overlapEst's Dhat1 (adjust 0.8, 128 grid points, the first dropped) and Dhat4 (adjust 1; densities at the
    observations up to 140 observations, above that interpolated from the grid by approx(), here numpy.interp)."""
    bw_a, bw_b = reference_bandwidth(a), reference_bandwidth(b)
    points = [2 * math.pi * i / 127 for i in range(128)]
    fa, fb = reference_density(a, points, bw_a / 0.8)[1:], reference_density(b, points, bw_b / 0.8)[1:]
    dhat1 = sum(min(x / sum(fa), y / sum(fb)) for x, y in zip(fa, fb, strict=True))
    both = a + b
    if len(both) > 128 * 1.1:
        da = list(numpy.interp(both, points, reference_density(a, points, bw_a)))
        db = list(numpy.interp(both, points, reference_density(b, points, bw_b)))
    else:
        da, db = reference_density(a, both, bw_a), reference_density(b, both, bw_b)
    n = len(a)
    dhat4 = (sum(min(1, db[i] / da[i]) for i in range(n)) / n
             + sum(min(1, da[i] / db[i]) for i in range(n, len(both))) / len(b)) / 2
    return dhat1, dhat4


@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("x", [1e-4, 0.3, 2.0, 17.5, 120.0, 399.9, 400.1, 690.0, 5000.0])
def test_log_bessel_i_is_scipys(order: int, x: float) -> None:
    assert log_bessel_i(order, x) == pytest.approx(math.log(special.ive(order, x)) + x, rel=1e-13, abs=1e-13)


def test_the_kernel_density_is_a_mean_of_von_mises_densities() -> None:
    points = grid(25)
    for bw in (0.5, 11.7, 300.0, 2000.0):  # up to concentrations whose exp(bw) overflows
        if bw < 700:
            assert density(FOX, points, bw) == pytest.approx(reference_density(FOX, points, bw), rel=1e-11)
        fine = grid(4001)[1:]  # a density: it integrates to 1 over the day
        assert sum(density(FOX, fine, bw)) * 2 * math.pi / 4000 == pytest.approx(1.0, rel=1e-6)


def test_the_bandwidth_is_overlaps() -> None:
    for times in (FOX, HARE, REINDEER, FOX[:5]):
        assert bandwidth(times) == pytest.approx(reference_bandwidth(times), rel=1e-8)
    assert bandwidth([1.0]) is None


def test_overlap_is_overlaps_dhat1_and_dhat4() -> None:
    # 150, 180 and 210 observations (densities interpolated from the grid) and 70 (computed at each observation)
    for a, b in ((FOX, HARE), (FOX, REINDEER), (HARE, REINDEER), (FOX[:40], HARE[:30])):
        found = overlap(a, b)
        dhat1, dhat4 = reference_overlap(a, b)
        assert (found.dhat1, found.dhat4) == (pytest.approx(dhat1, rel=1e-9), pytest.approx(dhat4, rel=1e-9))
    assert overlap(FOX, HARE).value > 2 * overlap(FOX, REINDEER).value  # night animals share more of the night
    assert overlap(FOX, FOX).dhat4 == pytest.approx(1.0)


def test_the_recommended_estimator_follows_the_smaller_sample() -> None:
    assert Overlap(60, 90, 0.5, 0.6).recommended == "dhat1"
    assert Overlap(75, 90, 0.5, 0.6).recommended == "dhat4" and Overlap(75, 90, 0.5, 0.6).value == 0.6


def test_apparent_solar_time_adds_longitude_and_the_equation_of_time() -> None:
    from datetime import UTC, timedelta, timezone

    from shared.activity import equation_of_time_minutes, solar_radians

    assert equation_of_time_minutes(datetime(2023, 11, 3, 12)) == pytest.approx(16.4, abs=0.3)  # its yearly maximum
    assert equation_of_time_minutes(datetime(2023, 2, 11, 12)) == pytest.approx(-14.2, abs=0.3)  # its minimum
    noon = datetime(2023, 11, 3, 12, tzinfo=UTC)
    minutes = solar_radians(noon, 0.0) * 24 * 60 / (2 * math.pi)
    assert minutes == pytest.approx(12 * 60 + 16.4, abs=0.3)
    oslo_summer = datetime(2023, 11, 3, 14, tzinfo=timezone(timedelta(hours=2)))  # the same moment, another zone
    assert solar_radians(oslo_summer, 0.0) == pytest.approx(solar_radians(noon, 0.0))
    assert solar_radians(noon, 30.0) == pytest.approx(solar_radians(noon, 0.0) + 2 * math.pi * 2 / 24)  # 4 min/°
    assert 0 <= solar_radians(datetime(2023, 6, 1, 23, 30, tzinfo=UTC), 29.5) < 2 * math.pi  # wraps past midnight


def test_day_radians() -> None:
    assert day_radians(datetime(2023, 6, 1, 0, 0)) == 0.0
    assert day_radians(datetime(2023, 6, 1, 18, 0)) == pytest.approx(3 * math.pi / 2)


def test_known_bandwidths_are_used_as_given() -> None:
    assert overlap(FOX, HARE, bandwidth(FOX), bandwidth(HARE)) == overlap(FOX, HARE)
    assert overlap(FOX, HARE, 2 * bandwidth(FOX), bandwidth(HARE)) != overlap(FOX, HARE)


def test_large_samples_cost_linear_time() -> None:
    # 20,000 events of each species: at-observation densities would take 1.6 billion kernel evaluations
    fox, hare = sample(2.0, 2.0, 20_000, 4), sample(22.0, 1.5, 20_000, 5)

    found = overlap(fox, hare, bandwidth(fox), bandwidth(hare))

    assert found is not None and 0 < found.dhat4 < 1 and found.recommended == "dhat4"
