"""Where the shared reference data sets live on a developer's or CI's machine.

Benchmarks and the larger checks read real traces and tables that are too big to ship in the
package. They sit in a ``shared/data`` folder beside the repository (CI) or wherever
``$COMPUTILITY_SHARED_DATA`` points.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "COMPUTILITY_SHARED_DATA"
_REPO_ROOT = Path(__file__).resolve().parents[3]


def find_shared_data_dir() -> Path | None:
    """``$COMPUTILITY_SHARED_DATA``, else ``shared/data`` beside the repository, else None."""
    candidates = [Path(p) for p in [os.environ.get(SHARED_DATA_ENV, "")] if p]
    candidates += [
        _REPO_ROOT.parent / "shared" / "data",
        _REPO_ROOT / "shared" / "data",
        Path("/work/shared/data"),
    ]
    return next((c.resolve() for c in candidates if c.is_dir()), None)
