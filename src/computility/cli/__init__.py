"""The `computility` command: one module per command group, nothing imports it."""
