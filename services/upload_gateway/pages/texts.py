"""Every word the pages show, in one place: titles, labels, messages, guidance and advice.

Nothing here holds personal data; page titles and URLs never carry any either.
"""

from __future__ import annotations

from typing import Final

from services.core.scheme.codes import Code
from services.core.scheme.columns import Column
from services.core.states import UploadState

SERVICE_NAME: Final = "Submit Bulk Achievements"

TITLES: Final = {
    "sign_in": "Sign in",
    "submit": "Submit Bulk Achievements",
    "scheme": "Technical CSV scheme and guidance notes",
    "upload": "Upload a new bulk achievement",
    "result": "Upload result",
    "signed_out": "You have signed out",
    "error": "Something went wrong",
}

SIGN_IN: Final = {
    "intro": "Sign in with your organisation's API key. The key is checked once; this browser"
    " then keeps only a session that ends when you sign out or after 30 minutes without use.",
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
    "done": "You have signed out. The session has ended on the server too.",
    "again": "Sign in again",
}

SUBMIT: Final = {
    "intro": "Choose one of the four options below. If your own system exports the"
    " information, download the technical CSV scheme and guidance notes to set it up, then"
    " upload. If it does not, download the blank CSV file or the guided template, fill it in,"
    " save it as CSV and upload it.",
    "scheme": "Download technical CSV scheme and guidance notes",
    "scheme_hint": "Every column, its format and an example, and every check with its message.",
    "blank": "Download blank CSV file",
    "blank_hint": "The header row only, in template order.",
    "workbook": "Download guided template (Excel workbook)",
    "workbook_hint": "A guidance note above each column, mandatory columns in blue, the"
    " identifier group in yellow and course codes to choose from. Save it as CSV before"
    " uploading.",
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
    "severity": "Severity",
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
    "no (see warnings)": "Optional (recommended)",
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
    Column.COURSE_CODE: "Choose the short duration course code from the list (the live course"
    " catalogue).",
    Column.ACHIEVEMENT_DATE: "The day the learner achieved the course; not in the future.",
    Column.LEARNER_FORENAME: "As on the learner's record.",
    Column.LEARNER_SURNAME: "As on the learner's record.",
    Column.DATE_OF_BIRTH: "The learner must be at least 15 on the achievement date.",
    Column.ULN: "Unique Learner Number. Give at least one of ULN, NINumber and"
    " CITBIndividualId (the yellow columns).",
    Column.NI_NUMBER: "National Insurance number. Give at least one of the yellow columns.",
    Column.CITB_INDIVIDUAL_ID: "CITB individual id. Give at least one of the yellow columns.",
    Column.EMPLOYER_LEVY_NUMBER: "The employer's CITB levy registration number: it automates"
    " the employer's grant payment. Without it no grant is claimed.",
    Column.NOTES: "Optional. Passed on to the employer grant payment system: ask the levy"
    " paying employer what, if anything, they need here.",
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

WORKBOOK_INSTRUCTIONS: Final = (
    "1. If a yellow 'read only' or 'Protected view' bar shows at the top, click 'Enable editing'.",
    "2. Go to the 'Achievements' sheet. Keep its first row (the headers) exactly as it is.",
    "3. Point at a header to read its guidance note. Blue headers are mandatory. Yellow"
    " headers are the identifier group: fill in at least one of them in every row.",
    "4. Choose each course code from the drop-down list in column B.",
    "5. The columns are formatted as text so that dates keep their form and long numbers"
    " (ULN) keep all their digits: type dates as dd/mm/yyyy.",
    "6. To save: stay on the 'Achievements' sheet, then choose File > Save As (or Export)"
    " and pick the type 'CSV UTF-8 (Comma delimited) (*.csv)'. Only the sheet you are on is"
    " saved, which is what you want. Keep the workbook too if you like, but upload the CSV.",
    "7. Once saved, do not open the CSV file again in a spreadsheet before uploading: it may"
    " change dates and long numbers.",
    "8. Go back to 'Submit Bulk Achievements' and choose 'Upload a new bulk achievement'.",
)

WORKBOOK: Final = {
    "instructions_title": "How to use this template and save it as CSV",
    "legend_required": "Blue header: mandatory column.",
    "legend_identifier": "Yellow header: at least one of these in every row.",
    "courses_sheet": "Courses",
    "data_sheet": "Achievements",
    "instructions_sheet": "How to save as CSV",
    "course_prompt_title": "Course code",
    "course_prompt": "Choose a course code from the catalogue.",
    "course_error": "Choose a course code from the list.",
}

TERMS: Final = (
    "You confirm that the learners in this file achieved the courses on the dates given.",
    "You confirm that you may share these learners' details with CITB for recording their"
    " achievements and paying grants, as the Fair Processing Notice describes.",
    "You understand that accepted achievements may be sent for a grant payment to the"
    " employer whose levy number is given.",
)

UPLOAD: Final = {
    "intro": "Choose the CSV file you saved, choose what should happen if some rows have"
    " errors, then upload it. You will be asked to accept the terms and conditions first.",
    "file_label": "CSV file",
    "file_hint": "A .csv file saved as 'CSV UTF-8' or 'CSV (Comma delimited)'.",
    "policy_legend": "If some rows have errors",
    "button": "Upload",
    "no_file": "Choose a CSV file to upload.",
    "no_script": "Uploading from this page needs JavaScript. Turn it on, or send the file"
    " through the API.",
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
    "rows": "Rows",
    "rows_invalid": "Rows with errors",
    "rows_warned": "Rows with warnings",
    "file_name": "File name",
    "received": "Received",
    "problems": "Problems found",
    "problems_intro": "Correct these rows in your file and upload it again. Values are"
    " partly hidden to protect learners' details.",
    "row": "Row",
    "column": "Column",
    "code": "Code",
    "message": "Message",
    "value": "Value (partly hidden)",
    "download_errors": "Download the problems as CSV",
    "more_problems": "Only the first {shown} problems are listed here; the CSV has them all.",
    "truncated": "There are {total} problems in all; {stored} were kept in the report.",
    "in_progress": "The file is still being checked. This page shows the result once it is done.",
    "refresh": "Check again",
    "another": "Upload another file",
    "back": "Back to Submit Bulk Achievements",
    "not_found": "There is no such upload for your organisation.",
    "refused_title": "The file was refused",
    "advice_title": "How to save your file as CSV",
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

# How each status reads on the page: the words, without the underscores.
STATUS_WORDS: Final = {status.value: status.value.replace("_", " ") for status in UploadState}

ERRORS: Final = {
    "csrf": "The form had expired or did not come from this site. Go back, reload the page and"
    " try again.",
    "not_found": "Page not found.",
}

SKIP_LINK: Final = "Skip to main content"
