"""The OpenAPI document says what errors really look like.

Every error is an RFC 9457 problem (``application/problem+json``, from Litestar's problem
details plugin), but Litestar documents its validation errors as ``application/json`` with
``status_code`` where the problem has ``status``, and documents no 404 or 503 at all. So a
client generated from ``/schema``, or schemathesis, would find the document lying. Here each
operation's error responses are rewritten as problems, and a ``default`` response covers the
ones no operation lists (404 for a missing or private room, 409, 503 when the database is
down, 500). Success answers that may also be streams are described by their JSON form.
"""

from __future__ import annotations

from litestar.openapi.spec import OpenAPI, OpenAPIMediaType, OpenAPIResponse, Operation, Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

from tomchat.chat.export import FILE_KINDS
from tomchat.media.files import AUDIO_TYPES

PROBLEM_JSON = "application/problem+json"

PROBLEM = Schema(
    type=OpenAPIType.OBJECT,
    required=["status", "title", "detail"],
    properties={
        "type": Schema(type=OpenAPIType.STRING),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER, minimum=400, maximum=599),
        "detail": Schema(type=OpenAPIType.STRING),
        "instance": Schema(type=OpenAPIType.STRING),
        "extra": Schema(),
    },
    description="An RFC 9457 problem",
)


def _problem(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=description, content={PROBLEM_JSON: OpenAPIMediaType(schema=PROBLEM)}
    )


def _operations(openapi: OpenAPI) -> list[Operation]:
    found: list[Operation] = []
    for item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "options", "head", "patch", "trace"):
            operation = getattr(item, method, None)
            if operation is not None:
                found.append(operation)
    return found


def _without_streams(response: OpenAPIResponse) -> None:
    """``-> EventPage | Stream`` comes out as ``oneOf: [EventPage, {}]``: the stream has no
    JSON schema, and an empty schema matches everything, so no answer could ever match
    exactly one of them. The JSON alternative alone is what the JSON answer looks like."""
    for media in (response.content or {}).values():
        schema = media.schema
        if isinstance(schema, Schema) and schema.one_of:
            kept = [s for s in schema.one_of if not (isinstance(s, Schema) and s == Schema())]
            if len(kept) == 1:
                media.schema = kept[0]
            elif len(kept) < len(schema.one_of):
                schema.one_of = kept


def _streamed() -> dict[str, list[str]]:
    """Answers streamed in a media type Litestar cannot see from the handler's signature."""
    return {
        "/api/rooms/{room_id}/transcript": [
            k.media_type.split(";")[0] for k in FILE_KINDS.values()
        ],
        "/api/rooms/{room_id}/replay": ["text/event-stream"],
        "/api/rooms/{room_id}/events": ["application/x-ndjson"],  # with Accept: it
        "/media/{name}": sorted(set(AUDIO_TYPES.values())),
    }


# One Server-Sent Event: ``data`` holds a logged event (or the end marker) as JSON text.
SSE_EVENT = Schema(
    type=OpenAPIType.OBJECT,
    properties={
        "data": Schema(type=OpenAPIType.STRING),
        "event": Schema(type=OpenAPIType.STRING),
        "id": Schema(type=OpenAPIType.STRING),
        "retry": Schema(type=OpenAPIType.INTEGER),
    },
)


def _body_schema(media_type: str) -> Schema:
    if media_type == "text/event-stream":
        return SSE_EVENT
    if media_type.startswith("audio/"):
        return Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
    return Schema(type=OpenAPIType.STRING)


def _document_streams(openapi: OpenAPI) -> None:
    for path, media_types in _streamed().items():
        item = (openapi.paths or {}).get(path)
        operation = item.get if item is not None else None
        if operation is None or not operation.responses:
            continue
        ok = operation.responses.get("200")
        if not isinstance(ok, OpenAPIResponse):
            continue
        content = dict(ok.content or {})
        json_schema = content.get("application/json")
        keep_json = "application/json" in media_types or path.endswith("/events")
        content = {"application/json": json_schema} if keep_json and json_schema else {}
        for media_type in media_types:
            if media_type == "application/json":
                continue
            content[media_type] = OpenAPIMediaType(schema=_body_schema(media_type))
        ok.content = content


def document_problems(openapi: OpenAPI) -> None:
    _document_streams(openapi)
    for operation in _operations(openapi):
        responses = operation.responses if operation.responses is not None else {}
        for status, response in list(responses.items()):
            if isinstance(response, OpenAPIResponse) and status.startswith("2"):
                _without_streams(response)
            if status.isdigit() and int(status) >= 400:
                description = response.description if isinstance(response, OpenAPIResponse) else ""
                responses[status] = _problem(description or "a problem")
        responses.setdefault(
            "default",
            _problem("any other error: 404 for a missing (or private) room, 409, 429, 500, 503"),
        )
        operation.responses = responses
