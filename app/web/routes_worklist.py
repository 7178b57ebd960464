"""The worklist page and the rows it polls."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from app.context import ServiceContext
from app.deps import ContextDep
from app.services.daily_qa import unacknowledged_failures
from app.services.qa_verdict import QaDay
from app.web import sessions
from app.web.deps import DataViewer, PageViewer, WebRefusalError, WebSettingsDep, page
from app.web.routes_held import held_count
from app.web.worklist import Row, rows_of_day, today

router = APIRouter(include_in_schema=False)
DayParam = Annotated[str | None, Query(max_length=10, pattern=r"^\d{4}-\d{2}-\d{2}$")]


def _day(text: str | None) -> date:
    if not text:
        return today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise WebRefusalError(400, f"{text!r} is not a date: use YYYY-MM-DD") from None


def _rows(ctx: ServiceContext, day: date) -> list[Row]:
    with ctx.sessions() as db:
        return rows_of_day(db, ctx.store, day)


def _qa_failures(ctx: ServiceContext) -> dict[str, list[QaDay]]:
    with ctx.sessions() as db:
        return unacknowledged_failures(db)


@router.get("/worklist")
async def worklist_page(
    request: Request,
    ctx: ContextDep,
    settings: WebSettingsDep,
    viewer: PageViewer,
    day: DayParam = None,
) -> Response:
    chosen = _day(day)
    rows = await run_in_threadpool(_rows, ctx, chosen)
    _prefetch(request, ctx, rows)
    context = {
        "qa_failures": await run_in_threadpool(_qa_failures, ctx),
        "held_count": await run_in_threadpool(held_count, ctx, viewer),
        "viewer": viewer.user,
        "csrf_token": sessions.csrf_token(viewer),
        "rows": rows,
        "day": chosen.isoformat(),
        "is_today": chosen == today(),
        "previous_day": (chosen - timedelta(days=1)).isoformat(),
        "next_day": (chosen + timedelta(days=1)).isoformat(),
        "poll_ms": int(settings.worklist_poll_seconds * 1000),
    }
    return page(request, "worklist.html", context)


@router.get("/worklist/rows")
async def worklist_rows(
    request: Request, ctx: ContextDep, viewer: DataViewer, day: DayParam = None
) -> Response:
    """The table body alone, for the page's polling (does not extend the session); for a
    physicist, the number of held DICOM series in ``X-Held-Series``."""
    rows = await run_in_threadpool(_rows, ctx, _day(day))
    _prefetch(request, ctx, rows)
    response = page(request, "_worklist_rows.html", {"rows": rows})
    held = await run_in_threadpool(held_count, ctx, viewer)
    if held is not None:
        response.headers["X-Held-Series"] = str(held)
    return response


def _prefetch(request: Request, ctx: ServiceContext, rows: list[Row]) -> None:
    """Prepare the review images of registered fractions while the physician reads the list."""
    ready = [r.fraction_id for r in rows if r.status_class in ("review", "approved", "rejected")]
    if ready:
        request.app.state.review_volumes.prefetch(ctx, ready)
