"""Read a network YAML file (format in ``docs/network.md``) into a checked `Network`.

Every check happens here, against the file's own lines, so that a mistake is reported as
``PATH:LINE: field WHERE (NAME): expected ..., got '...'`` and never surfaces later as a
traceback or a silently wrong price. Money in the file is decimal currency (``0.35``), stored as
micro-units; curves are a single number (flat) or a list of 24 or 8760 hourly values.
"""

from __future__ import annotations

from pathlib import Path

from computility.domain.devices import Catalogue, DeviceType, default_catalogue
from computility.domain.errors import BadInput, FieldError, UnknownDeviceType
from computility.domain.money import DEFAULT_CURRENCY, to_micro
from computility.domain.network import Dataset, DemandLocation, Link, Network, Region
from computility.domain.site import CURVE_LENGTHS, Pool, Site
from computility.domain.units import parse_size_gb
from computility.network._nodes import Fields, Node, compose

_TOP_REQUIRED = ("regions", "sites", "links")
_TOP_OPTIONAL = (
    "format", "name", "currency", "utc_offset_minutes", "intra_region", "datasets", "demand",
    "notes",
)  # fmt: skip
FORMAT = "computility-network/1"


def load_network_file(path: str | Path, catalogue: Catalogue | None = None) -> Network:
    """The network described by the YAML file at `path`.

    Raises:
        BadInput: the file cannot be read, or a precise ``PATH:LINE: field ...`` message for the
            first problem in it.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput(f"{path}: cannot read network file: {error}") from None
    return parse_network(text, source=str(path), catalogue=catalogue)


def parse_network(
    text: str, source: str = "network.yaml", catalogue: Catalogue | None = None
) -> Network:
    """The network described by YAML `text`; `source` names it in messages and is its default name.

    Raises:
        BadInput: the first problem, located to its line and field (or nesting too deep).
    """
    devices = catalogue if catalogue is not None else default_catalogue()
    try:
        return _parse(text, source, devices)
    except ValueError as error:
        # The value types check themselves too; anything they catch that the located checks
        # above missed still reaches the user as one line, never a traceback.
        raise BadInput(f"{source}: {error}") from None
    except RecursionError:
        # The YAML composer recurses per level of nesting; no network file is nested this deep.
        raise BadInput(f"{source}: lists or mappings nested too deeply to be a network") from None


def _parse(text: str, source: str, devices: Catalogue) -> Network:
    top = compose(text, source).fields(_TOP_REQUIRED, _TOP_OPTIONAL)
    if (fmt := top.get("format")) is not None and fmt.text() != FORMAT:
        raise fmt.fail(f"'{FORMAT}'")
    regions = _regions(top["regions"])
    region_ids = {region.id: region for region in regions}
    sites = _sites(top["sites"], region_ids, devices)
    site_ids = {site.id for site in sites}
    intra = _intra(top.get("intra_region"))
    demand_node = top.get("demand")
    datasets_node = top.get("datasets")
    return Network(
        name=top["name"].text() if top.get("name") else source,
        regions=regions,
        sites=sites,
        links=_links(top["links"], region_ids),
        datasets=_datasets(datasets_node, site_ids) if datasets_node else (),
        demand=_demand(demand_node, region_ids) if demand_node else (),
        currency=top["currency"].text() if top.get("currency") else DEFAULT_CURRENCY,
        utc_offset_minutes=_offset(top.get("utc_offset_minutes")),
        intra_region_latency_ms=intra[0],
        intra_region_bandwidth_gbps=intra[1],
    )


def _unique_id(entry: Fields, seen: dict[str, int], what: str) -> str:
    node = entry["id"]
    ident = node.text()
    if ident in seen:
        raise node.fail(f"a {what} id not used before (line {seen[ident]} has it)")
    seen[ident] = node.line
    return ident


def _regions(node: Node) -> tuple[Region, ...]:
    seen: dict[str, int] = {}
    regions = []
    for item in node.items():
        f = item.fields(("id", "lat", "lon"), ("name",))
        ident = _unique_id(f, seen, "region")
        name = f["name"].text() if f.get("name") else ident
        lat, lon = _lat_lon(f)
        regions.append(Region(ident, name, lat, lon))
    if not regions:
        raise node.fail("at least one region")
    return tuple(regions)


def _lat_lon(f: Fields) -> tuple[float, float]:
    lat = f["lat"].number(what="a latitude, degrees in [-90, 90]")
    lon = f["lon"].number(what="a longitude, degrees in [-180, 180]")
    if abs(lat) > 90:
        raise f["lat"].fail("a latitude, degrees in [-90, 90]")
    if abs(lon) > 180:
        raise f["lon"].fail("a longitude, degrees in [-180, 180]")
    return lat, lon


_SITE_REQUIRED = ("id", "region", "owner", "pue", "electricity_price_per_kwh", "carbon_kg_per_kwh",
                  "pools")  # fmt: skip


def _sites(node: Node, regions: dict[str, Region], catalogue: Catalogue) -> tuple[Site, ...]:
    seen: dict[str, int] = {}
    sites = []
    for item in node.items():
        f = item.fields(_SITE_REQUIRED, ("lat", "lon", "name"))
        ident = _unique_id(f, seen, "site")
        region_id = f["region"].text()
        if region_id not in regions:
            raise f["region"].fail(f"a region id from 'regions' ({', '.join(regions)})")
        region = regions[region_id]
        lat = f["lat"].number(what="a latitude") if f.get("lat") else region.lat
        lon = f["lon"].number(what="a longitude") if f.get("lon") else region.lon
        prices = _curve(f["electricity_price_per_kwh"], "currency per kWh")
        price_curve = tuple(to_micro(v) for v in prices)
        carbon = _curve(f["carbon_kg_per_kwh"], "kg CO2e per kWh")
        sites.append(
            Site(
                id=ident,
                region=region_id,
                owner=f["owner"].text(),
                pools=_pools(f["pools"], catalogue),
                pue=f["pue"].number(1.0, "a PUE, a number >= 1"),
                electricity_price_per_kwh=round(sum(price_curve) / len(price_curve)),
                carbon_kg_per_kwh=sum(carbon) / len(carbon),
                lat=lat,
                lon=lon,
                electricity_price_curve=price_curve,
                carbon_curve=carbon,
            )
        )
    if not sites:
        raise node.fail("at least one site")
    return tuple(sites)


def _curve(node: Node, unit: str) -> tuple[float, ...]:
    """A flat number (24 equal hours) or a list of 24 or 8760 non-negative hourly values."""
    expected = f"a number >= 0 or a list of 24 or 8760 of them ({unit})"
    if node.shown() != "a list":
        return (node.number(0.0, expected),) * CURVE_LENGTHS[0]
    items = node.items()
    if len(items) not in CURVE_LENGTHS:
        raise FieldError(
            node.source, node.line, node.label, node.key,
            f"24 or 8760 hourly values ({unit})", f"{len(items)} values",
        )  # fmt: skip
    return tuple(item.number(0.0, f"a number >= 0 ({unit})") for item in items)


def _pools(node: Node, catalogue: Catalogue) -> tuple[Pool, ...]:
    seen: dict[str, int] = {}
    pools = []
    for item in node.items():
        f = item.fields(("id", "device", "count", "price_per_cu_hour"), ("devices_per_node",))
        ident = _unique_id(f, seen, "pool")
        device = _device(f["device"], catalogue)
        count = f["count"].integer(1, "a whole number of devices (cores for a CPU) >= 1")
        per_node = 1
        if (shape := f.get("devices_per_node")) is not None:
            per_node = shape.integer(1, "a whole number >= 1")
            if count % per_node:
                raise shape.fail(f"a divisor of count {count} (whole nodes)")
        price = f["price_per_cu_hour"].number(0.0, "a price >= 0 (currency per CU-hour)")
        pools.append(Pool(ident, device, count, to_micro(price), per_node))
    if not pools:
        raise node.fail("at least one pool")
    return tuple(pools)


def _device(node: Node, catalogue: Catalogue) -> DeviceType:
    name = node.text()
    try:
        return catalogue.get(name)
    except UnknownDeviceType:
        known = ", ".join(catalogue.ids[:8])
        raise node.fail(f"a device id from the catalogue ({known}, ...)") from None


def _links(node: Node, regions: dict[str, Region]) -> tuple[Link, ...]:
    """Links as given; ``both_ways: true`` (the default) also adds the reverse direction."""
    links: dict[tuple[str, str], tuple[Link, int]] = {}
    for item in node.items():
        f = item.fields(
            ("from", "to", "latency_ms", "bandwidth_gbps", "egress_per_gb"), ("both_ways",)
        )
        ends = []
        for key in ("from", "to"):
            region = f[key].text()
            if region not in regions:
                raise f[key].fail(f"a region id from 'regions' ({', '.join(regions)})")
            ends.append(region)
        src, dst = ends
        if src == dst:
            raise f["to"].fail(f"a region other than '{src}' (inside a region see intra_region)")
        latency = f["latency_ms"].number(0.0, "a one-way latency >= 0, ms")
        bandwidth = f["bandwidth_gbps"].number(1e-9, "a bandwidth > 0, Gbit/s")
        egress = to_micro(f["egress_per_gb"].number(0.0, "a price >= 0 (currency per GB)"))
        both = True
        if (flag := f.get("both_ways")) is not None:
            value = flag.value()
            if not isinstance(value, bool):
                raise flag.fail("true or false")
            both = value
        pairs = [(src, dst), (dst, src)] if both else [(src, dst)]
        for a, b in pairs:
            if (a, b) in links:
                raise item.fail(f"one link {a}->{b} (line {links[(a, b)][1]} already has it)")
            links[(a, b)] = (Link(a, b, latency, bandwidth, egress), item.line)
    for a in regions:
        for b in regions:
            if a != b and (a, b) not in links:
                raise node.fail(f"a link between every pair of regions (none from {a} to {b})")
    return tuple(link for link, _ in links.values())


def _datasets(node: Node, sites: set[str]) -> tuple[Dataset, ...]:
    seen: dict[str, int] = {}
    datasets = []
    for item in node.items():
        f = item.fields(("id", "size", "sites"))
        ident = _unique_id(f, seen, "dataset")
        size = f["size"].parsed(parse_size_gb)
        holders = []
        for site_node in f["sites"].items():
            site = site_node.text()
            if site not in sites:
                raise site_node.fail(f"a site id from 'sites' ({', '.join(sorted(sites))})")
            holders.append(site)
        if not holders:
            raise f["sites"].fail("at least one site holding the data")
        datasets.append(Dataset(ident, size, tuple(holders)))
    return tuple(datasets)


def _demand(node: Node, regions: dict[str, Region]) -> tuple[DemandLocation, ...]:
    seen: dict[str, int] = {}
    locations = []
    for item in node.items():
        f = item.fields(("id", "lat", "lon", "latency_ms"), ("name",))
        ident = _unique_id(f, seen, "demand location")
        lat, lon = _lat_lon(f)
        latency: dict[str, float] = {}
        for region, value in f["latency_ms"].entries():
            if region not in regions:
                raise value.fail(f"latency to a region id from 'regions' (no region '{region}')")
            latency[region] = value.number(0.0, "a one-way latency >= 0, ms")
        missing = [r for r in regions if r not in latency]
        if missing:
            raise f["latency_ms"].fail(f"a latency to every region (missing {', '.join(missing)})")
        name = f["name"].text() if f.get("name") else ident
        locations.append(DemandLocation(ident, name, lat, lon, latency))
    return tuple(locations)


def _intra(node: Node | None) -> tuple[float, float]:
    if node is None:
        return 1.0, 400.0
    f = node.fields((), ("latency_ms", "bandwidth_gbps"))
    latency = f["latency_ms"].number(0.0, "a latency >= 0, ms") if f.get("latency_ms") else 1.0
    bw = f.get("bandwidth_gbps")
    return latency, bw.number(1e-9, "a bandwidth > 0, Gbit/s") if bw else 400.0


def _offset(node: Node | None) -> int:
    if node is None:
        return 8 * 60
    value = node.value()
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 14 * 60:
        raise node.fail("whole minutes east of UTC, between -840 and 840 (480 for UTC+8)")
    return value
