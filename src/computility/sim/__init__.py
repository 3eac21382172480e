"""The validation platform: replays workloads against a model of the network with the live scheduler."""
