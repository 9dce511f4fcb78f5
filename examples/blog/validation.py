"""Checks on the JSON the API accepts, with one message per field at fault.

Each ``check_*`` function takes the decoded request object and returns
``(fields, errors)``: the cleaned values to store, and a dict mapping each
offending field name to a short message.  When ``errors`` is not empty the
request must be refused with 422 and ``{"errors": errors}``.  Keys that are
not fields of the resource are ignored, as a changeset would ignore them.
"""
from dataclasses import dataclass

TITLE_MAX = 200
POST_BODY_MAX = 20_000
COMMENT_BODY_MAX = 5_000
AUTHOR_MAX = 80

REQUIRED = "is required"
NOT_STRING = "must be a string"
BLANK = "can't be blank"
NOT_TEXT = "must be valid Unicode text (no lone surrogates)"


@dataclass(frozen=True)
class Field:
    name: str
    max_length: int
    required: bool = True
    strip: bool = False


POST_FIELDS = (
    Field("title", TITLE_MAX, strip=True),
    Field("body", POST_BODY_MAX),
)
COMMENT_FIELDS = (
    Field("body", COMMENT_BODY_MAX),
    Field("author", AUTHOR_MAX, required=False, strip=True),
)


def check_new_post(data):
    """Validate the body of ``POST /posts``: title and body are required."""
    return _check(data, POST_FIELDS, partial=False)


def check_post_update(data):
    """Validate the body of ``PUT /posts/{id}``: any subset of the fields.

    At least one field must be given; an update that names none is refused
    with an error under the key ``post``.
    """
    fields, errors = _check(data, POST_FIELDS, partial=True)
    if not fields and not errors:
        names = " and/or ".join(field.name for field in POST_FIELDS)
        errors["post"] = f"nothing to update: give {names}"
    return fields, errors


def check_new_comment(data):
    """Validate the body of ``POST /posts/{id}/comments``.

    ``author`` may be absent or null; it is then stored as null.
    """
    fields, errors = _check(data, COMMENT_FIELDS, partial=False)
    fields.setdefault("author", None)
    return fields, errors


def _check(data, spec, partial):
    fields, errors = {}, {}
    for field in spec:
        value = data.get(field.name)
        if value is None:
            if field.name in data and field.required:
                errors[field.name] = REQUIRED
            elif field.required and not partial:
                errors[field.name] = REQUIRED
            continue
        message = _check_string(field, value)
        if message:
            errors[field.name] = message
        else:
            fields[field.name] = value.strip() if field.strip else value
    return fields, errors


def _check_string(field, value):
    if not isinstance(value, str):
        return NOT_STRING
    if not value.strip():
        return BLANK
    try:
        # JSON's \ud800 escapes decode to lone surrogates, which SQLite
        # (and any UTF-8 reader) cannot store.
        value.encode("utf-8")
    except UnicodeEncodeError:
        return NOT_TEXT
    if len(value) > field.max_length:
        return f"must be at most {field.max_length} characters"
    return None
