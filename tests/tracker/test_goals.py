"""Goal hits against a plain-Python matcher over the raw rows.

Whatever order the raw page views and events arrive in (shuffled, late, several aggregation
runs), the stored hits must be exactly the raw rows that match each goal; a re-run adds nothing,
pruning keeps them, and a goal created or changed later is rebuilt from the raw rows still kept.
"""

from __future__ import annotations

import fnmatch
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from tracker import event_rollups, goals, rollups
from tracker.models import Event, Goal, GoalHit, Visit

pytestmark = pytest.mark.django_db

ORIGIN = datetime(2026, 3, 28, 21, 0, tzinfo=UTC)
PATHS = [
    "/", "/signup/", "/signup/thanks/", "/Signup/thanks/", "/blog/a/", "/blog/b/x", "/blog",
    "/100%/off", "/100x/off", "/a_b/", "/axb/", "/docs/[v1]/", "/docs/?/", "/q\\x/",
]  # fmt: skip
EVENT_NAMES = ["signup", "purchase", "download", "cookie_tested"]
PLANS = ["free", "pro", "team", "Pro"]
GOALS = [
    ("Thanks page", "page", "/signup/thanks/", "", ""),
    ("Blog", "page", "/blog/*", "", ""),
    ("Percent", "page", "/100%/*", "", ""),
    ("Underscore", "page", "/a_b/", "", ""),
    ("Docs bracket", "page", "/docs/[*", "", ""),
    ("Question", "page", "/docs/?/", "", ""),
    ("Backslash", "page", "/q\\x/", "", ""),
    ("Anything", "page", "*", "", ""),
    ("Signup", "event", "signup", "", ""),
    ("Pro purchase", "event", "purchase", "plan", "pro"),
    ("Any purchase", "event", "purchase", "", ""),
    ("Download", "event", "download", "file", "a.pdf"),
]


def goal_create(name, kind, match, prop_key="", prop_value="") -> Goal:
    return Goal.objects.create(
        name=name, kind=kind, match=match, prop_key=prop_key, prop_value=prop_value
    )


def page_matches(pattern: str, path: str) -> bool:
    """``*`` is any run of characters, everything else literal and case-sensitive."""
    translated = "".join("*" if char == "*" else f"[{char}]" for char in pattern)
    return fnmatch.fnmatchcase(path, translated)


def random_raw(rng: random.Random, *, views: int, events: int) -> tuple[list, list]:
    visitors = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(20)]
    page_views, made_events = [], []
    for _ in range(views):
        page_views.append(
            Visit(
                event_id=uuid.uuid4(), tracking_id=rng.choice(visitors), path=rng.choice(PATHS),
                visited_at=ORIGIN + timedelta(minutes=rng.randrange(0, 6 * 60)),
                status_code=200, response_ms=1,
            )
        )  # fmt: skip
    for _ in range(events):
        name = rng.choice(EVENT_NAMES)
        props = {}
        if rng.random() < 0.7:
            props["plan"] = rng.choice(PLANS)
        if rng.random() < 0.5:
            props["file"] = rng.choice(["a.pdf", "b.pdf", "A.pdf"])
        revenue = rng.choice([None, Decimal("9.99"), Decimal("120.0001"), Decimal(0)])
        made_events.append(
            Event(
                event_id=uuid.uuid4(), tracking_id=rng.choice(visitors), name=name, path="/",
                occurred_at=ORIGIN + timedelta(minutes=rng.randrange(0, 6 * 60)),
                props=props, revenue=revenue if name == "purchase" else None,
            )
        )  # fmt: skip
    rng.shuffle(page_views)
    rng.shuffle(made_events)
    return page_views, made_events


def expected_hits() -> set[tuple]:
    hits = set()
    for goal in Goal.objects.all():
        if goal.kind == "page":
            for view in Visit.objects.all():
                if page_matches(goal.match, view.path):
                    hits.add((goal.name, view.id, view.tracking_id, view.visited_at, None))
        else:
            for event in Event.objects.all():
                if event.name == goal.match and (
                    not goal.prop_key or event.props.get(goal.prop_key) == goal.prop_value
                ):
                    hits.add(
                        (goal.name, event.id, event.tracking_id, event.occurred_at, event.revenue)
                    )
    return hits


def stored_hits() -> set[tuple]:
    return set(
        GoalHit.objects.values_list("goal__name", "raw_id", "tracking_id", "reached_at", "revenue")
    )


def aggregate() -> None:
    rollups.visits_aggregate(batch_size=7)
    event_rollups.events_aggregate(batch_size=5)


class PageMatcherTests:
    def test_reference_matcher(self):
        assert page_matches("/blog/*", "/blog/a/b")
        assert not page_matches("/blog/*", "/blog")
        assert page_matches("/100%/*", "/100%/off")
        assert not page_matches("/a_b/", "/axb/")
        assert page_matches("/docs/[*", "/docs/[v1]/")
        assert not page_matches("/signup/thanks/", "/Signup/thanks/")


class GoalHitsTests:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_hits_equal_reference_across_late_batches(self, seed):
        rng = random.Random(seed)
        for goal in GOALS:
            goal_create(*goal)
        views, events = random_raw(rng, views=150, events=120)
        # Arrive in three waves, aggregated between them: later waves hold older rows.
        for wave in range(3):
            Visit.objects.bulk_create(views[wave::3])
            Event.objects.bulk_create(events[wave::3])
            aggregate()
            assert stored_hits() == expected_hits()
        assert len(stored_hits()) > 100
        before = GoalHit.objects.count()
        assert goals.goal_hits_insert(kind="page", lo=0, hi=goals.NO_UPPER_BOUND) == 0
        assert goals.goal_hits_insert(kind="event", lo=0, hi=goals.NO_UPPER_BOUND) == 0
        call_command("aggregate_visits", "--rebuild")
        assert GoalHit.objects.count() == before
        assert stored_hits() == expected_hits()

    def test_revenue_is_kept_as_decimal(self):
        goal = goal_create("Buy", "event", "purchase")
        Event.objects.create(
            event_id=uuid.uuid4(), tracking_id=uuid.uuid4(), name="purchase", path="/",
            occurred_at=ORIGIN, revenue=Decimal("12.3456"),
        )  # fmt: skip
        aggregate()
        hit = GoalHit.objects.get(goal=goal)
        assert hit.revenue == Decimal("12.3456")

    def test_goal_added_later_counts_from_raw_rows_kept(self):
        views, events = random_raw(random.Random(7), views=80, events=60)
        Visit.objects.bulk_create(views)
        Event.objects.bulk_create(events)
        aggregate()
        assert not GoalHit.objects.exists()
        for goal in GOALS:
            created = goal_create(*goal)
            goals.goal_hits_rebuild(goal_id=created.id)
        assert stored_hits() == expected_hits()
        # The match changes: the old hits go, the new ones come from the raw rows.
        blog = Goal.objects.get(name="Blog")
        blog.match = "/blog/b*"
        blog.save()
        goals.goal_hits_rebuild(goal_id=blog.id)
        assert stored_hits() == expected_hits()
        assert goals.goal_hits_rebuild(goal_id=blog.id) == GoalHit.objects.filter(goal=blog).count()

    def test_pruning_raw_rows_keeps_hits(self):
        goal = goal_create("Anything", "page", "*")
        views, _ = random_raw(random.Random(3), views=30, events=0)
        Visit.objects.bulk_create(views)
        aggregate()
        hits = stored_hits()
        Visit.objects.all().delete()
        assert stored_hits() == hits
        call_command("aggregate_visits", "--rebuild")
        assert stored_hits() == hits
        # A rebuild of the goal itself counts only from the raw rows kept.
        assert goals.goal_hits_rebuild(goal_id=goal.id) == 0

    def test_rebuild_of_deleted_goal_does_nothing(self):
        goal = goal_create("Gone", "page", "*")
        goal_id = goal.id
        goal.delete()
        assert goals.goal_hits_rebuild(goal_id=goal_id) == 0

    def test_match_changed(self):
        goal = Goal(name="A", kind="page", match="/a/")
        assert goals.goal_match_changed(goal, None)
        same = Goal(name="B", kind="page", match="/a/")
        assert not goals.goal_match_changed(goal, same)
        assert goals.goal_match_changed(goal, Goal(name="A", kind="page", match="/b/"))


class GeneratedTrafficTests:
    def test_generate_traffic_records_events_and_demo_goals(self):
        call_command("generate_traffic", "--sessions", "400", "--days", "3", "--seed", "5",
                     "--demo-goals", verbosity=0)  # fmt: skip
        names = set(Event.objects.values_list("name", flat=True))
        assert names == {"cookie_tested", "download", "signup", "purchase"}
        visits = Visit.objects.count()
        assert 0.02 * visits < Event.objects.count() < 0.2 * visits
        purchases = Event.objects.filter(name="purchase")
        assert all(event.revenue > 0 and event.props["plan"] for event in purchases)
        assert Goal.objects.count() == len(goals.DEMO_GOALS)
        aggregate_before = stored_hits()
        assert aggregate_before == expected_hits()
        call_command("aggregate_visits")
        assert stored_hits() == expected_hits()
        # Demo goals are made once: a second run keeps what is there.
        assert goals.goals_demo_create() == 0


class RebuildTaskTests:
    def test_task_rebuilds_and_is_safe_to_run_twice(self):
        from tracker.tasks import rebuild_goal_hits

        views, _ = random_raw(random.Random(9), views=40, events=0)
        Visit.objects.bulk_create(views)
        aggregate()
        goal = goal_create("Blog", "page", "/blog/*")
        expected = len(expected_hits())
        assert expected > 0
        assert rebuild_goal_hits(goal.id) == expected
        assert rebuild_goal_hits(goal.id) == expected
        assert stored_hits() == expected_hits()

    def test_goal_create_queues_the_task_after_commit(self, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks() as callbacks:
            goals.goal_create(name="A", kind="page", match="/a/")
        assert len(callbacks) == 1
