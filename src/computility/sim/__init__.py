"""The validation platform: replays workloads on a model of the network with the live scheduler."""
