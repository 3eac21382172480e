"""Pure value types of the compute network: devices, compute units, pools, workloads, errors."""
