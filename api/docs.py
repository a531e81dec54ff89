"""The documentation pages, served whole by this process: Swagger UI at ``/docs`` (with its
OAuth2 redirect page) and ReDoc at ``/redoc``.

Rules:

1. **Nothing from another origin.** FastAPI's own pages load Swagger UI and ReDoc from a CDN
   (and ReDoc's fonts from Google), which a trading host without internet cannot reach: the
   pages stay blank. Here the JavaScript, CSS and favicon are the files the ``fastapi-offline``
   package ships (only its assets are used, not its app factory), mounted under
   ``/static/docs``; ReDoc uses the system fonts. The pages' Content-Security-Policy
   (``api.security`` rule 2) allows this origin only, so a page that reached elsewhere would
   be refused by the browser, not served quietly from the internet.
2. **Behind a prefix** (the ASGI ``root_path`` a proxy sets), every URL a page names (assets,
   schema, OAuth2 redirect) carries the prefix, as FastAPI's own pages do.
3. The pages and the assets are not operations of the API: none appears in the schema.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_URL = "/redoc"
PAGES = frozenset({DOCS_URL, OAUTH2_REDIRECT_URL, REDOC_URL})  # the HTML pages (api.security rule 2)
STATIC_URL = "/static/docs"
ASSETS = Path(str(resources.files("fastapi_offline").joinpath("static")))  # a wheel installs it as files
SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON = (
    "swagger-ui-bundle.js",
    "swagger-ui.css",
    "redoc.standalone.js",
    "favicon.png",
)


def install(app: FastAPI) -> None:
    """Rules 1 to 3 on an ``app`` made with ``docs_url=None, redoc_url=None`` (FastAPI's CDN
    pages off; FastAPI's recipe for self-hosted documentation assets)."""
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(STATIC_URL, StaticFiles(directory=ASSETS, check_dir=True), name="docs-assets")

    def prefix(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{STATIC_URL}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{STATIC_URL}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{STATIC_URL}/{FAVICON}",
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_URL}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{STATIC_URL}/{FAVICON}",
            with_google_fonts=False,
        )
