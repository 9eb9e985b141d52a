# ruff: noqa: S608 - the SQL is assembled from table names and constants; values are parameters.
"""Goal hits: which raw page views and events reached which goal, materialized in GoalHit.

Hits are derived from the raw rows in SQL (one ``INSERT ... SELECT`` per kind, every goal at
once) and kept when the raw rows are pruned, so the goal figures of any range read GoalHit alone.

- Aggregation adds the hits of each new batch of raw rows (ids in (lo, hi]) in the batch's own
  transaction: a late page view or event is just a higher id, and ``ON CONFLICT DO NOTHING`` on
  (goal, raw_id) makes a re-run add nothing.
- A goal that is created, or whose match changes, gets its hits deleted and rebuilt from the raw
  rows still stored (``goal_hits_rebuild``, queued after commit by ``goal_hits_rebuild_later``):
  it counts from TRACKER_RAW_RETENTION_DAYS back, not further.

Page patterns: ``*`` matches any run of characters, everything else is literal and
case-sensitive. PostgreSQL uses LIKE with the pattern's ``\\``, ``%`` and ``_`` escaped; SQLite's
LIKE ignores ASCII case, so there GLOB does it, with its own ``[`` and ``?`` made literal.
"""

from __future__ import annotations

import logging

from django.db import connection, transaction

from tracker import funnel_runs, goal_rollups
from tracker.events import EventRefused, event_name_clean
from tracker.models import (
    PATH_MAX_LENGTH,
    PROP_MAX_LENGTH,
    Event,
    Goal,
    GoalHit,
    Visit,
)

logger = logging.getLogger(__name__)

GOAL = Goal._meta.db_table
GOAL_HIT = GoalHit._meta.db_table
VISIT = Visit._meta.db_table
EVENT = Event._meta.db_table
# What decides which raw rows a goal matches: a change to any of them rebuilds its hits.
MATCH_FIELDS = ("kind", "match", "prop_key", "prop_value")
RAW_TABLES = {Goal.Kind.PAGE: VISIT, Goal.Kind.EVENT: EVENT}
NO_UPPER_BOUND = 2**63 - 1


def page_pattern(match: str, *, postgres: bool) -> str:
    """The goal's path pattern for LIKE (PostgreSQL, with ``\\`` as the escape) or GLOB (SQLite)."""
    if postgres:
        # Backslash first, so the escapes added for % and _ stay escapes.
        escaped = match.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return escaped.replace("*", "%")
    # GLOB is case-sensitive; '*' is already its wildcard, '?' and '[' are made literal.
    return match.replace("[", "[[]").replace("?", "[?]")


def _page_insert(goals: list[tuple[int, str]], *, postgres: bool) -> tuple[str, list]:
    """Insert the page goals' hits among the page views with ids in (lo, hi]; params to follow:
    lo, hi.

    Each goal's pattern is a constant of the statement: a pattern read from a column would be
    compiled again for every row (four times slower at a million page views).
    """
    operator = "LIKE %s ESCAPE '\\'" if postgres else "GLOB %s"
    ids = " UNION ALL ".join("SELECT %s AS id" for _ in goals)
    matches = " OR ".join(f"(g.id = %s AND v.path {operator})" for _ in goals)
    params: list = [goal_id for goal_id, _ in goals]
    for goal_id, match in goals:
        params += [goal_id, page_pattern(match, postgres=postgres)]
    sql = f"""INSERT INTO {GOAL_HIT} (goal_id, raw_id, tracking_id, reached_at, revenue)
        SELECT g.id, v.id, v.tracking_id, v.visited_at, NULL
        FROM {VISIT} v JOIN ({ids}) g ON {matches}
        WHERE v.id > %s AND v.id <= %s
        ON CONFLICT (goal_id, raw_id) DO NOTHING"""
    return sql, params


def _prop_sql(postgres: bool) -> str:
    """SQL for the event ``e``'s value of the goal ``g``'s property (a string: props are)."""
    if postgres:
        return "e.props ->> g.prop_key"
    # Prop keys are named like events (no '"'), so a quoted path label holds any of them.
    return """json_extract(e.props, '$."' || g.prop_key || '"')"""


def _event_insert_sql(*, postgres: bool, one_goal: bool) -> str:
    """Insert the event goals' hits among the events with ids in (lo, hi]; params: lo, hi and,
    with ``one_goal``, the goal's id."""
    goal = " AND g.id = %s" if one_goal else ""
    return f"""INSERT INTO {GOAL_HIT} (goal_id, raw_id, tracking_id, reached_at, revenue)
        SELECT g.id, e.id, e.tracking_id, e.occurred_at, e.revenue
        FROM {EVENT} e JOIN {GOAL} g ON g.kind = 'event' AND e.name = g.match
        WHERE e.id > %s AND e.id <= %s{goal}
            AND (g.prop_key = '' OR {_prop_sql(postgres)} = g.prop_value)
        ON CONFLICT (goal_id, raw_id) DO NOTHING"""


def goal_hits_insert(*, kind: str, lo: int, hi: int, goal_id: int | None = None) -> int:
    """Add the hits of the raw rows of ``kind`` ("page" or "event") with ids in (lo, hi], for
    every goal of that kind or the one given; return how many were new.

    Runs in the caller's transaction (aggregation's batch); hits already there are skipped.
    """
    goals = Goal.objects.filter(kind=kind)
    if goal_id is not None:
        goals = goals.filter(id=goal_id)
    postgres = connection.vendor == "postgresql"
    if kind == Goal.Kind.PAGE:
        page_goals = list(goals.values_list("id", "match"))
        if not page_goals:  # no scan of the batch for nothing
            return 0
        sql, params = _page_insert(page_goals, postgres=postgres)
        params += [lo, hi]
    else:
        if not goals.exists():
            return 0
        sql = _event_insert_sql(postgres=postgres, one_goal=goal_id is not None)
        params = [lo, hi] if goal_id is None else [lo, hi, goal_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


def goal_hits_rebuild(*, goal_id: int) -> int:
    """Replace a goal's hits with those of the raw rows still stored; return their count.

    Hits of raw rows already pruned are gone for good: a goal counts from the raw retention
    back. Safe to run twice, and a no-op for a goal deleted since.
    """
    with transaction.atomic():
        goal_rollups.watermarks_lock()
        goal_rollups.goal_rollups_forget(goal_id=goal_id)
        GoalHit.objects.filter(goal_id=goal_id).delete()
        kind = Goal.objects.filter(id=goal_id).values_list("kind", flat=True).first()
        if kind is None:
            return 0
        count = goal_hits_insert(kind=kind, lo=0, hi=NO_UPPER_BOUND, goal_id=goal_id)
        goal_rollups.uncounted_hits_add()  # once, for the rollups and the runs rebuilt below
        # A visitor whose hits all went has no group to redo: rebuild the funnels whole.
        funnel_runs.funnel_runs_rebuild(goal_id=goal_id, hits_counted=True)
    logger.info("rebuilt %d hits of goal %d", count, goal_id)
    return count


def goal_hits_rebuild_all() -> int:
    """Re-derive every hit whose raw row is still stored (aggregate_visits --rebuild); hits of
    pruned raw rows are kept. Return the hits of the stored raw rows."""
    total = 0
    with transaction.atomic():
        goal_rollups.watermarks_lock()
        goal_rollups.goal_rollups_forget()
        for kind, table in RAW_TABLES.items():
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""DELETE FROM {GOAL_HIT} WHERE goal_id IN
                        (SELECT id FROM {GOAL} WHERE kind = %s)
                        AND raw_id IN (SELECT id FROM {table})""",
                    [kind],
                )
            total += goal_hits_insert(kind=kind, lo=0, hi=NO_UPPER_BOUND)
        goal_rollups.uncounted_hits_add()  # once, for the rollups and the runs rebuilt below
        funnel_runs.funnel_runs_rebuild(hits_counted=True)
    logger.info("rebuilt %d goal hits from the raw rows", total)
    return total


def goal_hits_rebuild_later(*, goal_id: int) -> None:
    """Queue the rebuild of a goal's hits once the current transaction commits."""
    from tracker.tasks import rebuild_goal_hits  # tasks import this module

    transaction.on_commit(lambda: rebuild_goal_hits.delay(goal_id))


def goal_match_changed(goal: Goal, previous: Goal | None) -> bool:
    """Return True when ``goal`` is new or matches differently from ``previous``."""
    return previous is None or any(
        getattr(goal, field) != getattr(previous, field) for field in MATCH_FIELDS
    )


def goal_definition_errors(
    *, kind: str, match: str, prop_key: str, prop_value: str
) -> dict[str, list[str]]:
    """Return what is wrong with a goal's match (field -> messages); empty when it is valid.

    Page patterns start with "/" (``*`` wildcards); event goals name an event and optionally one
    property, both named by the events' own rules (``tracker.events``).
    """
    errors: dict[str, list[str]] = {}
    if kind not in Goal.Kind.values:
        return {"kind": ["Choose page or event."]}
    if kind == Goal.Kind.PAGE:
        if not match.startswith("/"):
            errors["match"] = ['A page pattern starts with "/" (use * as a wildcard).']
        elif len(match) > PATH_MAX_LENGTH or not match.isprintable():
            errors["match"] = [f"A page pattern is at most {PATH_MAX_LENGTH} printable characters."]
        if prop_key or prop_value:
            errors["prop_key"] = ["Only event goals can match a property."]
        return errors
    try:
        event_name_clean(match)
    except EventRefused as error:
        errors["match"] = [f"Event name: {error}."]
    if prop_key:
        try:
            event_name_clean(prop_key)
        except EventRefused as error:
            errors["prop_key"] = [f"Property name: {error}."]
        if not prop_value:
            errors["prop_value"] = ["Give the value the property must have."]
        elif len(prop_value) > PROP_MAX_LENGTH or not prop_value.isprintable():
            errors["prop_value"] = [
                f"A property value is at most {PROP_MAX_LENGTH} printable characters."
            ]
    elif prop_value:
        errors["prop_key"] = ["Name the property whose value must match."]
    return errors


def goal_create(
    *, name: str, kind: str, match: str, prop_key: str = "", prop_value: str = ""
) -> Goal:
    """Create a goal (already validated) and queue the build of its hits after commit."""
    with transaction.atomic():
        goal = Goal.objects.create(
            name=name, kind=kind, match=match, prop_key=prop_key, prop_value=prop_value
        )
        goal_hits_rebuild_later(goal_id=goal.id)
    return goal


def goal_delete(*, goal_id: int) -> None:
    """Delete a goal and its hits; raise ``ProtectedError`` while a funnel step uses it."""
    Goal.objects.filter(id=goal_id).delete()


# Goals that match generate_traffic's pages and events (make demo).
DEMO_GOALS = [
    ("Signed up", Goal.Kind.EVENT, "signup", "", ""),
    ("Purchased", Goal.Kind.EVENT, "purchase", "", ""),
    ("Bought the team plan", Goal.Kind.EVENT, "purchase", "plan", "team"),
    ("Viewed pricing", Goal.Kind.PAGE, "/pricing/", "", ""),
    ("Read the docs", Goal.Kind.PAGE, "/docs/*", "", ""),
]


def goals_demo_create() -> int:
    """Create the demo goals when there are no goals at all, with their hits; return how many."""
    if Goal.objects.exists():
        return 0
    created = Goal.objects.bulk_create(
        Goal(name=name, kind=kind, match=match, prop_key=key, prop_value=value)
        for name, kind, match, key, value in DEMO_GOALS
    )
    for goal in Goal.objects.filter(name__in=[goal.name for goal in created]):
        goal_hits_rebuild(goal_id=goal.id)
    return len(created)
