"""Distances and the national topology's latency model, shared by default and generated networks.

CAICT measured optical one-way latency between cluster cities; great-circle distance times a route
factor of 1.8 at 5 microseconds per km of fibre reproduces it (mean 9.8 ms over the cluster
pairs, against 9.7 measured). An IP private network adds about 5 ms, the public internet about 7
(``shared/data/national_topology/clusters.json``, ``latency_model``).
"""

from __future__ import annotations

import math
from typing import Final

EARTH_RADIUS_KM: Final = 6371.0
FIBRE_US_PER_KM: Final = 5.0
ROUTE_FACTOR: Final = 1.8
IP_PRIVATE_EXTRA_MS: Final = 5.0
PUBLIC_INTERNET_EXTRA_MS: Final = 7.0


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance between two points in degrees, km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def optical_latency_ms(km: float) -> float:
    """One-way latency over fibre along a typical route, ms (no routing equipment)."""
    return km * ROUTE_FACTOR * FIBRE_US_PER_KM / 1000.0


def latency_ms(km: float, extra_ms: float = IP_PRIVATE_EXTRA_MS) -> float:
    """One-way latency of a network path: the optical part plus the network's fixed extra, ms."""
    return optical_latency_ms(km) + extra_ms
