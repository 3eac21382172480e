"""`computility network show`: what a network holds, as a table or JSON."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from computility.domain.devices import default_catalogue
from computility.domain.network import Network
from computility.domain.workload import Workload
from computility.network import load_network
from computility.network.describe import describe
from computility.sim.single import parse_gpu_args, single_network, single_site

network_app = typer.Typer(help="Inspect networks.", no_args_is_help=True)


@network_app.command("show")
def show_command(
    network: Annotated[str, typer.Option(help="default | single | generated:N | PATH")] = (
        "default"
    ),
    cpus: Annotated[int | None, typer.Option(help="Processors of a single site.")] = None,
    gpus: Annotated[
        list[str] | None, typer.Option(help="Accelerator pool TYPE:N of a single site.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of a generated network.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Show the sites, pools, prices and links of a network."""
    net = _single(cpus, gpus or []) if network == "single" else load_network(network, seed=seed)
    data = describe(net)
    if as_json:
        sys.stdout.write(json.dumps(data, allow_nan=False, ensure_ascii=False) + "\n")
        return
    Console(width=None if sys.stdout.isatty() else 140).print(_table(data))


def _single(cpus: int | None, gpus: list[str]) -> Network:
    """The one-site network `computility sim --network single` would build for these sizes."""
    empty = Workload.from_columns("network show", ids=[], submit=[], run=[])
    return single_network(single_site(empty, default_catalogue(), cpus, parse_gpu_args(gpus)))


def _table(data: dict[str, Any]) -> Table:
    totals = data["totals"]
    table = Table(
        title=f"{data['name']}: {totals['sites']} sites, {totals['pools']} pools, "
        f"{totals['cu']:,.0f} CU, {len(data['links'])} links ({data['currency']})",
        title_justify="left",
    )
    for header in ("site", "region", "owner", "pools", "CU", "price/CU-h", "PUE", "kWh price",
                   "kg CO2e/kWh"):
        table.add_column(header, justify="left" if header in ("site", "region", "owner",
                                                              "pools") else "right")
    for site in data["sites"]:
        pools = ", ".join(
            f"{p['device']}×{p['count']}" + (f" ({p['devices_per_node']}/node)"
                                             if p["devices_per_node"] > 1 else "")
            for p in site["pools"]
        )
        prices = sorted({p["price_per_cu_hour"] for p in site["pools"]})
        price = f"{prices[0]:g}" if len(prices) == 1 else f"{prices[0]:g}–{prices[-1]:g}"
        table.add_row(site["id"], site["region"], site["owner"], pools, f"{site['cu']:,.0f}",
                      price, f"{site['pue']:g}", f"{site['electricity_price_per_kwh']:.3f}",
                      f"{site['carbon_kg_per_kwh']:.3f}")
    return table
