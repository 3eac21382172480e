"""Computility: compute offered as a utility across heterogeneous, differently-owned sites."""

__version__ = "0.1.0"
