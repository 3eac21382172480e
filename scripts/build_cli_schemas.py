"""Write the JSON Schemas of the service commands' ``--json`` outputs into ``schemas/cli/``.

Each schema is generated from the pydantic reply models of ``computility.wire.api`` (the very
models the CLI prints), wrapped as the command prints them, so a changed model changes its schema
here and a test (``tests/cli/test_cli_schemas.py``) fails until the files are written again:

    .venv/bin/python scripts/build_cli_schemas.py            # write schemas/cli/*.schema.json
    .venv/bin/python scripts/build_cli_schemas.py --check    # exit 1 if a file is out of date

The schemas describe what the CLI prints: every field of a model is always present (``null``
where it has no value), so every field is required. Fields may be added over time (see
CONTRACT.md), so objects do not forbid other properties. ``sim-report`` and ``network-show`` are
written by hand and are not touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from computility.wire.api import (
    BACKENDS,
    ROLES,
    TASK_STATES,
    AttemptOut,
    Explanation,
    KeyInfo,
    KeyList,
    KeyRotated,
    Quote,
    SiteOut,
    TaskOut,
    Usage,
)

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "schemas" / "cli"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
Schema = dict[str, Any]

MONEY = "a decimal amount of the network's currency (`currency`)"
TIME = "UNIX time in seconds (UTC)"
NULL_WHILE = "null while it has none"
# What a field means, for every model that has it...
COMMON: dict[str, str] = {
    "submitted_at": TIME, "updated_at": TIME, "finished_at": f"{TIME}; null until it ends",
    "last_seen_at": f"{TIME} of the last heartbeat; null before the first",
    "since": f"{TIME}: start of the window", "until": f"{TIME}: end of the window",
    "currency": "ISO 4217 code of the network's currency (default CNY)",
    "run_s": "expected run time in seconds", "timeout_s": "the task's timeout in seconds",
    "transfer_s": "seconds to move the task's dataset here (0 where it is already here)",
    "moved_gb": "GB (10^9 bytes) of the task's dataset moved here",
    "carbon_kg": "kg CO2e", "energy_kwh": "kWh", "kwh": "kWh",
    "cu_hours": "standard compute unit hours (1 CU = 1 TFLOPS dense FP32 peak)",
    "device_hours": "raw device-hours", "gb_moved": "GB (10^9 bytes) moved between sites",
}
# ... and what it means in one model (where the same name means something else elsewhere).
NOTES: dict[str, dict[str, str]] = {
    "TaskOut": {
        "id": "the task's id", "name": "the spec's name, or null",
        "tenant": "the tenant that submitted it", "state": "the task's state",
        "reason": "why the task is in its state (held, failed, cancelled, ...), or null",
        "policy": "the placement policy", "site": f"the site it was placed on; {NULL_WHILE}",
        "pool": f"the pool of that site; {NULL_WHILE}",
        "exit_code": "the exit code of its last attempt, or null",
        "signal": "the signal that killed its last attempt, or null",
        "attempts": "attempts so far", "retries": "user-failure retries allowed",
        "user_failures": "attempts that failed by the task's doing (non-zero exit)",
        "infra_failures": "attempts the infrastructure lost (re-placed at no charge)",
        "quote_max": f"the quote's maximum for the whole task, {MONEY}",
        "cost": f"what the task has cost so far, {MONEY}",
        "spec": "the task spec as submitted (see CONTRACT.md), or null",
    },
    "Explanation": {
        "task": "the task's id", "state": "the task's state",
        "reason": "why it waits or why it ended as it did, or null",
        "site": f"the site it was placed on; {NULL_WHILE}",
        "pool": f"the pool of that site; {NULL_WHILE}", "policy": "the placement policy",
        "candidates": "every pool that could hold the task, best first",
    },
    "Quote": {
        "candidates": "every pool that could hold the task, best first",
        "max_price": f"the lowest maximum over the candidates, {MONEY}; null without any",
        "reason": "why no site can run the task, or null",
    },
    "Candidate": {
        "site": "the site", "pool": "the pool of that site",
        "device": "catalogue id of the pool's device", "region": "the site's region",
        "price": f"expected price of the whole task there (egress included), {MONEY}",
        "max_price": f"the most the task can cost there (run to its timeout), {MONEY}",
        "free_now": "whether the pool has room for it now",
        "score": "the policy's score (lower is better), or null where it was not scored",
        "chosen": "whether the task was placed here",
    },
    "SiteOut": {
        "id": "the site's id", "owner": "the tenant that owns the site",
        "region": "the site's region", "backend": "how the site runs tasks",
        "online": "whether its agent is heartbeating", "pools": "its pools of devices",
        "tenants": "the tenants allowed to use it, or null for every tenant",
        "datasets": "the datasets it holds a full copy of",
    },
    "PoolOut": {
        "id": "the pool's id within its site", "device": "catalogue id of its device",
        "count": "devices in the pool", "devices_per_node": "devices per node",
        "price_per_cu_hour": f"price of one CU-hour, {MONEY}", "free": "devices free now",
    },
    "DatasetOut": {"id": "the dataset's name", "size_gb": "its size in GB (10^9 bytes)"},
    "Usage": {
        "tenant": "the tenant billed", "attempts": "attempts billed in the window",
        "compute": f"compute charges, {MONEY}", "energy": f"energy charges, {MONEY}",
        "network": f"data egress charges, {MONEY}", "total": f"the bill, {MONEY}",
        "budget": f"the tenant's budget per month, {MONEY}; null without one",
        "budget_left": f"what is left of it this month, {MONEY}; null without one",
    },
    "KeyInfo": {
        "id": "the key's id (a key reads cu_<id>_<secret>)", "tenant": "the key's tenant",
        "user": "the user it acts as; null for a site agent's key", "role": "what it may do",
        "site": "the site whose agent holds it; null for other keys",
        "created_at": f"{TIME} it was made",
        "revoked_at": f"{TIME} it stops or stopped working (in the future during a "
                      f"rotation's grace period); null while it is live",
    },
    "KeyList": {"keys": "the keys, newest first",
                "truncated": "whether there were more keys than listed"},
    "KeyRotated": {
        "id": "the new key's id", "tenant": "its tenant", "user": "the user it acts as, or null",
        "role": "what it may do", "site": "the site whose agent it is for, or null",
        "key": "the new key itself, shown only this once", "replaces": "the key it replaces",
    },
}
ENUMS: dict[str, dict[str, tuple[str, ...]]] = {
    "TaskOut": {"state": TASK_STATES}, "Explanation": {"state": TASK_STATES},
    "SiteOut": {"backend": BACKENDS},
    "KeyInfo": {"role": (*ROLES, "agent")}, "KeyRotated": {"role": (*ROLES, "agent")},
}


def _clean(node: Any) -> Any:
    """Drop pydantic's generated titles and defaults (every field is always printed, so a
    default says nothing) and require every property of a model."""
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {"type": node["type"]} if isinstance(node.get("type"), str) else {}
    for key, value in node.items():
        if key in ("title", "default") or key in out:
            continue
        if key in ("properties", "$defs"):  # their keys are names, not keywords
            out[key] = {name: _clean(sub) for name, sub in value.items()}
        else:
            out[key] = _clean(value)
    if "properties" in out:
        out["required"] = list(out["properties"])
    return out


def annotate(schema: Schema, model_name: str) -> Schema:
    """Say what each property of one model's schema means, and list a string's allowed values."""
    notes = {**COMMON, **NOTES.get(model_name, {})}
    enums = ENUMS.get(model_name, {})
    properties: Schema = {}
    for name, sub in schema["properties"].items():
        if name in notes:
            sub = {"description": notes[name][0].upper() + notes[name][1:] + ".", **sub}
        if name in enums:
            sub = {**sub, "enum": list(enums[name])}
        properties[name] = sub
    return {**schema, "properties": properties}


def ref(model_type: type[BaseModel], defs: Schema) -> Schema:
    """A `$ref` to the model's serialization schema, which is added to `defs` (with the
    models it refers to)."""
    schema = model_type.model_json_schema(mode="serialization",
                                          ref_template="#/$defs/{model}")
    for name, nested in schema.pop("$defs", {}).items():
        defs[name] = _clean(annotate(nested, name))
    defs[model_type.__name__] = _clean(annotate(schema, model_type.__name__))
    return {"$ref": f"#/$defs/{model_type.__name__}"}


def one(model_type: type[BaseModel]) -> tuple[Schema, Schema]:
    """The model itself."""
    defs: Schema = {}
    ref(model_type, defs)
    return defs.pop(model_type.__name__), defs


def listing(key: str, model_type: type[BaseModel], defs: Schema) -> Schema:
    """``{key: [model, ...]}``."""
    return {"type": "object",
            "properties": {key: {"type": "array", "items": ref(model_type, defs)}},
            "required": [key]}


def listed(key: str, model_type: type[BaseModel]) -> tuple[Schema, Schema]:
    defs: Schema = {}
    return listing(key, model_type, defs), defs


def status() -> tuple[Schema, Schema]:
    """``status ID`` prints one task; ``status`` prints ``{"tasks": [...]}``."""
    defs: Schema = {}
    return {"oneOf": [ref(TaskOut, defs), listing("tasks", TaskOut, defs)]}, defs


LOGS: Schema = {
    "type": "object",
    "properties": {
        "task": {"type": "integer", "description": "The task's id."},
        "state": {"type": "string", "description": "The task's state.",
                  "enum": list(TASK_STATES)},
        "stdout": {"type": "string", "description": "The task's stdout, decoded as UTF-8 (bad "
                   "bytes replaced). Absent with --stream stderr."},
        "stderr": {"type": "string", "description": "The task's stderr, decoded as UTF-8 (bad "
                   "bytes replaced). Absent with --stream stdout."},
    },
    "required": ["task", "state"],
}


def demo() -> tuple[Schema, Schema]:
    """``demo --json``: each task's record with why it ran there, and each tenant's bill."""
    defs: Schema = {}
    extra: Schema = {
        "type": "object",
        "properties": {
            "shows": {"type": "string", "description": "What the task demonstrates."},
            "why": {"type": "string", "description": "One line on why it ran where it did."},
            "explain": ref(Explanation, defs),
            "attempt_records": {"type": "array", "items": ref(AttemptOut, defs),
                                "description": "Each attempt, first to last."},
        },
        "required": ["shows", "why", "explain", "attempt_records"],
    }
    body: Schema = {
        "type": "object",
        "properties": {
            "server": {"type": "string", "description": "The demo service's URL."},
            "dashboard": {"type": "string",
                          "description": "The dashboard's address (sign in with an API key)."},
            "wall_s": {"type": "number", "description": "Seconds from start to summary."},
            "bills": {"type": "array", "items": ref(Usage, defs)},
            "tasks": {"type": "array", "items": {"allOf": [ref(TaskOut, defs), extra]}},
        },
        "required": ["server", "dashboard", "wall_s", "bills", "tasks"],
    }
    return body, defs


COMMANDS: dict[str, tuple[str, str, Callable[[], tuple[Schema, Schema]]]] = {
    "status": ("computility status [ID] --json",
               "One task (with ID) or the recent tasks (without).", status),
    "submit": ("computility submit FILE... --json",
               "The submitted tasks, as they were when submitted (or ended, with --wait).",
               lambda: listed("tasks", TaskOut)),
    "cancel": ("computility cancel ID... --json",
               "The tasks after the cancel request; a running one ends cancelled once its "
               "site has stopped it.", lambda: listed("tasks", TaskOut)),
    "logs": ("computility logs ID --json", "A task's logs so far.", lambda: (LOGS, {})),
    "sites": ("computility sites --json", "The sites of the network and their pools.",
              lambda: listed("sites", SiteOut)),
    "quote": ("computility quote FILE --json",
              "Price, run time and carbon of a task spec at every candidate site.",
              lambda: one(Quote)),
    "explain": ("computility explain ID --json",
                "Why a task runs where it runs, or why it waits: every candidate, scored.",
                lambda: one(Explanation)),
    "usage": ("computility usage [--period P] --json",
              "The tenant's metered use and bill over the period.", lambda: one(Usage)),
    "demo": ("computility demo --json",
             "The demo's summary: where each sample task ran and why, and each tenant's bill.",
             demo),
    "keys-list": ("computility keys list --json",
                  "The keys the caller may manage; never a secret.", lambda: one(KeyList)),
    "keys-revoke": ("computility keys revoke KEY_ID --json", "The key, revoked.",
                    lambda: one(KeyInfo)),
    "keys-rotate": ("computility keys rotate KEY_ID --json",
                    "The new key (its secret shown this once) and the key it replaces.",
                    lambda: one(KeyRotated)),
}


def schema_for(command: str) -> Schema:
    """The whole schema of one command's output."""
    title, description, build = COMMANDS[command]
    body, defs = build()
    document: Schema = {"$schema": DRAFT, "$id": f"computility/cli/{command}.schema.json",
                        "title": title, "description": description, **body}
    if defs:
        document["$defs"] = dict(sorted(defs.items()))
    return document


def render(schema: Schema) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def build() -> dict[str, str]:
    """File name → text of every generated schema."""
    return {f"{command}.schema.json": render(schema_for(command)) for command in COMMANDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true",
                        help="Write nothing; exit 1 if a committed schema differs.")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="Directory (schemas/cli).")
    args = parser.parse_args(argv)
    stale = []
    for name, text in build().items():
        path = args.out / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if args.check:
            stale.append(name)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}", file=sys.stderr)
    if stale:
        print(f"out of date in {args.out}: {', '.join(stale)} (run "
              f"scripts/build_cli_schemas.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
