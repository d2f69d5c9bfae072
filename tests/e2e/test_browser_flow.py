"""The guide's steps 3 to 10 in a real browser (Debian's Chromium driven by Playwright) against
the running services: sign in, the four choices, a file that passes, one of its achievements
withdrawn through My uploads, one with problems and a workbook refused with advice, with
axe-core checking each page for accessibility problems.

Set PAGES_SCREENSHOTS to a folder to keep a screenshot of each step (docs/screenshots holds
the ones the documentation shows).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import pytest

from services.demo import random_uln, write_sample
from tests.e2e.conftest import REPO_ROOT, Pipeline

pytestmark = [pytest.mark.stack, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
HAS_CHROMIUM = CHROMIUM.exists()
AXE_VERSION = "4"  # the major version of axe-core the checks are written against
AXE_FOLDER = REPO_ROOT / ".local" / "axe-core"
BLOCKING_IMPACTS = {"serious", "critical"}
WORKBOOK_BYTES = b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 512

playwright = pytest.importorskip("playwright.async_api")


def missing(what: str) -> None:
    """A missing browser or axe-core fails the run in CI (`make test` installs both through
    deploy/local/browser.sh) and skips elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(what)
    pytest.skip(what)


def axe_source() -> str:
    """axe.min.js from the npm package: $AXE_CORE_JS, else installed once under .local/."""
    if configured := os.environ.get("AXE_CORE_JS"):
        return Path(configured).read_text(encoding="utf-8")
    script = AXE_FOLDER / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            missing("npm is needed to install axe-core")
        AXE_FOLDER.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(AXE_FOLDER),
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return script.read_text(encoding="utf-8")


class Steps:
    """The browser page, the accessibility check and the screenshots of each step."""

    def __init__(self, page: Any, axe: str, shots: Path | None) -> None:
        self.page = page
        self.axe = axe
        self.shots = shots
        self.count = 0
        self.checked: list[str] = []

    async def check(self, name: str) -> None:
        """axe-core on the page as it is now: no serious or critical violation."""
        self.count += 1
        if self.shots is not None:
            await self.page.screenshot(
                path=str(self.shots / f"ato-pages-{self.count:02d}-{name}.png")
            )
        if not await self.page.evaluate("typeof window.axe !== 'undefined'"):
            await self.page.evaluate(self.axe)
        results = await self.page.evaluate(
            "async () => await window.axe.run(document, {resultTypes: ['violations']})"
        )
        blocking = [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in results["violations"]
            if v["impact"] in BLOCKING_IMPACTS
        ]
        assert blocking == [], f"{name}: {json.dumps(blocking, indent=1)}"
        self.checked.append(name)


async def open_page(java_script_enabled: bool) -> AsyncIterator[Any]:
    if not HAS_CHROMIUM:
        missing(f"Chromium is not installed at {CHROMIUM} (Debian package 'chromium')")
    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
        )
        # axe-core is added to each page by the test itself, past the pages' script policy.
        context = await browser.new_context(
            bypass_csp=True,
            viewport={"width": 1100, "height": 900},
            java_script_enabled=java_script_enabled,
        )
        try:
            yield await context.new_page()
        finally:
            await context.close()
            await browser.close()


@pytest.fixture
async def browser_page() -> AsyncIterator[Any]:
    async for page in open_page(java_script_enabled=True):
        yield page


@pytest.fixture
async def page_without_script() -> AsyncIterator[Any]:
    async for page in open_page(java_script_enabled=False):
        yield page


# The portal stand-in's people (services/portal_standin/people.py).
SUBMITTER = ("portal-user-1001", "Priya Shah")
VIEWER = ("portal-user-1002", "Tom Evans")


async def sign_in_through_the_portal(page: Any, pipeline: Pipeline, ato_id: str, who: str) -> None:
    """From the pages' sign-in page to the four choices, as `who` ("Priya Shah (submitter)")
    of the ATO: the portal stand-in posts its token to the gateway in a form, and the gateway's
    page moves on to the pages."""
    await page.get_by_role("link", name="Sign in through the portal").click()
    await page.wait_for_url(f"{pipeline.portal_url}/sign-in")
    await page.get_by_label(who).check()
    await page.get_by_label("Organisation (ATO id)").fill(ato_id)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/ato/submit")
    assert "token" not in page.url


async def audit_trail(pipeline: Pipeline, ato_id: str) -> list[tuple[str, Any, Any, Any]]:
    """The ATO's audit events, oldest first: (kind, key_id, person_subject, person_name)."""
    connection = await asyncpg.connect(pipeline.database_url)
    try:
        rows = await connection.fetch(
            "SELECT kind, key_id, person_subject, person_name FROM audit_events"
            " WHERE ato_id = $1 ORDER BY event_id",
            ato_id,
        )
    finally:
        await connection.close()
    return [(row["kind"], row["key_id"], row["person_subject"], row["person_name"]) for row in rows]


def filled_workbook(guided: Path, folder: Path, today: date) -> Path:
    """The guided workbook as downloaded, filled in as a person would in Excel: two rows typed
    below the header (one valid, one whose ULN has a wrong check digit), the notes above it
    left where they are."""
    day = today.strftime("%d/%m/%Y")
    workbook = openpyxl.load_workbook(guided)
    sheet = workbook["Achievements"]
    header_row = next(
        row[0].row for row in sheet.iter_rows(max_col=1) if row[0].value == "ProviderReference"
    )
    assert header_row > 1  # the guidance notes stand above the columns
    for offset, cells in enumerate(
        (
            ["R1", "SD-WAH-101", day, "Ann", "Smith", "01/01/1990", "", "", "CITB123456"],
            ["R2", "SD-WAH-101", day, "Bob", "Jones", "02/02/1991", "1000000044", "", ""],
        ),
        start=1,
    ):
        for column, value in enumerate([*cells, "M1286101"], start=1):
            sheet.cell(row=header_row + offset, column=column, value=value or None)
    path = folder / "june-with-problems.xlsx"
    workbook.save(path)
    return path


def corrected_workbook(downloaded: Path, folder: Path, wrong_uln: str) -> Path:
    """The downloaded rows to fix (the guided workbook) with the wrong ULN corrected."""
    workbook = openpyxl.load_workbook(downloaded)
    sheet = workbook["Achievements"]
    wrong = [cell for row in sheet.iter_rows() for cell in row if cell.value == wrong_uln]
    assert len(wrong) == 1
    assert wrong[0].comment is not None  # the problem, as a cell comment
    wrong[0].value = random_uln()
    fixed = folder / "rows-to-fix-corrected.xlsx"
    workbook.save(fixed)
    return fixed


# Notes each heading the progress panel shows, where the next page can read it.
WATCH_PROGRESS = """() => {
  const title = document.getElementById("progress-title");
  const seen = [];
  new MutationObserver(() => {
    if (!seen.includes(title.textContent)) {
      seen.push(title.textContent);
      sessionStorage.setItem("progress-seen", JSON.stringify(seen));
    }
  }).observe(title, {childList: true, characterData: true, subtree: true});
}"""


async def progress_seen(page: Any) -> list[str]:
    seen: list[str] = json.loads(
        await page.evaluate("() => sessionStorage.getItem('progress-seen') || '[]'")
    )
    return seen


async def upload_through_the_page(steps: Steps, path: Path, policy: str, name: str) -> None:
    page = steps.page
    await page.get_by_role("link", name="Upload a new bulk achievement").click()
    await page.wait_for_url("**/ato/upload")
    await page.set_input_files("#file", str(path))
    await page.check(f"#policy-{policy}")
    await page.get_by_role("button", name="Upload", exact=True).click()
    dialog = page.get_by_role("dialog", name="Terms and conditions")
    await dialog.wait_for()
    assert await page.evaluate("document.activeElement.id") == "terms-accept"
    await steps.check(name)
    await page.evaluate(WATCH_PROGRESS)
    await dialog.get_by_role("button", name="Accept and upload").click()


async def test_an_ato_follows_the_guide_from_sign_in_to_the_data_is_valid(
    make_pipeline: Any, tmp_path: Path, browser_page: Any
) -> None:
    pipeline: Pipeline = await make_pipeline(bridges=0, validators=1, portal=True)
    ato_id, api_key = await pipeline.create_ato()
    shots = Path(os.environ["PAGES_SCREENSHOTS"]) if os.environ.get("PAGES_SCREENSHOTS") else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    steps = Steps(browser_page, axe_source(), shots)
    page = steps.page

    # Sign in (step 1): each person through the portal; the organisation's API key is not
    # asked for (its sign-in is off by default). A token the gateway cannot check is refused
    # with a page in plain words.
    await page.goto(f"{pipeline.gateway_url}/ato")
    await page.wait_for_url("**/ato/sign-in**")
    assert await page.locator("#api_key").count() == 0
    await steps.check("sign-in")
    await page.evaluate(
        """() => {
          const form = document.createElement("form");
          form.method = "post";
          form.action = "/ato/sign-in/portal";
          const token = document.createElement("input");
          token.type = "hidden";
          token.name = "token";
          token.value = "not-a-token-the-portal-signed";
          form.append(token);
          document.body.append(form);
          form.submit();
        }"""
    )
    await page.wait_for_url("**/ato/sign-in/portal")
    assert await page.get_by_role("heading", level=1).inner_text() == "You could not be signed in"
    await steps.check("sign-in-refused")
    await page.goto(f"{pipeline.gateway_url}/ato/sign-in")
    await sign_in_through_the_portal(page, pipeline, ato_id, "Priya Shah (submitter)")

    # Step 3: the four choices, as the person who signed in.
    assert await page.get_by_role("heading", level=1).inner_text() == "Submit Bulk Achievements"
    assert await page.locator("#signed-in-person").inner_text() == SUBMITTER[1]
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["ato_session"]
    assert (session["httpOnly"], session["secure"], session["sameSite"]) == (True, True, "Strict")
    assert session["value"] != api_key
    await steps.check("submit")

    # Step 4: the scheme and guidance notes.
    await page.get_by_role("link", name="Download technical CSV scheme and guidance notes").click()
    await page.wait_for_url("**/ato/scheme")
    assert await page.get_by_role("heading", name="Column G: ULN").count() == 1
    await steps.check("scheme")
    await page.go_back()

    # Step 5: the blank CSV and the guided workbook download.
    async with page.expect_download() as blank:
        await page.get_by_role("link", name="Download blank CSV file").click()
    assert (await blank.value).suggested_filename == "bulk-achievements-blank-file.csv"
    async with page.expect_download() as guided:
        await page.get_by_role("link", name="Download guided template (Excel workbook)").click()
    assert (await guided.value).suggested_filename.endswith(".xlsx")
    guided_workbook = tmp_path / "guided-template.xlsx"
    await (await guided.value).save_as(guided_workbook)

    # Steps 8 to 10: upload, accept the terms, watch it pass.
    sample = write_sample(tmp_path, date.today())
    await upload_through_the_page(steps, sample, "all_or_nothing", "terms")
    await page.wait_for_url("**/ato/uploads/*", timeout=120_000)
    await page.locator("#upload-message").wait_for()
    assert await page.locator("#upload-status").inner_text() == "Passed"
    assert await page.locator("#upload-rows").inner_text() == "8"
    assert await page.locator("#upload-file-name").inner_text() == sample.name
    assert await page.locator("#upload-message").inner_text() == "The data is valid"
    # The progress bar showed the bytes going up, then the rows being checked.
    assert await progress_seen(page) == ["Sending the file", "Checking the rows"]
    await steps.check("passed")

    # My uploads: the accepted achievements, one withdrawn after its confirmation.
    await page.get_by_role("link", name="See the accepted achievements and withdraw them").click()
    await page.wait_for_url("**/ato/uploads/*/achievements")
    table = page.locator("#achievements")
    assert await table.locator("tbody tr").count() == 8
    await steps.check("achievements")
    await page.get_by_role("link", name="Withdraw the achievement on row 2").click()
    await page.wait_for_url("**/achievements/*/withdraw?page=1")
    assert await page.get_by_role("heading", level=1).inner_text() == "Withdraw this achievement?"
    await steps.check("withdraw-confirm")
    await page.get_by_role("button", name="Yes, withdraw this achievement").click()
    await page.wait_for_url("**/achievements?done=achievement")
    await page.get_by_role("status").wait_for()
    first_row = page.locator("#achievements tbody tr").first
    assert await first_row.locator(".grant-state").inner_text() == "withdrawn"
    assert await first_row.get_by_role("link").count() == 0
    await steps.check("withdrawn")
    await page.get_by_role("link", name="My uploads", exact=True).click()
    await page.wait_for_url("**/ato/uploads")
    assert await page.locator("#uploads tbody tr").count() == 1
    assert await page.locator("#uploads td.uploaded-by").all_inner_texts() == [SUBMITTER[1]]
    await steps.check("my-uploads")

    # A file with a problem: the problems table, with the value partly hidden.
    await page.get_by_role("link", name="Back to Submit Bulk Achievements").click()
    # The guided workbook, filled in and uploaded as it is (scheme section 9): its notes stand
    # above the header (rows 1-2), so the row in error is the sheet's row 5.
    await upload_through_the_page(
        steps,
        filled_workbook(guided_workbook, tmp_path, date.today()),
        "valid_rows",
        "terms-again",
    )
    await page.wait_for_url("**/ato/uploads/*", timeout=120_000)
    table = page.locator("#problems")
    await table.wait_for()
    row = table.locator("tbody tr").first
    cells = [await cell.inner_text() for cell in await row.locator("td").all()]
    assert cells[:4] == ["5", "G ULN", "Error", "ULN_03"]
    assert cells[5] != "1000000044"
    assert "*" in cells[5]
    assert await page.locator("#upload-status").inner_text() == "Partly accepted"
    async with page.expect_download() as report:
        await page.get_by_role("link", name="Download the problems as CSV").click()
    assert (await report.value).suggested_filename.endswith("-problems.csv")
    await steps.check("problems")

    # The rows to fix (scheme section 9): only the row in error, corrected and uploaded on its
    # own, so the row already accepted is not sent again (no DUP_02).
    async with page.expect_download() as rows_to_fix:
        await page.get_by_role("link", name="Download the rows to fix (Excel workbook)").click()
    downloaded = tmp_path / "rows-to-fix.xlsx"
    await (await rows_to_fix.value).save_as(downloaded)
    fixed = corrected_workbook(downloaded, tmp_path, "1000000044")
    await page.get_by_role("link", name="Back to Submit Bulk Achievements").click()
    await upload_through_the_page(steps, fixed, "all_or_nothing", "terms-fixed")
    await page.wait_for_url("**/ato/uploads/*", timeout=120_000)
    await page.locator("#upload-message").wait_for()
    assert await page.locator("#upload-status").inner_text() in {"Passed", "Passed with warnings"}
    assert await page.locator("#upload-rows-valid").inner_text() == "1"
    assert "DUP_02" not in await page.content()
    await steps.check("fixed")

    # A workbook sent instead of the CSV: refused at once, with the advice on exporting.
    workbook = tmp_path / "achievements.xlsx"
    workbook.write_bytes(WORKBOOK_BYTES)
    await page.get_by_role("link", name="Upload another file").click()
    await page.wait_for_url("**/ato/upload")
    await page.set_input_files("#file", str(workbook))
    await page.get_by_role("button", name="Upload", exact=True).focus()
    await page.keyboard.press("Enter")  # the keyboard alone: Enter, then Enter to accept
    await page.get_by_role("dialog", name="Terms and conditions").wait_for()
    await page.keyboard.press("Enter")
    await page.locator("#export-advice").wait_for()
    assert "workbook" in await page.locator("#upload-error-message").inner_text()
    assert await page.evaluate("document.activeElement.id") == "upload-error"
    await steps.check("refused")

    # The list of short duration course codes, from the navigation.
    await page.get_by_role("link", name="Course codes", exact=True).click()
    await page.wait_for_url("**/ato/courses")
    assert await page.locator('#courses tr[data-course-code="SD-WAH-101"]').count() == 1
    await steps.check("courses")

    # Sign out: the session ends, and the pages ask to sign in again.
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/ato/signed-out")
    await steps.check("signed-out")
    await page.goto(f"{pipeline.gateway_url}/ato/submit")
    await page.wait_for_url("**/ato/sign-in**")
    assert ato_id not in page.url

    # The footer's pages, which need no sign-in.
    for link, step in (
        ("Help and contact", "help"),
        ("Cookies", "cookies"),
        ("Accessibility statement", "accessibility"),
    ):
        await page.locator("footer").get_by_role("link", name=link, exact=True).click()
        await page.wait_for_url(f"**/ato/{step}")
        assert await page.get_by_role("heading", level=1).inner_text() == link
        await steps.check(step)
    gateway_log = pipeline.services["gateway"].log_path.read_text(errors="replace")
    assert api_key not in gateway_log
    assert session["value"] not in gateway_log
    assert SUBMITTER[1] not in gateway_log  # the person is the audit trail's, never the log's
    # The audit trail names the person for every upload, read and withdrawal, and no key.
    trail = await audit_trail(pipeline, ato_id)
    kinds = [kind for kind, *_ in trail]
    assert kinds.count("upload_received") == 3
    assert "achievement_withdrawn" in kinds
    assert "rows_to_fix_downloaded" in kinds
    assert {tuple(who) for _, *who in trail} == {(None, *SUBMITTER)}
    assert steps.checked == [
        "sign-in",
        "sign-in-refused",
        "submit",
        "scheme",
        "terms",
        "passed",
        "achievements",
        "withdraw-confirm",
        "withdrawn",
        "my-uploads",
        "terms-again",
        "problems",
        "terms-fixed",
        "fixed",
        "refused",
        "courses",
        "signed-out",
        "help",
        "cookies",
        "accessibility",
    ]


async def test_without_javascript_the_upload_is_a_form_post_and_the_result_page_refreshes(
    make_pipeline: Any, tmp_path: Path, page_without_script: Any
) -> None:
    pipeline: Pipeline = await make_pipeline(bridges=0, validators=1, portal=True)
    ato_id, _ = await pipeline.create_ato()
    page = page_without_script

    # Without script the stand-in's hand-off is its button, and the gateway's page moves on
    # by itself (a meta refresh).
    await page.goto(f"{pipeline.gateway_url}/ato/sign-in")
    await page.get_by_role("link", name="Sign in through the portal").click()
    await page.get_by_label("Ruth Okafor (submitter)").check()
    await page.get_by_label("Organisation (ATO id)").fill(ato_id)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_url("**/ato/submit")
    await page.get_by_role("link", name="Upload a new bulk achievement").click()
    await page.wait_for_url("**/ato/upload")
    sample = write_sample(tmp_path, date.today())
    await page.set_input_files("#file", str(sample))

    # Without the terms accepted: an error summary linked to the checkbox, nothing sent.
    await page.get_by_role("button", name="Upload", exact=True).click()
    await page.get_by_role("alert").wait_for()
    assert await page.locator("#upload-error-message").get_attribute("href") == "#terms_accepted"

    await page.set_input_files("#file", str(sample))
    await page.get_by_label("I accept the terms and conditions").check()
    await page.get_by_role("button", name="Upload", exact=True).click()
    await page.wait_for_url("**/ato/uploads/*")
    # The page reloads itself until the outcome shows.
    await page.locator("#upload-message", has_text="The data is valid").wait_for(timeout=120_000)
    assert await page.locator("#upload-status").inner_text() == "Passed"
    assert await page.locator("#upload-file-name").inner_text() == sample.name
    assert await page.locator('meta[http-equiv="refresh"]').count() == 0


async def test_a_viewer_signed_in_through_the_portal_sees_the_uploads_but_cannot_upload(
    make_pipeline: Any, tmp_path: Path, browser_page: Any
) -> None:
    pipeline: Pipeline = await make_pipeline(bridges=0, validators=1, portal=True)
    ato_id, api_key = await pipeline.create_ato()
    sent = await pipeline.upload(write_sample(tmp_path, date.today()).read_bytes(), api_key)
    await pipeline.wait_final(sent["upload_id"], api_key)
    steps = Steps(browser_page, axe_source(), None)
    page = steps.page

    await page.goto(f"{pipeline.gateway_url}/ato/sign-in")
    await sign_in_through_the_portal(page, pipeline, ato_id, "Tom Evans (viewer)")

    assert await page.locator("#signed-in-person").inner_text() == VIEWER[1]
    assert await page.get_by_role("link", name="Upload a new bulk achievement").count() == 0
    await page.get_by_role("link", name="My uploads", exact=True).click()
    await page.wait_for_url("**/ato/uploads")
    assert await page.locator("#uploads tbody tr").count() == 1
    await page.locator("#uploads tbody tr a").first.click()
    await page.wait_for_url("**/ato/uploads/*")
    assert await page.locator("#upload-status").inner_text() == "Passed"
    await page.get_by_role("link", name="See the accepted achievements and withdraw them").click()
    await page.wait_for_url("**/ato/uploads/*/achievements")
    assert await page.locator("#achievements tbody tr").count() == 8
    assert await page.get_by_role("link", name="Withdraw the achievement on row 2").count() == 0
    await steps.check("viewer-achievements")
    refused = await page.goto(f"{pipeline.gateway_url}/ato/upload")
    assert refused is not None
    assert refused.status == 403
    assert await page.get_by_role("heading", level=1).inner_text() == "You cannot do this"
    await steps.check("viewer-refused")
