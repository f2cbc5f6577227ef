"""The dashboard: server-rendered page shells and their static files, all from the package (no
CDN: it works offline). The pages hold no data; their script reads the ``/stats`` and
``/customers`` endpoints with the key given on the login page (kept in the tab's
``sessionStorage``, sent as ``X-API-Key``), so no cookie is set and no page needs a key to load.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

import jinja2
import plotly
from fastapi import APIRouter, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

import retention

router = APIRouter(include_in_schema=False)

_HERE = Path(__file__).resolve().parents[2] / "dashboard"

#: the pages, in the navigation's order: (name, title)
PAGES: tuple[tuple[str, str], ...] = (
    ("overview", "Overview"),
    ("cohorts", "Cohorts"),
    ("risk", "Risk"),
    ("drivers", "Drivers"),
    ("customers", "Customer lookup"),
    ("plan", "Plan"),
    ("experiments", "Experiments"),
    ("models", "Model health"),
)
_TITLES = dict(PAGES)

#: the static files a page may load: a fixed table, never a path taken from the request
ASSETS: dict[str, tuple[Path, str]] = {
    "dashboard.js": (_HERE / "static" / "dashboard.js", "text/javascript"),
    "dashboard.css": (_HERE / "static" / "dashboard.css", "text/css"),
    "plotly.min.js": (
        Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
        "text/javascript",
    ),
}


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def _page(template: str, page: str, title: str) -> HTMLResponse:
    html = (
        _env()
        .get_template(template)
        .render(page=page, title=title, pages=PAGES, version=retention.__version__)
    )
    return HTMLResponse(html)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard/overview", status_code=307)


@router.get("/dashboard")
@router.get("/dashboard/")
def dashboard_root() -> RedirectResponse:
    return RedirectResponse("/dashboard/overview", status_code=307)


@router.get("/dashboard/login")
def login() -> HTMLResponse:
    return _page("login.html.j2", "login", "Sign in")


@router.get("/dashboard/static/{asset}")
def static(asset: Annotated[str, PathParam(max_length=32)]) -> FileResponse:
    found = ASSETS.get(asset)
    if found is None:
        raise HTTPException(404, "no such dashboard file.")
    path, media = found
    return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=3600"})


@router.get("/dashboard/{page}")
def page(page: Annotated[str, PathParam(max_length=32)]) -> HTMLResponse:
    if page not in _TITLES:
        raise HTTPException(
            404, f"no dashboard page of that name; the pages: {', '.join(_TITLES)}."
        )
    return _page("page.html.j2", page, _TITLES[page])
