"""The embedded default network: the ten national clusters and eight demand cities.

The YAML ships inside the package (``computility/data/network-default.yaml``) and is produced by
``scripts/build_default_network.py`` from the shared data, so the baked facts can be rebuilt
and checked; what the package reads is the committed file, never the shared data.
"""

from __future__ import annotations

import functools
from importlib import resources

from computility.domain.network import Network
from computility.network.loader import parse_network

DEFAULT_SOURCE = "computility/data/network-default.yaml"


@functools.lru_cache(maxsize=1)
def default_network() -> Network:
    """The embedded default network, parsed once per process (it is immutable)."""
    text = (resources.files("computility") / "data" / "network-default.yaml").read_text(
        encoding="utf-8"
    )
    return parse_network(text, source=DEFAULT_SOURCE)
