"""Reads and writes of the control plane's state, one module per aggregate."""
