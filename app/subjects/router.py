"""/v1/subjects/{subject_id}: one person's consents, export and erasure (DESIGN §7).

Subject identifiers travel in these paths: the access log records route templates only.

Any recorded id is reachable: `{subject_id:subject_id}` (app/core/subject_id.py) takes the
rest of the path, `/` and line breaks included (a client percent-encodes the id; the server
sees it decoded, `tenant%2F42` as `tenant/42`). The three routes stay apart by their fixed
ends: a GET ending in `/consents` or `/export` reads, the greedy match giving the id
everything before that end (the consents of `a/export` are
`/v1/subjects/a%2Fexport/consents`), and DELETE takes the whole rest (erasing `a/consents` is
`DELETE /v1/subjects/a%2Fconsents`). What is refused when an id is recorded:
app/core/subject_id.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from app.consent.schemas import SubjectConsents
from app.core.deps import request_uow, require
from app.core.instants import Instant
from app.core.openapi import model_response, problems
from app.core.routing import AppRoute, hot
from app.core.security import Principal
from app.core.subject_id import SUBJECT_ID_MAX, SUBJECT_ID_RULES
from app.policies.schemas import KEY_PATTERN
from app.subjects.service import SubjectExport as SubjectExportOut
from app.subjects.service import SubjectService

router = APIRouter(prefix="/v1/subjects", tags=["subjects"], route_class=AppRoute)
# the scopes each route requires (app/core/deps.py: require)
ConsentReadScope = Annotated[Principal, Depends(require("consent:read"))]
SubjectExportScope = Annotated[Principal, Depends(require("consent:read", "dsar:read"))]
SubjectEraseScope = Annotated[Principal, Depends(require("consent:write", "dsar:write"))]


async def get_service(request: Request) -> AsyncIterator[SubjectService]:
    days = request.app.state.settings.due_soon_days
    async with request_uow(request) as uow:
        yield SubjectService(uow, request.app.state.clock, timedelta(days=days))


ServiceDep = Annotated[SubjectService, Depends(get_service)]
SubjectId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=SUBJECT_ID_MAX,
        description="The subject's id, percent-encoded (`tenant/42` → `tenant%2F42`, "
        "`jane@example.com` → `jane%40example.com`): every character of it, `/` included",
    ),
]


@router.get(
    "/{subject_id:subject_id}/consents",
    response_model=SubjectConsents,
    operation_id="getSubjectConsents",
    summary="The subject's consent state, one entry per purpose",
    description="For every purpose of the policies in force: `granted`, `denied`, `withdrawn`, "
    "`expired` or `not_set` (with the policy's `default`). A subject never recorded reads as all "
    "`not_set`. `as_of` answers for a past moment from the ledger, with the justifying events.\n\n"
    f"Subject ids: {SUBJECT_ID_RULES}",
    responses=problems(),
)
@hot
async def get_subject_consents(
    subject_id: SubjectId,
    service: ServiceDep,
    who: ConsentReadScope,
    policy_key: Annotated[str | None, Query(pattern=KEY_PATTERN, max_length=64)] = None,
    as_of: Annotated[Instant | None, Query(description="Answer for this past instant")] = None,
) -> Any:
    return model_response(await service.consents(who, subject_id, policy_key, as_of))


@router.get(
    "/{subject_id:subject_id}/export",
    response_model=SubjectExportOut,
    operation_id="exportSubject",
    summary="Everything held on the subject, as portable JSON",
    description="The subject's consent events, current states and DSAR tickets. An id never "
    f"recorded in this tenant is 404.\n\nSubject ids: {SUBJECT_ID_RULES}",
    responses=problems(404),
)
async def export_subject(
    subject_id: SubjectId, service: ServiceDep, who: SubjectExportScope
) -> SubjectExportOut:
    return await service.export(who, subject_id)


@router.delete(
    "/{subject_id:subject_id}",
    status_code=204,
    response_class=Response,
    operation_id="eraseSubject",
    summary="Erase the subject (the ledger keeps its proof under a pseudonym)",
    description="Replaces the identifier by a random pseudonym in the consent ledger, its "
    "current state and the subject's DSAR tickets (whose e-mail and name are removed), and "
    "records the erasure (pseudonym, time, actor, counts — never the identifier).\n\n"
    f"Subject ids: {SUBJECT_ID_RULES}",
    responses=problems(404, 409),
)
async def erase_subject(
    subject_id: SubjectId, service: ServiceDep, who: SubjectEraseScope
) -> Response:
    await service.erase(who, subject_id)
    return Response(status_code=204)
