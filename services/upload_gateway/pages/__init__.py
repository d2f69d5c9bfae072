"""The ATO's own pages: the guide's "Submit Bulk Achievements" flow in a browser.

`setup(app)` adds them to the gateway: their router, templates and static files, and the
middleware that serves them (innermost, after the API's own middlewares have passed the
pages' paths through as unknown to the API).
"""

from __future__ import annotations

from aiohttp import web

from services.upload_gateway.pages import (
    courses,
    my_uploads,
    portal_sign_in,
    rows_to_fix,
    support,
    views,
)
from services.upload_gateway.pages.site import (
    PAGES_CLOCK,
    PAGES_ROUTER,
    PAGES_STATIC,
    PAGES_TEMPLATES,
    Clock,
    pages_middleware,
    static,
    static_files,
    templates,
    url,
    utc_now,
)


def _router() -> web.UrlDispatcher:
    router = web.UrlDispatcher()
    routes = (
        ("GET", "", views.home),
        ("GET", "/", views.home),
        ("GET", "/sign-in", views.sign_in_form),
        ("POST", "/sign-in", views.sign_in),
        ("POST", "/sign-in/portal", portal_sign_in.hand_off),
        ("POST", "/sign-out", views.sign_out),
        ("GET", "/signed-out", views.signed_out),
        ("GET", "/submit", views.submit),
        ("GET", "/scheme", views.scheme),
        ("GET", "/template.csv", views.template_csv),
        ("GET", "/template-header.csv", views.template_header_csv),
        ("GET", "/courses", courses.course_list_page),
        ("GET", "/template.xlsx", views.template_xlsx),
        ("GET", "/upload", views.upload_form),
        ("POST", "/upload", views.upload),
        ("GET", "/uploads", my_uploads.my_uploads),
        ("GET", "/uploads/{upload_id}", views.result),
        ("GET", "/uploads/{upload_id}/achievements", my_uploads.upload_achievements),
        ("GET", "/uploads/{upload_id}/withdraw", my_uploads.confirm_upload_withdrawal),
        ("POST", "/uploads/{upload_id}/withdraw", my_uploads.withdraw_upload),
        (
            "GET",
            "/uploads/{upload_id}/achievements/{achievement_id}/withdraw",
            my_uploads.confirm_achievement_withdrawal,
        ),
        (
            "POST",
            "/uploads/{upload_id}/achievements/{achievement_id}/withdraw",
            my_uploads.withdraw_achievement,
        ),
        ("GET", "/uploads/{upload_id}/status", views.upload_status),
        ("GET", "/uploads/{upload_id}/errors.csv", views.errors_csv),
        ("GET", "/uploads/{upload_id}/rows-to-fix.csv", rows_to_fix.rows_to_fix_csv),
        ("GET", "/uploads/{upload_id}/rows-to-fix.xlsx", rows_to_fix.rows_to_fix_xlsx),
        ("GET", "/help", support.help_page),
        ("GET", "/cookies", support.cookies_page),
        ("GET", "/accessibility", support.accessibility_page),
        ("GET", "/static/{name}", static),
    )
    for method, path, handler in routes:
        router.add_route(method, url(path), handler)
    router.freeze()
    return router


def setup(app: web.Application, clock: Clock = utc_now) -> None:
    """Serves the pages from `app`; `clock` is what sessions expire by (tests inject one)."""
    app[PAGES_ROUTER] = _router()
    app[PAGES_CLOCK] = clock
    app[PAGES_TEMPLATES] = templates()
    app[PAGES_STATIC] = static_files()
    portal_sign_in.setup(app)
    app.middlewares.append(pages_middleware)
