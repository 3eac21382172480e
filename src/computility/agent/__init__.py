"""The site agent: what a provider runs to join a machine or a cluster to the network.

It speaks only the control plane's HTTP protocol (`computility.wire`), never its database, and
runs tasks through an execution backend (`computility.agent.backends`).
"""
