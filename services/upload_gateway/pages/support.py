"""The pages every footer links to: help and contact, cookies, and the accessibility statement.

They need no sign-in (someone who cannot sign in needs help most), so they show no navigation.
"""

from __future__ import annotations

from aiohttp import web

from services.upload_gateway.pages import texts
from services.upload_gateway.pages.site import render


async def help_page(request: web.Request) -> web.StreamResponse:
    return render(request, "help.html", title=texts.TITLES["help"], session=None)


async def cookies_page(request: web.Request) -> web.StreamResponse:
    return render(request, "cookies.html", title=texts.TITLES["cookies"], session=None)


async def accessibility_page(request: web.Request) -> web.StreamResponse:
    return render(request, "accessibility.html", title=texts.TITLES["accessibility"], session=None)
