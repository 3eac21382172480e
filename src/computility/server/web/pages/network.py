"""The network page: every site the viewer may see (a first version; see the site map)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from computility.server.store.sites import list_sites
from computility.server.web.render import page
from computility.server.web.session import Viewer, viewer

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def network(request: Request, who: Annotated[Viewer, Depends(viewer)]) -> HTMLResponse:
    sites = await run_in_threadpool(list_sites, request.app.state.plane, who.who)
    return page(request, "network.html", {"who": who, "sites": sites})
