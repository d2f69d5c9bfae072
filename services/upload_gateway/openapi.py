"""The OpenAPI 3 document, built from the app's route table so it cannot drift from it.

Each registered route's name is looked up in `OPERATIONS`; a route without an entry fails the
build (and the coverage test), and an entry without a route is reported by the same test.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.core.scheme.codes import Policy
from services.core.states import GrantState, UploadState
from services.upload_gateway.appkeys import PUBLIC_ROUTES, SETTINGS

JSON = "application/json"
Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(description, _ref("Error"))


_STRING = {"type": "string"}
_INT = {"type": "integer"}
_TIME = {"type": "string", "format": "date-time"}
_STATUSES = [state.value for state in UploadState]
_GRANT_STATES = [state.value for state in GrantState]
_POLICY = {"type": "string", "enum": [policy.value for policy in Policy]}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": _STRING, "message": _STRING},
    },
    "FileError": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": _STRING, "message": _STRING},
    },
    "Upload": {
        "type": "object",
        "required": [
            "upload_id",
            "file_name",
            "size_bytes",
            "sha256",
            "policy",
            "status",
            "message",
            "encoding",
            "rows_total",
            "rows_valid",
            "rows_invalid",
            "rows_warned",
            "rows_processed",
            "counts_by_code",
            "file_errors",
            "upload_date",
            "received_at",
            "terms_accepted_at",
            "validation_started_at",
            "validated_at",
            "withdrawn_at",
            "reference_version",
        ],
        "properties": {
            "upload_id": {"type": "string", "format": "uuid"},
            "file_name": _STRING,
            "size_bytes": {"type": "integer", "minimum": 0},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "policy": _POLICY,
            "status": {"type": "string", "enum": _STATUSES},
            "message": {
                **_STRING,
                "description": '"The data is valid" when the status is passed. When it is errored'
                " (the pipeline could not finish; nothing accepted): upload again, and the"
                " reference to quote to support.",
            },
            "encoding": _nullable({"type": "string"}),
            "rows_total": _INT,
            "rows_valid": _INT,
            "rows_invalid": _INT,
            "rows_warned": _INT,
            "rows_processed": {**_INT, "description": "Progress while validating."},
            "counts_by_code": {"type": "object", "additionalProperties": _INT},
            "file_errors": {"type": "array", "items": _ref("FileError")},
            "upload_date": {"type": "string", "format": "date"},
            "received_at": _TIME,
            "terms_accepted_at": _TIME,
            "validation_started_at": _nullable(_TIME),
            "validated_at": _nullable(_TIME),
            "withdrawn_at": _nullable(_TIME),
            "reference_version": _nullable(
                {
                    **_INT,
                    "description": "The version of the course catalogue and levy register"
                    " every row was checked against (set once the upload is planned).",
                }
            ),
        },
    },
    "UploadPage": {
        "type": "object",
        "required": ["items", "limit", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("Upload")},
            "limit": _INT,
            "next_cursor": _nullable(_STRING),
        },
    },
    "Issue": {
        "type": "object",
        "required": ["row", "column", "code", "severity", "message", "value"],
        "properties": {
            "row": _INT,
            "column": _nullable(_STRING),
            "code": _STRING,
            "severity": {"type": "string", "enum": ["error", "warning"]},
            "message": _STRING,
            "value": _nullable({**_STRING, "description": "As the validator masked it."}),
        },
    },
    "IssueReport": {
        "type": "object",
        "required": [
            "upload_id",
            "issues_total",
            "issues_stored",
            "issues_not_stored",
            "truncated",
            "limit",
            "offset",
            "next_offset",
            "issues",
        ],
        "properties": {
            "upload_id": {"type": "string", "format": "uuid"},
            "issues_total": {**_INT, "description": "Every issue found (from counts_by_code)."},
            "issues_stored": {
                **_INT,
                "description": (
                    "Issues kept for the report: the first ones by row, then template column"
                    " order, row-level codes last (scheme sections 7 and 8), up to the cap."
                ),
            },
            "issues_not_stored": {**_INT, "description": "How many more the report leaves out."},
            "truncated": {"type": "boolean"},
            "limit": _INT,
            "offset": _INT,
            "next_offset": _nullable(_INT),
            "issues": {"type": "array", "items": _ref("Issue")},
        },
    },
    "Achievement": {
        "type": "object",
        "required": [
            "achievement_id",
            "upload_id",
            "row_number",
            "course_code",
            "achievement_date",
            "grant_eligible",
            "grant_state",
            "release_at",
            "grant_code",
            "grant_amount_pence",
            "claimed_at",
            "withdrawn_at",
        ],
        "properties": {
            "achievement_id": {"type": "string", "format": "uuid"},
            "upload_id": {"type": "string", "format": "uuid"},
            "row_number": _INT,
            "course_code": _STRING,
            "achievement_date": {"type": "string", "format": "date"},
            "grant_eligible": {"type": "boolean"},
            "grant_state": {
                "type": "string",
                "enum": _GRANT_STATES,
            },
            "release_at": {**_TIME, "description": "Held until: the amendment window's end."},
            "grant_code": _nullable(_STRING),
            "grant_amount_pence": _nullable(_INT),
            "claimed_at": _nullable(_TIME),
            "withdrawn_at": _nullable(_TIME),
        },
    },
    "AchievementPage": {
        "type": "object",
        "required": ["upload_id", "total", "limit", "offset", "next_offset", "items"],
        "properties": {
            "upload_id": {"type": "string", "format": "uuid"},
            "total": _INT,
            "limit": _INT,
            "offset": _INT,
            "next_offset": _nullable(_INT),
            "items": {"type": "array", "items": _ref("Achievement")},
        },
    },
    "Course": {
        "type": "object",
        "required": ["code", "title", "grant_amount_pence", "open", "valid_from", "valid_to"],
        "properties": {
            "code": _STRING,
            "title": _STRING,
            "grant_amount_pence": {**_INT, "description": "The grant for an achievement."},
            "open": {
                "type": "boolean",
                "description": "Achievements dated today (UK time) are approved for it.",
            },
            "valid_from": {"type": "string", "format": "date"},
            "valid_to": _nullable({"type": "string", "format": "date"}),
        },
    },
    "CourseList": {
        "type": "object",
        "required": ["reference_version", "as_of", "courses"],
        "properties": {
            "reference_version": {
                **_INT,
                "description": "The catalogue version an upload planned now is checked against.",
            },
            "as_of": {
                "type": "string",
                "format": "date",
                "description": "The UK date `open` is decided on.",
            },
            "courses": {"type": "array", "items": _ref("Course")},
        },
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not_ready"]},
            "checks": {"type": "object", "additionalProperties": _STRING},
        },
    },
}


def _path_id(name: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _rows_to_fix(form: str, media_type: str) -> Schema:
    return {
        "summary": f"The rows to fix of a partially accepted upload, as a {form} to correct and"
        " upload.",
        "description": (
            "The rows that were not accepted, exactly as sent, in template column order, while"
            " the uploaded file is kept (scheme section 9). Rows whose only errors are DUP_01 or"
            " DUP_02 are left out: a guidance record above the header names them. Uploading the"
            " file checks its rows afresh. A guided workbook's rows are read from its sheet as"
            " stored. Each download is recorded in the audit trail (rows_to_fix_downloaded)."
        ),
        "tags": ["uploads"],
        "parameters": [_path_id("upload_id")],
        "responses": {
            "200": {
                "description": "The file.",
                "headers": {
                    "X-Rows-To-Fix": {"schema": _STRING, "description": "Rows in the file."},
                    "X-Duplicates-Left-Out": {
                        "schema": _STRING,
                        "description": "Rows left out as duplicates (DUP_01, DUP_02).",
                    },
                },
                "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
            },
            "409": _error("NO_ROWS_TO_FIX: the upload is not partially_accepted."),
            "410": _error("FILE_PURGED: the uploaded file is no longer kept."),
            **_NOT_FOUND,
            **_PROTECTED,
        },
    }


def _page_params(default: int, maximum: int) -> list[Schema]:
    return [
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
            "Page size.",
        ),
        _query(
            "offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000_000}, "Items to skip."
        ),
    ]


# Answers every API-key route can give besides its own.
_PROTECTED = {
    "401": _error("No valid API key."),
    "503": _error("The database is temporarily unavailable."),
}
_NOT_FOUND = {"404": _error("No such resource for this ATO (another ATO's looks the same).")}
_BAD_PARAMS = {"400": _error("A query parameter is out of range or malformed.")}
_BAD_BODY = {
    "400": _error("INVALID_BODY: a body (none is needed) too large, too deep or malformed JSON."),
    "415": _error(
        "UNSUPPORTED_CONTENT_ENCODING: a body with a Content-Encoding (send it uncoded)."
    ),
}
_UPLOAD_ANSWER = {"Location": {"schema": _STRING, "description": "/v1/uploads/{upload_id}"}}

OPERATIONS: dict[str, Schema] = {
    "healthz": {
        "summary": "The process answers.",
        "tags": ["operations"],
        "responses": {
            "200": _json("Alive.", {"type": "object", "properties": {"status": _STRING}})
        },
    },
    "readyz": {
        "summary": "PostgreSQL and the storage folder are usable (Kafka is reported, not"
        " required: uploads wait in the outbox).",
        "tags": ["operations"],
        "responses": {
            "200": _json("Ready.", _ref("Readiness")),
            "503": _json("A dependency is unreachable.", _ref("Readiness")),
        },
    },
    "metrics": {
        "summary": "Prometheus metrics.",
        "tags": ["operations"],
        "responses": {
            "200": {
                "description": "Prometheus text.",
                "content": {"text/plain": {"schema": _STRING}},
            }
        },
    },
    "openapi": {
        "summary": "This document.",
        "tags": ["documents"],
        "responses": {"200": _json("OpenAPI 3.", {"type": "object"})},
    },
    "template_csv": {
        "summary": "The CSV template's header row only (the scheme's headers), for an ATO's own"
        " system's export.",
        "tags": ["documents"],
        "responses": {
            "200": {
                "description": "bulk-achievements-template.csv",
                "headers": {"Content-Disposition": {"schema": _STRING}},
                "content": {"text/csv": {"schema": _STRING}},
            }
        },
    },
    "scheme": {
        "summary": "The technical CSV scheme: columns, rules and codes.",
        "tags": ["documents"],
        "responses": {"200": _json("The scheme.", {"type": "object"})},
    },
    "courses": {
        "summary": "The short duration course codes: title, grant amount and whether each is"
        " open, from the live course catalogue.",
        "tags": ["documents"],
        "responses": {
            "200": _json("The catalogue, by code.", _ref("CourseList")),
            "503": _error("The database is temporarily unavailable."),
        },
    },
    "events_schema": {
        "summary": "JSON Schema of the events on Kafka.",
        "tags": ["documents"],
        "responses": {"200": _json("JSON Schema.", {"type": "object"})},
    },
    "create_upload": {
        "summary": "Upload a CSV file, or the guided workbook, of learner achievements.",
        "description": (
            "The body is the CSV (text/csv) with file_name, policy and terms_accepted as query"
            " parameters, or multipart/form-data with a `file` part and those as fields (before"
            " or after the file). The file is streamed to storage and checked while it arrives."
            " The guided workbook (.xlsx, scheme section 9) may be sent as it is, as the body"
            " or the `file` part; any other workbook is refused (FILE_01)."
        ),
        "tags": ["uploads"],
        "parameters": [
            _query("file_name", {"type": "string", "maxLength": 255}, "Shown back to the ATO."),
            _query("policy", _POLICY, "Defaults to the ATO's policy."),
            _query("terms_accepted", {"type": "boolean"}, "Must be true."),
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "A retry with the same key and bytes returns the same upload.",
            },
        ],
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": _STRING},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                    "schema": {"type": "string", "format": "binary"}
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "file_name": {"type": "string", "maxLength": 255},
                            "policy": _POLICY,
                            "terms_accepted": {"type": "string", "enum": ["true", "false"]},
                        },
                    }
                },
            },
        },
        "responses": {
            "202": {
                **_json("Received; validation follows.", _ref("Upload")),
                "headers": _UPLOAD_ANSWER,
            },
            "200": {
                **_json("A retry: the first upload with this Idempotency-Key.", _ref("Upload")),
                "headers": _UPLOAD_ANSWER,
            },
            "400": _error("Malformed request (policy, Idempotency-Key, multipart body)."),
            "408": _error("REQUEST_TIMEOUT: the client stopped sending the body."),
            "409": _error("IDEMPOTENCY_KEY_REUSED: the key was used for different bytes."),
            "413": _error(
                "FILE_03: the file or the whole body is larger than the size limit, or a"
                " multipart body has too many parts."
            ),
            "415": _error(
                "UNSUPPORTED_MEDIA_TYPE: the body is neither CSV nor multipart/form-data;"
                " UNSUPPORTED_CONTENT_ENCODING: the body has a Content-Encoding (send it uncoded)."
            ),
            "422": _error(
                "FILE_01 (a workbook other than the guided one, or binary), FILE_03 (a workbook"
                " that expands past the size limit), FILE_02 (empty) or TERMS_NOT_ACCEPTED."
            ),
            "429": {
                **_error("TOO_MANY_UPLOADS: this ATO's concurrent-upload limit is reached."),
                "headers": {"Retry-After": {"schema": _STRING, "description": "Seconds."}},
            },
            "507": _error("INSUFFICIENT_STORAGE: no room to store the file; nothing was kept."),
            **_PROTECTED,
        },
    },
    "list_uploads": {
        "summary": "The ATO's uploads, newest first.",
        "tags": ["uploads"],
        "parameters": [
            *_page_params(50, 200),
            _query("cursor", _STRING, "next_cursor of the previous page."),
            _query("status", {"type": "string", "enum": _STATUSES}, "Only uploads in this status."),
        ],
        "responses": {
            "200": _json("A page of uploads.", _ref("UploadPage")),
            **_BAD_PARAMS,
            **_PROTECTED,
        },
    },
    "get_upload": {
        "summary": "One upload: status, counts, progress, file errors.",
        "tags": ["uploads"],
        "parameters": [_path_id("upload_id")],
        "responses": {"200": _json("The upload.", _ref("Upload")), **_NOT_FOUND, **_PROTECTED},
    },
    "upload_errors": {
        "summary": "The error report: every stored issue by row, as JSON or CSV.",
        "description": (
            "CSV with `Accept: text/csv` or `?format=csv`;"
            " cells a spreadsheet would run as formulas are prefixed with '."
        ),
        "tags": ["uploads"],
        "parameters": [
            _path_id("upload_id"),
            _query("format", {"type": "string", "enum": ["json", "csv"]}, "Overrides Accept."),
            *_page_params(1000, 10_000),
        ],
        "responses": {
            "200": {
                "description": "The report (JSON is paged; CSV holds every stored issue).",
                "headers": {
                    "X-Issues-Total": {"schema": _STRING, "description": "CSV only."},
                    "X-Issues-Truncated": {"schema": _STRING, "description": "CSV only."},
                    "X-Issues-Not-Stored": {
                        "schema": _STRING,
                        "description": (
                            "CSV only. When it is not 0, the CSV's last record has no row and"
                            " no code, and its message says how many more problems there are."
                        ),
                    },
                },
                "content": {JSON: {"schema": _ref("IssueReport")}, "text/csv": {"schema": _STRING}},
            },
            **_BAD_PARAMS,
            **_NOT_FOUND,
            **_PROTECTED,
        },
    },
    "rows_to_fix_csv": _rows_to_fix("CSV", "text/csv"),
    "rows_to_fix_xlsx": _rows_to_fix(
        "guided workbook, each cell at fault commented with its problems,",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    "upload_achievements": {
        "summary": "The upload's accepted rows and their grant state (no learner data).",
        "tags": ["achievements"],
        "parameters": [_path_id("upload_id"), *_page_params(100, 1000)],
        "responses": {
            "200": _json("A page of achievements.", _ref("AchievementPage")),
            **_BAD_PARAMS,
            **_NOT_FOUND,
            **_PROTECTED,
        },
    },
    "withdraw_upload": {
        "summary": "Withdraw every achievement of an upload during the amendment window.",
        "tags": ["achievements"],
        "parameters": [_path_id("upload_id")],
        "responses": {
            "200": _json("The withdrawn upload.", _ref("Upload")),
            **_BAD_BODY,
            "409": _error("AMENDMENT_WINDOW_CLOSED, ALREADY_WITHDRAWN or UPLOAD_NOT_ACCEPTED."),
            **_NOT_FOUND,
            **_PROTECTED,
        },
    },
    "withdraw_achievement": {
        "summary": "Withdraw one accepted achievement during the amendment window.",
        "tags": ["achievements"],
        "parameters": [_path_id("achievement_id")],
        "responses": {
            "200": _json("The withdrawn achievement.", _ref("Achievement")),
            **_BAD_BODY,
            "409": _error("AMENDMENT_WINDOW_CLOSED, ALREADY_WITHDRAWN or UPLOAD_NOT_ACCEPTED."),
            **_NOT_FOUND,
            **_PROTECTED,
        },
    },
}


def build_document(app: web.Application) -> Schema:
    public = app[PUBLIC_ROUTES]
    paths: dict[str, dict[str, Schema]] = {}
    for route in app.router.routes():
        if route.name is None or route.resource is None:
            continue
        operation: Schema = {"operationId": route.name, **OPERATIONS[route.name]}
        if route.name in public:
            operation["security"] = []
        paths.setdefault(route.resource.canonical, {})[route.method.lower()] = operation
    settings = app[SETTINGS]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Bulk learner achievements: upload gateway",
            "version": "1.0.0",
            "description": (
                "The front door for ATOs. Every query is scoped to the API key's ATO. Files up to"
                f" {settings.limits.max_upload_bytes} bytes; errors are JSON {{code, message}}."
                " The ATO's own pages under /ato, where each person signs in through CITB's"
                " portal, are not part of this API."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearerAuth": []}],
    }


async def openapi_handler(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app))
