"""What travels between users, the service, agents and the SDK: request and record schemas.

Pure pydantic models and parsers; no web framework or database import, so every component can
use them without the server.
"""

from computility.wire.spec import (
    TaskSpec,
    parse_duration_s,
    parse_task_spec,
    task_spec_from_mapping,
)

__all__ = ["TaskSpec", "parse_duration_s", "parse_task_spec", "task_spec_from_mapping"]
