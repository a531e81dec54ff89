"""The documentation pages work with no internet: /docs and /redoc name only assets of the
API's own origin, those assets answer, the pages' policy allows nothing from elsewhere, and
a real browser (Debian's chromium, every request off 127.0.0.1 aborted) renders Swagger UI's
operations and ReDoc's with no CSP refusal. A screenshot is kept (``tests/app/browser.py``)."""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Page, Route

from api.app import create_app
from api.context import ApiContext
from tests.api.conftest import Api
from tests.app.browser import artifacts_dir, chromium
from tradeloop.ops import OpsStore
from tradeloop.settings import Settings

PACKAGED = Path(str(resources.files("fastapi_offline").joinpath("static")))  # what the package ships
JS = ("text/javascript", "application/javascript")  # both are JavaScript to a browser (RFC 9239)
REDOC_BADGE = "https://cdn.redoc.ly/redoc/logo-mini.svg"
SOURCE_KEYWORDS = {"'self'", "'none'", "'unsafe-inline'", "data:", "blob:"}
RECORD_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


class References(HTMLParser):
    """Every URL a page names in an attribute (``src``, ``href``, ReDoc's ``spec-url``)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href", "spec-url") and v]


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


def policy(answer: httpx.Response) -> dict[str, list[str]]:
    parts = (p.split() for p in answer.headers["Content-Security-Policy"].split(";") if p.strip())
    return {p[0]: p[1:] for p in parts}


def test_the_pages_name_only_assets_of_this_origin_and_the_assets_answer(sqlite_api: Api) -> None:
    client = sqlite_api.client
    docs, redoc = client.get("/docs"), client.get("/redoc")
    for page in (docs, redoc):
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "cdn." not in page.text and "googleapis" not in page.text and "fastapi.tiangolo.com" not in page.text
        for url in references(page.text):
            assert url.startswith("/") and not urlsplit(url).scheme and not urlsplit(url).netloc, url
        for directive, sources in policy(page).items():  # nothing from another origin, whatever the page held
            assert all(s in SOURCE_KEYWORDS or s.startswith("'sha256-") for s in sources), (directive, sources)
    assert sorted(references(docs.text)) == [
        "/static/docs/favicon.png",
        "/static/docs/swagger-ui-bundle.js",
        "/static/docs/swagger-ui.css",
    ]
    assert "url: '/openapi.json'" in docs.text and "'/docs/oauth2-redirect'" in docs.text
    assert sorted(references(redoc.text)) == [
        "/openapi.json",
        "/static/docs/favicon.png",
        "/static/docs/redoc.standalone.js",
    ]
    expected = {
        "swagger-ui-bundle.js": (JS, b"SwaggerUIBundle"),
        "swagger-ui.css": (("text/css",), b".swagger-ui"),
        "redoc.standalone.js": (JS, b"Redoc"),
        "favicon.png": (("image/png",), b"\x89PNG"),
    }
    for name, (types, marker) in expected.items():
        asset = client.get(f"/static/docs/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"].split(";")[0] in types, (name, asset.headers["content-type"])
        assert asset.headers["X-Content-Type-Options"] == "nosniff"  # so the type above must be right
        assert asset.content == (PACKAGED / name).read_bytes() and marker in asset.content[:200_000], name
    missing = client.get("/static/docs/nothing.js")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc", "/static"))]


def get_behind_prefix(tmp_path: Path, *paths: str) -> list[httpx.Response]:
    """GET ``paths`` as a proxy serving the API under ``/tradeloop`` does: ``root_path`` set
    and in front of every path, as uvicorn ``--root-path`` passes them."""
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    config = Settings(TRADELOOP_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=url)
    store = OpsStore.open(url)
    app = create_app(config, context=ApiContext.from_settings(config, store=store))

    async def get() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, root_path="/tradeloop")
        async with httpx.AsyncClient(transport=transport, base_url="http://desk.example/tradeloop") as client:
            return [await client.get(p.lstrip("/")) for p in paths]

    try:
        return asyncio.run(get())
    finally:
        store.close()


def test_behind_a_prefix_the_pages_name_their_assets_and_schema_under_it(tmp_path: Path) -> None:
    docs, redoc, asset = get_behind_prefix(tmp_path, "/docs", "/redoc", "/static/docs/swagger-ui.css")
    assert docs.request.url.path == "/tradeloop/docs"
    assert docs.status_code == 200 and redoc.status_code == 200
    assert "/tradeloop/static/docs/swagger-ui-bundle.js" in references(docs.text)
    assert "url: '/tradeloop/openapi.json'" in docs.text
    assert {"/tradeloop/openapi.json", "/tradeloop/static/docs/redoc.standalone.js"} <= set(references(redoc.text))
    assert any(s.startswith("'sha256-") for s in policy(docs)["script-src"])  # the pages' policy, not the API's
    assert asset.status_code == 200 and asset.content == (PACKAGED / "swagger-ui.css").read_bytes()


def offline(page: Page, api_url: str) -> tuple[list[str], list[str]]:
    """Abort every request that leaves the API's host; the URLs tried and the console errors."""
    host = urlsplit(api_url).hostname
    elsewhere: list[str] = []
    errors: list[str] = []

    def route(r: Route) -> None:
        if urlsplit(r.request.url).hostname == host:
            r.continue_()
        else:
            elsewhere.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.add_init_script(RECORD_CSP)
    return elsewhere, errors


def test_swagger_ui_and_redoc_render_in_a_browser_with_no_internet(api: Api) -> None:
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        elsewhere, errors = offline(page, api.url)
        page.goto(f"{api.url}/docs")
        page.locator(".opblock").first.wait_for(timeout=30_000)
        login = page.locator(".opblock.opblock-post").filter(has=page.locator('[data-path="/auth/login"]'))
        assert login.count() == 1
        login.locator(".opblock-summary").click()
        login.locator(".opblock-body").wait_for(timeout=10_000)  # its request body, with the example
        assert "correct horse battery staple" in login.inner_text()
        assert page.locator(".opblock").count() > 20  # the whole API, not one stray block
        path = artifacts_dir() / "api-docs.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 50_000, f"{path} is nearly blank"
        assert page.evaluate("window.__csp") == []
        docs_errors = list(errors)

        errors.clear()
        page.goto(f"{api.url}/redoc")
        page.get_by_text("API docs by Redocly").wait_for(timeout=30_000)
        page.get_by_role("heading", name="Login").first.wait_for(timeout=10_000)
        # ReDoc's bundle hard-codes its badge's image on cdn.redoc.ly: the policy refuses it and
        # ReDoc drops the image when it fails (nothing else on the page comes from elsewhere)
        page.wait_for_function("window.__csp.length > 0", timeout=10_000)
        assert page.evaluate("window.__csp") == [f"img-src {REDOC_BADGE}"]
        assert page.locator('img[alt="redocly logo"]').count() == 0
        page.screenshot(path=str(artifacts_dir() / "api-redoc.png"))
        redoc_errors = [e for e in errors if REDOC_BADGE not in e]
    assert elsewhere == []  # the policy refused everything first: the network was never asked
    assert not [e for e in docs_errors if re.search("Content Security Policy|uncaught", e)], docs_errors
    assert not [e for e in redoc_errors if re.search("Content Security Policy|uncaught", e)], redoc_errors
