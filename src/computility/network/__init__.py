"""Network descriptions: the YAML format and its loader, the embedded default, generated networks.

`load_network` is the one entry point for ``--network default|generated:N|PATH``; ``single`` is
built from the workload by the simulator (``computility.sim.single``), so it is refused here.
"""

from __future__ import annotations

from computility.domain.devices import Catalogue
from computility.domain.errors import UsageError
from computility.domain.network import Network
from computility.network.default import default_network
from computility.network.generated import generated_network, parse_generated
from computility.network.loader import FORMAT, load_network_file, parse_network

__all__ = [
    "FORMAT",
    "default_network",
    "generated_network",
    "load_network",
    "load_network_file",
    "parse_network",
]


def load_network(spec: str, seed: int = 0, catalogue: Catalogue | None = None) -> Network:
    """The network that ``--network SPEC`` names: ``default``, ``generated:N`` or a YAML path.

    Args:
        spec: the option's value.
        seed: the seed of a generated network (``--seed``); ignored otherwise.
        catalogue: device catalogue for a file; the default catalogue if None.

    Raises:
        UsageError: ``single`` (built by the simulator from the workload) or a bad ``generated:N``.
        BadInput: a network file that cannot be read or is malformed (one precise line).
    """
    if spec == "default":
        return default_network()
    if spec == "single":
        raise UsageError("--network single is built from the workload by the simulator")
    if spec.startswith("generated:"):
        return generated_network(parse_generated(spec), seed=seed)
    return load_network_file(spec, catalogue)
