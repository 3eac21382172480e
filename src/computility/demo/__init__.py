"""`computility demo`: the whole network working on one machine, in one command.

`network` starts the service and five emulated national clusters; `workload` is the sample of
real tasks; `report` turns what happened into the summary a new user reads.
"""
