"""Sites and earnings, for providers (and operators); users may list the sites they can use."""

from __future__ import annotations

from fastapi import APIRouter

from computility.server.api.deps import Caller, Plane, forget
from computility.server.db.retry import retrying
from computility.server.store import billing, sites
from computility.wire.api import Earnings, SiteIn, SiteOut, SiteRegistered

router = APIRouter(prefix="/api/v1", tags=["sites"])


@router.post("/sites", status_code=201, response_model=SiteRegistered)
def register_site(body: SiteIn, who: Caller, plane: Plane) -> SiteRegistered:
    site, key = retrying(sites.register, plane, who, body)
    forget([], site=body.id)  # the site's earlier agent keys are revoked: at once, here
    return SiteRegistered(site=site, agent_key=key)


@router.get("/sites", response_model=list[SiteOut])
def list_sites(who: Caller, plane: Plane) -> list[SiteOut]:
    return sites.list_sites(plane, who)


@router.get("/sites/{site_id}", response_model=SiteOut)
def get_site(site_id: str, who: Caller, plane: Plane) -> SiteOut:
    return sites.get(plane, who, site_id)


@router.get("/earnings", response_model=Earnings)
def earnings(
    who: Caller, plane: Plane, since: float | None = None, until: float | None = None
) -> Earnings:
    return billing.earnings(plane, who, since, until)
