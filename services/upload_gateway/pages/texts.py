"""Every word the pages show, in one place: titles, labels, messages, guidance and advice.

Nothing here holds personal data; page titles and URLs never carry any either.
"""

from __future__ import annotations

from typing import Final

from services.core.scheme.codes import Code
from services.core.scheme.columns import Column
from services.core.states import GrantState, UploadState

SERVICE_NAME: Final = "Submit Bulk Achievements"

TITLES: Final = {
    "sign_in": "Sign in",
    "submit": "Submit Bulk Achievements",
    "scheme": "Technical CSV scheme and guidance notes",
    "upload": "Upload a new bulk achievement",
    "result": "Upload result",
    "signed_out": "You have signed out",
    "my_uploads": "My uploads",
    "achievements": "Accepted achievements",
    "error": "Something went wrong",
    "courses": "Short duration course codes",
    "help": "Help and contact",
    "cookies": "Cookies",
    "accessibility": "Accessibility statement",
}

# Before the title of a page whose form has errors, so that it is the first thing heard.
ERROR_TITLE_PREFIX: Final = "Error: "

SIGN_IN: Final = {
    "intro": "Sign in with your organisation's API key. You stay signed in until you sign out,"
    " or until you have not used these pages for 30 minutes.",
    "key_label": "API key",
    "key_hint": "It starts with ak_. Ask your organisation's administrator if you do not have it.",
    "button": "Sign in",
    "error_summary": "There is a problem",
    "bad_key": "Enter a valid API key: this key is not recognised or has been revoked.",
    "missing_key": "Enter your API key.",
    "expired": "Your session has ended. Sign in again to continue.",
    "form_expired": "The form had expired. Sign in again.",
}

SIGN_OUT: Final = {
    "button": "Sign out",
    "done": "You have signed out. To upload or see your uploads again, sign in again.",
    "again": "Sign in again",
}

SUBMIT: Final = {
    "intro": "Choose one of the four options below. If your own system exports the"
    " information, download the technical CSV scheme and guidance notes to set it up, then"
    " upload. If it does not, download the blank CSV file or the guided template, fill it in"
    " and upload it.",
    "scheme": "Download technical CSV scheme and guidance notes",
    "scheme_hint": "Every column, its format and an example, and every check with its message.",
    "blank": "Download blank CSV file",
    "blank_hint": "The template's header row with a guidance note above each column. The"
    " notes start with # and are skipped when the file is checked, so you can leave them in.",
    "header_only": "Download the header row only",
    "header_only_hint": "For your own system's export: the header row and nothing else.",
    "workbook": "Download guided template (Excel workbook)",
    "workbook_hint": "A guidance note above each column, mandatory columns in blue, the"
    " identifier group in yellow and course codes to choose from. Once filled in, upload it"
    " as it is, or save it as CSV first if you prefer.",
    "courses": "See the list of short duration course codes",
    "courses_hint": "Each course code with its title, grant amount and whether it is open.",
    "upload": "Upload a new bulk achievement",
    "upload_hint": "Send a CSV file and watch it being checked.",
    "signed_in_as": "Signed in for",
}

SCHEME: Final = {
    "download": "Download this page",
    "intro": "These notes are built from the same definitions the checks use, so they always"
    " match what an upload is checked against.",
    "columns": "Columns, in template order",
    "legend_required": "Mandatory: every row must have a value.",
    "legend_identifier": "Identifier group: at least one of these is needed in every row.",
    "letter": "Column",
    "header": "Header",
    "required": "Required",
    "format": "Format",
    "example": "Example",
    "checks": "Checks",
    "code": "Code",
    "severity": "Error or warning",
    "message": "Message",
    "row_rules": "Checks on the whole row",
    "file_rules": "Checks on the whole file",
    "file_layout": "File layout",
    "statuses": "Upload statuses",
    "policies": "What happens to valid rows when others have errors",
}

REQUIRED_WORDS: Final = {
    "yes": "Mandatory",
    "no": "Optional",
    "no (see warnings)": "Optional but recommended",
    "one of G, H, I": "At least one of ULN, NINumber, CITBIndividualId",
}

POLICY_LABELS: Final = {
    "all_or_nothing": (
        "All or nothing",
        "If any row has an error, nothing is accepted: correct the file and upload it again.",
    ),
    "valid_rows": (
        "Accept the valid rows",
        "Rows without errors are accepted; rows with errors are listed for you to correct.",
    ),
}

# The guidance note above each column of the guided template, after the generated lines
# (required, format, example).
COLUMN_NOTES: Final = {
    Column.PROVIDER_REFERENCE: "Your own reference for the row, if you keep one.",
    Column.COURSE_CODE: "In the guided template, choose it from the drop-down.",
    Column.ACHIEVEMENT_DATE: "The day the learner achieved the course; not in the future.",
    Column.LEARNER_FORENAME: "As on the learner's record.",
    Column.LEARNER_SURNAME: "As on the learner's record.",
    Column.DATE_OF_BIRTH: "The learner must be at least 15 on the achievement date.",
    Column.ULN: "The learner's Unique Learner Number.",
    Column.NI_NUMBER: "The learner's National Insurance number.",
    Column.CITB_INDIVIDUAL_ID: "The learner's CITB individual id.",
    Column.EMPLOYER_LEVY_NUMBER: "The employer's CITB levy registration number: it automates"
    " the employer's grant payment. Without it no grant is claimed.",
    Column.NOTES: "Passed on to the employer grant payment system: ask the levy paying"
    " employer what, if anything, they need here.",
}

# Examples of a valid value per column; a test checks that a row of them passes the checks.
EXAMPLES: Final = {
    Column.PROVIDER_REFERENCE: "BATCH-0612-01",
    Column.COURSE_CODE: "SD-WAH-101",
    Column.ACHIEVEMENT_DATE: "12/06/2026",
    Column.LEARNER_FORENAME: "Ann",
    Column.LEARNER_SURNAME: "Smith",
    Column.DATE_OF_BIRTH: "01/01/1990",
    Column.ULN: "1000000043",
    Column.NI_NUMBER: "JK123456C",
    Column.CITB_INDIVIDUAL_ID: "AB12345",
    Column.EMPLOYER_LEVY_NUMBER: "M1286101",
    Column.NOTES: "PO 4471",
}

# Each column's format in plain words, for the guidance notes above the columns (the technical
# scheme page keeps the exact formats the checks use).
FORMAT_WORDS: Final = {
    Column.PROVIDER_REFERENCE: "Up to 50 characters",
    Column.COURSE_CODE: "A short duration course code from the list of course codes",
    Column.ACHIEVEMENT_DATE: "A date as dd/mm/yyyy",
    Column.LEARNER_FORENAME: "Up to 100 characters",
    Column.LEARNER_SURNAME: "Up to 100 characters",
    Column.DATE_OF_BIRTH: "A date as dd/mm/yyyy",
    Column.ULN: "10 digits",
    Column.NI_NUMBER: "Two letters, six digits and a final letter A, B, C or D",
    Column.CITB_INDIVIDUAL_ID: "5 to 12 letters and digits",
    Column.EMPLOYER_LEVY_NUMBER: "7 to 9 digits, with a letter in front if the number has one",
    Column.NOTES: "Up to 255 characters",
}

# The guidance rows above the header, in the blank CSV file and the guided template: the first
# cell of each starts with "#", so the checks skip them (scheme section 9).
GUIDANCE_MARK: Final = "# "
GUIDANCE_INTRO: Final = (
    "Guidance notes: rows whose first cell starts with # are skipped when the file is checked,"
    " so you can leave them in. Keep the header row below them exactly as it is, then enter one"
    " achievement per row. Course codes: see the list of short duration course codes on the"
    " Submit Bulk Achievements pages."
)

WORKBOOK_INSTRUCTIONS: Final = (
    "1. If a yellow 'read only' or 'Protected view' bar shows at the top, click 'Enable editing'.",
    "2. Go to the 'Achievements' sheet. Above each column is its guidance note. Keep the"
    " header row (row 3) exactly as it is; the notes above it start with # and are skipped"
    " when the file is checked, so you can leave them in.",
    "3. Blue headers are mandatory. Yellow headers are the identifier group: fill in at"
    " least one of them in every row.",
    "4. Choose each course code from the drop-down list in column B. The 'Course codes'"
    " sheet lists every code with its title and grant amount.",
    "5. The columns are formatted as text so that dates keep their form and long numbers"
    " (ULN) keep all their digits: type dates as dd/mm/yyyy.",
    "6. When you have finished, save the workbook as an Excel workbook (.xlsx), not as a"
    " macro-enabled one (.xlsm).",
    "7. Go back to 'Submit Bulk Achievements', choose 'Upload a new bulk achievement' and"
    " choose this workbook. Its 'Achievements' sheet is checked as it is, notes included.",
    "8. If you would rather upload a CSV file: stay on the 'Achievements' sheet, choose File >"
    " Save As (or Export) and pick the type 'CSV UTF-8 (Comma delimited) (*.csv)'. Only the"
    " sheet you are on is saved, which is what you want. Do not open the CSV file again in a"
    " spreadsheet before uploading: it may change dates and long numbers.",
)

WORKBOOK: Final = {
    "instructions_title": "How to fill in this template and upload it",
    "legend_required": "Blue header: mandatory column.",
    "legend_identifier": "Yellow header: at least one of these in every row.",
    "courses_sheet": "Course codes",
    "data_sheet": "Achievements",
    "instructions_sheet": "How to use",
    "course_prompt_title": "Course code",
    "course_prompt": "Choose a course code from the list. The 'Course codes' sheet gives each"
    " code's title.",
    "course_error": "Choose a course code from the list. The 'Course codes' sheet lists them.",
    "courses_code": "Course code",
    "courses_title": "Title",
    "courses_grant": "Grant (£)",
    "courses_from": "Approved from",
    "courses_to": "Approved until (empty: no end date)",
}

TERMS: Final = (
    "You confirm that the learners in this file achieved the courses on the dates given.",
    "You confirm that you may share these learners' details with CITB for recording their"
    " achievements and paying grants, as the Fair Processing Notice describes.",
    "You understand that accepted achievements may be sent for a grant payment to the"
    " employer whose levy number is given.",
)

UPLOAD: Final = {
    "intro": "Choose your file, choose what should happen if some rows have errors, then"
    " upload it. You will be asked to accept the terms and conditions first.",
    "file_label": "CSV file or guided template",
    "file_hint": "A .csv file saved as 'CSV UTF-8' or 'CSV (Comma delimited)', or the guided"
    " template (.xlsx) as you filled it in.",
    "policy_legend": "If some rows have errors",
    "button": "Upload",
    "no_file": "Choose a file to upload.",
    "no_script": "JavaScript is off, so there is no progress bar: read the terms and"
    " conditions below and tick the box to accept them, then upload. The result page refreshes"
    " itself until the file has been checked.",
    "terms_title": "Terms and conditions",
    "accept": "Accept and upload",
    "cancel": "Cancel",
    "sending": "Sending the file",
    "validating": "Checking the rows",
    "progress_label": "Progress",
    "failed_to_send": "The file could not be sent. Check your connection and try again.",
    "session_ended": "Your session has ended. Sign in again, then upload the file again.",
}

RESULT: Final = {
    "status": "Status",
    "rows": "Rows in the file",
    "rows_valid": "Rows accepted",
    "rows_invalid": "Rows with errors",
    "rows_warned": "Rows with warnings",
    "file_name": "File name",
    "received": "Received",
    "problems": "Problems found",
    "problems_intro": "Errors stop a row being accepted; warnings do not. Values are partly"
    " hidden to protect learners' details.",
    "row": "Row",
    "column": "Column",
    "severity": "Error or warning",
    "code": "Code",
    "message": "Message",
    "value": "Value (partly hidden)",
    "download_errors": "Download the problems as CSV",
    "more_problems": "Only the first {shown} problems are listed here; the CSV has them all.",
    "truncated": (
        "There are {total} problems in all. The list keeps the first {stored}, by row;"
        " {left_out} more are not listed. Fix these, then upload the file again to see the rest."
    ),
    "in_progress": "The file is still being checked. This page shows the result once it is done.",
    "refresh": "Check again",
    "another": "Upload another file",
    "back": "Back to Submit Bulk Achievements",
    "not_found": "There is no such upload for your organisation.",
    "refused_title": "The file was refused",
    "advice_title": "How to save your file as CSV",
    "next_title": "What to do next",
    "download_rows_to_fix_csv": "Download the rows to fix (CSV file)",
    "download_rows_to_fix_xlsx": "Download the rows to fix (Excel workbook)",
}

# What to do next, by the upload's outcome: the advice must fit what was accepted.
NEXT_STEPS: Final = {
    UploadState.PARTIALLY_ACCEPTED.value: (
        "The rows without errors were accepted. The rows with errors were not.",
        "Download the rows to fix: a file with only the rows that have errors, in the"
        " template's columns. Correct those rows, then upload that file.",
        "Do not upload your whole file again: the rows already accepted would be refused as"
        " duplicates (DUP_02).",
    ),
    UploadState.FAILED.value: (
        "Nothing was accepted.",
        "Correct the rows listed under 'Problems found' in your file, then upload the whole"
        " file again.",
    ),
    UploadState.PASSED_WITH_WARNINGS.value: (
        "Every row was accepted. Warnings do not stop a row being accepted, but read them:"
        " a row without a registered levy number, for example, gets no grant payment.",
    ),
}

COURSES: Final = {
    "intro": "Enter the course code in column B of your file. These are the short duration"
    " courses an achievement can be recorded for, with the grant paid to the employer for each"
    " achievement.",
    "open_meaning": "Open: an achievement dated today ({today}) can be recorded for the course."
    " An achievement dated while a course was open can still be recorded after it closes.",
    "caption": "Short duration course codes, by code",
    "code": "Course code",
    "title": "Title",
    "grant": "Grant",
    "open": "Open",
    "yes": "Open",
    "no": "Closed",
    "open_until": "until {until}",
    "opens_on": "opens on {on}",
    "closed_on": "after {on}",
    "none": "The course list is empty at the moment. Try again later.",
}

# Plain words for a file refused because it is not CSV text (a workbook, a UTF-16 export).
EXPORT_ADVICE: Final = (
    "Open the file in your spreadsheet program.",
    "Choose File > Save As (or Export).",
    "Pick the file type 'CSV UTF-8 (Comma delimited) (*.csv)'. If it is not offered, pick"
    " 'CSV (Comma delimited) (*.csv)'. Do not pick 'Unicode Text', 'Excel Workbook' or"
    " 'UTF-16'.",
    "Save, close the spreadsheet without opening the CSV again, and upload the .csv file.",
)
ADVICE_CODES: Final = frozenset({Code.FILE_01.value, Code.FILE_06.value})

# How each status reads on the page, as a labelled tag (the API keeps the states' own names).
STATUS_WORDS: Final = {
    UploadState.RECEIVED.value: "Received",
    UploadState.VALIDATING.value: "Being checked",
    UploadState.REJECTED.value: "Refused",
    UploadState.FAILED.value: "Failed",
    UploadState.PARTIALLY_ACCEPTED.value: "Partly accepted",
    UploadState.PASSED_WITH_WARNINGS.value: "Passed with warnings",
    UploadState.PASSED.value: "Passed",
    UploadState.ERRORED.value: "Not checked",
}

# How each severity of a problem reads in the problems table.
SEVERITY_WORDS: Final = {"error": "Error", "warning": "Warning"}

ERRORS: Final = {
    "csrf": "The form had expired or did not come from this site. Go back, reload the page and"
    " try again.",
    "not_found": "Page not found.",
}

SKIP_LINK: Final = "Skip to main content"

NAV: Final = {
    "label": "Main",
    "submit": "Submit Bulk Achievements",
    "my_uploads": "My uploads",
    "courses": "Course codes",
}
# The navigation: (path under the pages, words, element id), in order.
NAV_ITEMS: Final = (
    ("/submit", NAV["submit"], "nav-submit"),
    ("/uploads", NAV["my_uploads"], "nav-my-uploads"),
    ("/courses", NAV["courses"], "nav-courses"),
)

FOOTER: Final = {
    "heading": "Support links",
    "help": "Help and contact",
    "privacy": "Privacy",
    "fair_processing_notice": "Fair Processing Notice",
    "cookies": "Cookies",
    "accessibility": "Accessibility statement",
    "owner": "Run by CITB (Construction Industry Training Board).",
}

HELP: Final = {
    "intro": "If something on these pages does not work as you expect, or you are not sure"
    " what to put in your file, contact CITB support.",
    "contact_title": "Contact CITB support",
    "email": "Email",
    "phone": "Telephone",
    "hours": "Opening hours",
    "more": "More help on CITB's website",
    "quote_title": "What to tell us",
    "quote": "If your question is about an upload, give its upload id: it is at the end of the"
    " address of the upload's page (after /uploads/). Do not send us learners' details by email.",
    "guides_title": "Guidance on these pages",
    "fair_processing": "You can share the Fair Processing Notice with learners: it explains how"
    " their details will be used.",
}

COOKIES: Final = {
    "intro": "These pages put small files (cookies) on your computer only where the service"
    " needs them to work. They are not used to track you or for advertising, and there are no"
    " analytics cookies, so there is nothing to accept or reject.",
    "caption": "Cookies these pages use",
    "name": "Name",
    "purpose": "What it is for",
    "expires": "When it ends",
}
# Every cookie the pages set (site.SESSION_COOKIE and site.SIGN_IN_COOKIE; a test checks).
COOKIE_LIST: Final = (
    (
        "ato_session",
        "Keeps you signed in as you move between pages.",
        "When you sign out, after 30 minutes without use, or 8 hours after you signed in.",
    ),
    (
        "ato_sign_in",
        "Protects the sign-in form from being sent by another website.",
        "When you sign in, or after 1 hour.",
    ),
)

ACCESSIBILITY: Final = {
    "intro": "This statement applies to the Submit Bulk Achievements pages. CITB wants as many"
    " people as possible to be able to use them. You should be able to:",
    "can": (
        "move through every page, and send a file, using just a keyboard;",
        "find every form field, table and error by its label, heading or caption, as a screen"
        " reader reads them;",
        "use the pages with JavaScript turned off: only the live progress bar needs it;",
        "make the text larger with your browser's settings or zoom: text sizes follow them.",
    ),
    "status_title": "How accessible the pages are",
    "status": "The pages aim to meet the Web Content Accessibility Guidelines (WCAG) version 2.2"
    " at level AA. Each page is checked with the axe-core accessibility checker in a browser,"
    " and by hand with a keyboard.",
    "known_title": "What is not fully accessible",
    "known": (
        "Without JavaScript, the page of an upload that is still being checked reloads itself"
        " every few seconds until the result shows (WCAG 2.2.1, timing adjustable). With"
        " JavaScript on, the upload page shows the progress instead.",
        "The guided template is an Excel workbook: how well it works with assistive"
        " technology depends on your spreadsheet program. The blank CSV file and the list of"
        " course codes on these pages give the same guidance.",
    ),
    "report_title": "Reporting problems with accessibility",
    "report": "If you find a problem not listed here, or need information in a different"
    " format, contact CITB support (see Help and contact).",
    "enforcement_title": "Enforcement procedure",
    "enforcement": "The Equality and Human Rights Commission (EHRC) is responsible for enforcing"
    " the accessibility regulations. If you are not happy with how we respond to your"
    " complaint, contact the Equality Advisory and Support Service (EASS).",
    "prepared": "This statement was prepared on 7 December 2026.",
}

MY_UPLOADS: Final = {
    "intro": "Your organisation's uploads, newest first. Open one to see its result, its"
    " accepted achievements and their grant state.",
    "none": "Your organisation has no uploads yet.",
    "caption": "Uploads, newest first",
    "received": "Received",
    "file_name": "File name",
    "status": "Status",
    "rows": "Rows",
    "rows_valid": "Rows accepted",
    "rows_invalid": "Rows with errors",
    "open": "Open",
    "open_label": "Open the upload received {received}",
    "withdrawn": "withdrawn",
    "previous": "Newer uploads",
    "next": "Older uploads",
    "page": "Page {number}",
    "pagination": "Pages of uploads",
    "link_from_result": "See all your uploads",
}

ACHIEVEMENTS: Final = {
    "link": "See the accepted achievements and withdraw them",
    "intro": "The achievements accepted from this upload and where each is on its way to a"
    " grant. You can withdraw an achievement, or the whole upload, until its amendment window"
    " closes; after that it is sent for a grant and can no longer be withdrawn here.",
    "none": "This upload has no accepted achievements.",
    "caption": "Accepted achievements, in file row order",
    "row": "Row",
    "course_code": "Course code",
    "achievement_date": "Achievement date",
    "grant_state": "Grant state",
    "window": "Amendment window",
    "action": "Action",
    "window_open": "Open until {until}",
    "window_closed": "Closed",
    "window_withdrawn": "Not applicable: withdrawn",
    "withdraw": "Withdraw",
    "withdraw_label": "Withdraw the achievement on row {row}",
    "withdraw_upload": "Withdraw the whole upload",
    "upload_withdrawn": "This upload was withdrawn on {at}.",
    "previous": "Previous achievements",
    "next": "Next achievements",
    "pagination": "Pages of achievements",
    "showing": "Achievements {first} to {last} of {total}",
    "back_to_upload": "Back to the upload result",
    "back_to_list": "Back to My uploads",
    "achievement_withdrawn": "The achievement was withdrawn. It will not be sent for a grant.",
    "upload_withdrawn_done": "The upload was withdrawn. None of its achievements will be sent"
    " for a grant.",
    "notice_title": "Success",
}

GRANT_STATE_WORDS: Final = {
    GrantState.HELD.value: "held until the window closes, then claimed",
    GrantState.NOT_ELIGIBLE.value: "recorded, not eligible for a grant",
    GrantState.CLAIMED.value: "grant claimed",
    GrantState.REFUSED.value: "grant refused",
    GrantState.WITHDRAWN.value: "withdrawn",
}

WITHDRAW: Final = {
    "achievement_title": "Withdraw this achievement?",
    "upload_title": "Withdraw this whole upload?",
    "achievement_intro": "You are about to withdraw the achievement on row {row}: course {course},"
    " achieved on {date}.",
    "upload_intro": "You are about to withdraw every achievement accepted from the file"
    " {file_name} ({rows} rows accepted).",
    "consequence": "A withdrawn achievement is not sent for a grant, and this cannot be undone."
    " To record it again, upload it again.",
    "confirm_achievement": "Yes, withdraw this achievement",
    "confirm_upload": "Yes, withdraw the whole upload",
    "cancel": "No, go back",
    "closed_title": "The amendment window has closed",
    "closed": "It can no longer be withdrawn: the amendment window has closed, and the"
    " achievement has been or is being sent for a grant. If it is wrong, contact CITB support"
    " quoting the upload id {upload_id}.",
    "already_title": "Already withdrawn",
    "already": "This has already been withdrawn. Nothing else needs doing.",
    "not_accepted_title": "Nothing to withdraw",
    "not_accepted": "Only an accepted upload has achievements to withdraw; this one was not"
    " accepted.",
    "not_found": "There is no such achievement for your organisation.",
}

NO_SCRIPT_UPLOAD: Final = {
    "terms_legend": "Terms and conditions",
    "terms_label": "I accept the terms and conditions",
    "terms_missing": "Accept the terms and conditions to upload the file.",
    "refresh_note": "This page refreshes itself every few seconds until the result shows.",
}

# The upload page's words for a refused upload, by the refusal's code, where they differ from
# the API's message (which is written for ATO staff too, and is shown for every other code).
UPLOAD_REFUSALS: Final = {
    "TERMS_NOT_ACCEPTED": NO_SCRIPT_UPLOAD["terms_missing"],
}

# What a refused withdrawal tells the ATO, by the refusal's code: keys of WITHDRAW for the
# title and the body. A refusal not listed reads as "nothing to withdraw".
WITHDRAWAL_REFUSALS: Final = {
    "AMENDMENT_WINDOW_CLOSED": ("closed_title", "closed"),
    "ALREADY_WITHDRAWN": ("already_title", "already"),
    "UPLOAD_NOT_ACCEPTED": ("not_accepted_title", "not_accepted"),
}

# Signing in through the portal, CITB's sign-in for each person of an ATO; and with the
# organisation's API key, where that is turned on for an ATO without the portal.
PORTAL_SIGN_IN: Final = {
    "intro": "Each person signs in through the CITB portal with their own account. Your"
    " organisation's uploads and your own actions are then shown under your name.",
    "link": "Sign in through the portal",
    "not_set_up": "Sign-in through the portal is not set up for this service yet. Contact CITB"
    " support.",
    "key_intro": "If your organisation has no portal account, sign in with its API key instead.",
    "key_off": "Sign-in with an API key is turned off. Sign in through the portal.",
    "signed_in_title": "You are signed in",
    "signed_in": "You are signed in as {name}.",
    "continue": "Continue to Submit Bulk Achievements",
    "refused_title": "You could not be signed in",
    "again": "Go back to the portal and sign in again. If it happens again, contact CITB support.",
}

# Why the portal's sign-in was refused, by the refusal (portal_tokens.Refusal), in plain words.
PORTAL_REFUSALS: Final = {
    "expired": "The sign-in link from the portal had expired. It lasts a few minutes.",
    "not_yet_valid": "The sign-in from the portal could not be checked: the clocks disagree.",
    "too_long_lived": "The sign-in from the portal could not be checked.",
    "replayed": "This sign-in from the portal has already been used. Each one works once.",
    "unknown_ato": "Your organisation is not registered to upload bulk achievements yet."
    " Contact CITB support.",
    "keys_unavailable": "The portal's sign-in cannot be checked at the moment. Try again in a"
    " few minutes.",
}
PORTAL_REFUSED_DEFAULT: Final = "The sign-in from the portal could not be checked."

# A viewer's refusal: the portal gives them the role that only sees statuses and problems.
VIEWER: Final = {
    "title": "You cannot do this",
    "body": "You can see your organisation's uploads and their problems, but not upload,"
    " withdraw or download the rows to fix. Ask whoever manages your organisation's portal"
    " accounts to give you the submitter role.",
    "role_viewer": "viewer",
    "role_submitter": "submitter",
}

# The people of an ATO in its pages: who uploaded a file, who withdrew it.
PEOPLE: Final = {
    "uploaded_by": "Uploaded by",
    "by_api": "Your organisation's system",
    "withdrawn_by": "Withdrawn by {name}.",
    "only_mine": "Show only the uploads I made",
    "all_uploads": "Show all your organisation's uploads",
    "signed_in_as": "Signed in as {name}",
}

# The rows to fix of a partially accepted upload (pages/rows_to_fix.py), when there are none
# to give.
ROWS_TO_FIX: Final = {
    "title": "Rows to fix",
    "not_partial": "There are rows to fix only when some rows of an upload were accepted and"
    " others were not. If nothing was accepted, correct the rows listed on the upload's result"
    " page and upload your whole file again.",
    "purged": "We no longer keep the file of this upload: uploaded files are deleted after the"
    " retention period, so we cannot give you its rows to fix. Open your own copy of the file,"
    " correct the rows listed on the upload's result page, delete every other row (those were"
    " accepted), and upload it.",
    "back": "Back to the upload result",
}
