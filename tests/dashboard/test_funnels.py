"""Funnels against a plain-Python reference over the raw rows and the goals' definitions.

Random returning visitors (tests/dashboard/reference.py: ties on time, gaps exactly at the
timeout, sources that split visits, visits across midnight) get events on their pages: some at
the very time of a page view, some long after their visit's last page view, some before their
visitor's first page view; rows arrive shuffled and late: page views that split or join visits
whose hits were counted, events aggregated before their page views. Aggregation stores the goal
hits (tracker.goals) and the funnels' runs (tracker.funnel_runs); the reference splits visits
itself, matches goals itself and walks each visitor's hits in order. A run counts in the range
of its step-1 hit, whenever its later steps come.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import statistics
import uuid
from collections import defaultdict
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from dashboard.funnel_edits import funnel_create
from dashboard.funnels import funnel_report, funnel_reports
from tests.dashboard import reference
from tests.dashboard.conftest import HTMX
from tracker.event_rollups import events_aggregate
from tracker.goals import goal_hits_rebuild
from tracker.models import (
    Event,
    Funnel,
    FunnelRun,
    FunnelStep,
    Goal,
    GoalHit,
    Visit,
    VisitSummary,
)
from tracker.rollups import visits_aggregate
from tracker.tasks import aggregate_visits, rebuild_funnel_runs

pytestmark = pytest.mark.django_db

UTC = dt.UTC
DATA_START = dt.datetime(2026, 2, 2, 0, 0, tzinfo=UTC)
DAYS = 6
EVENT_NAMES = ["signup", "signup", "purchase", "outbound", "download"]
PLANS = ["pro", "free", "pro", None]

GOALS = {
    # name: (kind, match, prop_key, prop_value)
    "Home": ("page", "/", "", ""),
    "Pricing": ("page", "/pricing/", "", ""),
    "Blog": ("page", "/blog/*", "", ""),
    "Docs": ("page", "/d*s/", "", ""),
    "Signup page": ("page", "/signup/", "", ""),
    "Signed up": ("event", "signup", "", ""),
    "Signed up pro": ("event", "signup", "plan", "pro"),
    "Purchase": ("event", "purchase", "", ""),
}
FUNNELS = {
    # name: (across_visits, goal names)
    "Home to signup": (False, ["Home", "Pricing", "Signup page"]),
    "Blog to purchase": (True, ["Blog", "Pricing", "Signed up pro", "Purchase"]),
    "Pricing twice": (False, ["Pricing", "Pricing"]),
    "Pricing twice, any visit": (True, ["Pricing", "Pricing"]),
    "Eight steps": (
        True,
        ["Home", "Blog", "Pricing", "Docs", "Home", "Signed up", "Pricing", "Purchase"],
    ),
    "Signup same visit": (False, ["Signup page", "Signed up", "Purchase"]),
    # Event goals first: an event aggregated before the page view that starts its visit.
    "Signed up, then bought": (False, ["Signed up", "Purchase"]),
    "Signed up, bought, any visit": (True, ["Signed up", "Purchase", "Signed up"]),
}
ranges = {
    "all": (DATA_START - dt.timedelta(days=3), DATA_START + dt.timedelta(days=DAYS + 3)),
    # Cuts visits and runs at both ends, at midnight.
    "middle": (DATA_START + dt.timedelta(days=2), DATA_START + dt.timedelta(days=4)),
    "one hour": (
        DATA_START + dt.timedelta(days=3, hours=13),
        DATA_START + dt.timedelta(days=3, hours=14),
    ),
    "empty": (DATA_START - dt.timedelta(days=30), DATA_START - dt.timedelta(days=29)),
}


# -- The reference: goals matched, visits split and runs walked in plain Python -------------


def pattern_matches(pattern: str, path: str) -> bool:
    """A goal's path pattern: ``*`` stands for any run of characters, the rest is literal."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), path) is not None


def goal_matches(goal: tuple, row: Visit | Event) -> bool:
    kind, match, prop_key, prop_value = goal
    if kind == "page":
        return isinstance(row, Visit) and pattern_matches(match, row.path)
    if not isinstance(row, Event) or row.name != match:
        return False
    return not prop_key or str(row.props.get(prop_key)) == prop_value


@dataclass(frozen=True)
class RefHit:
    tracking_id: uuid.UUID
    at: dt.datetime
    visit: tuple | None  # (tracking_id, number) of its visit


def reference_hits(views, events, visits, goals=None) -> dict[str, list[RefHit]]:
    """Per goal name, its hits: each raw row matching it, placed in its visit (the visitor's
    last visit started at or before it; the later of two started at the same time)."""
    starts: dict[uuid.UUID, list[tuple]] = defaultdict(list)
    for visit in visits:
        starts[visit.tracking_id].append((visit.started_at, visit.number))

    def visit_of(tracking_id, moment):
        before = [start for start in starts[tracking_id] if start[0] <= moment]
        return (tracking_id, max(before)[1]) if before else None

    hits: dict[str, list[RefHit]] = {}
    for name, goal in (goals or GOALS).items():
        hits[name] = [
            RefHit(row.tracking_id, at, visit_of(row.tracking_id, at))
            for row in [*views, *events]
            if goal_matches(goal, row)
            for at in [row.visited_at if isinstance(row, Visit) else row.occurred_at]
        ]
    return hits


def reference_report(hits, *, name, start, end, allowed_visits=None, definition=None) -> dict:
    across, goal_names = definition or FUNNELS[name]
    # One run per visit, from its earliest step-1 hit, whatever the range; the range then
    # takes the runs whose step-1 hit falls in it.
    starts: dict[tuple, RefHit] = {}
    for entry in hits[goal_names[0]]:
        if entry.visit is not None and (
            entry.visit not in starts or entry.at < starts[entry.visit].at
        ):
            starts[entry.visit] = entry
    runs: dict[tuple, list[dt.datetime]] = {}
    for visit, entry in starts.items():
        if not start <= entry.at < end:
            continue
        if allowed_visits is not None and visit not in allowed_visits:
            continue
        times = [entry.at]
        for goal_name in goal_names[1:]:
            later = [
                hit.at
                for hit in hits[goal_name]
                if hit.tracking_id == entry.tracking_id
                and times[-1] < hit.at
                and (across or hit.visit == visit)
            ]
            if not later:
                break
            times.append(min(later))
        runs[visit] = times
    best: dict[uuid.UUID, list[dt.datetime]] = {}
    for container, times in runs.items():
        tracking_id = container[0]
        current = best.get(tracking_id)
        if current is None or (-len(times), times[0]) < (-len(current), current[0]):
            best[tracking_id] = times
    steps = []
    first = sum(1 for times in best.values())
    previous = first
    for number, goal_name in enumerate(goal_names):
        passed = [times for times in best.values() if len(times) > number]
        durations = [
            (times[number] - times[number - 1]) // dt.timedelta(seconds=1) for times in passed
        ]
        visitors = len(passed)
        steps.append(
            {
                "name": goal_name,
                "visitors": visitors,
                "conversion_from_previous": visitors / previous if previous else None,
                "conversion_from_first": visitors / first if first else None,
                "drop_off": previous - visitors,
                "median_seconds": statistics.median(durations) if number and durations else None,
            }
        )
        previous = visitors
    return {"name": name, "across_visits": across, "steps": steps}


# -- The data ------------------------------------------------------------------------------


def random_events(views: list[Visit], *, seed: int) -> list[Event]:
    """Events on a third of the page views: at the same moment, seconds later, or hours after
    the visit; a few before the visitor's first page view; a visitor who signs up twice."""
    rng = random.Random(seed)
    events = []
    first_view: dict[uuid.UUID, dt.datetime] = {}
    for view in views:
        first_view[view.tracking_id] = min(
            view.visited_at, first_view.get(view.tracking_id, view.visited_at)
        )
    for view in views:
        if rng.random() > 0.35:
            continue
        for _ in range(1 + (rng.random() < 0.2)):
            roll = rng.random()
            if roll < 0.2:
                moment = view.visited_at  # a tie with the page view
            elif roll < 0.9:
                moment = view.visited_at + dt.timedelta(seconds=rng.randrange(0, 300))
            else:
                moment = view.visited_at + dt.timedelta(hours=rng.randrange(1, 30))
            name = rng.choice(EVENT_NAMES)
            plan = rng.choice(PLANS)
            events.append(event(view.tracking_id, moment, name, view.path, plan))
    for tracking_id, moment in list(first_view.items())[:5]:
        events.append(event(tracking_id, moment - dt.timedelta(minutes=5), "signup", "/", "pro"))
    rng.shuffle(events)
    return events


def event(tracking_id, moment, name, path, plan) -> Event:
    return Event(
        event_id=uuid.uuid4(),
        tracking_id=tracking_id,
        occurred_at=moment,
        name=name,
        path=path,
        props={"plan": plan} if plan else {},
    )


def define_funnels() -> None:
    goals = {
        name: Goal.objects.create(
            name=name, kind=kind, match=match, prop_key=prop_key, prop_value=prop_value
        )
        for name, (kind, match, prop_key, prop_value) in GOALS.items()
    }
    for name, (across, goal_names) in FUNNELS.items():
        funnel = Funnel.objects.create(name=name, across_visits=across)
        # Positions with gaps and out of insertion order: only their order matters.
        for number, goal_name in reversed(list(enumerate(goal_names, 1))):
            FunnelStep.objects.create(funnel=funnel, position=number * 10, goal=goals[goal_name])


@dataclass
class Data:
    views: list[Visit]
    events: list[Event]
    visits: list[reference.RefVisit]
    hits: dict[str, list[RefHit]]
    # Step-1 hits aggregated before any visit of theirs had started, in a visit now.
    entries_before_their_visit: int


@pytest.fixture
def data(db, settings) -> Data:
    timeout = settings.TRACKER_VISIT_TIMEOUT
    views = reference.random_page_views(
        seed=22, visitor_count=120, start=DATA_START, days=DAYS, timeout=timeout
    )
    events = random_events(views, seed=23)
    define_funnels()
    # Late arrivals: a third of the page views arrives after the rest was aggregated, and
    # half the events before them.
    cut_views, cut_events = len(views) * 2 // 3, len(events) // 2
    Visit.objects.bulk_create(views[:cut_views])
    Event.objects.bulk_create(events[:cut_events])
    # Aggregation materializes the goal hits (tracker.goals), batch by batch.
    visits_aggregate(batch_size=101)
    events_aggregate(batch_size=101)
    Event.objects.bulk_create(events[cut_events:])
    events_aggregate(batch_size=101)
    first_starts = dict(
        VisitSummary.objects.filter(number=1).values_list("tracking_id", "started_at")
    )
    early = [
        (tracking_id, reached_at)
        for tracking_id, reached_at in GoalHit.objects.filter(
            goal__name__in={goal_names[0] for _, goal_names in FUNNELS.values()}
        ).values_list("tracking_id", "reached_at")
        if tracking_id not in first_starts or reached_at < first_starts[tracking_id]
    ]
    Visit.objects.bulk_create(views[cut_views:])
    visits_aggregate(batch_size=101)
    events_aggregate(batch_size=101)
    stored_views = list(Visit.objects.all())
    stored_events = list(Event.objects.all())
    visits = reference.split_visits(stored_views, timeout=timeout)
    first_starts = {visit.tracking_id: visit.started_at for visit in visits if visit.number == 1}
    return Data(
        views=stored_views,
        events=stored_events,
        visits=visits,
        hits=reference_hits(stored_views, stored_events, visits),
        entries_before_their_visit=sum(
            1
            for tracking_id, reached_at in early
            if tracking_id in first_starts and first_starts[tracking_id] <= reached_at
        ),
    )


def all_references(data, start, end) -> list[dict]:
    return [
        reference_report(data.hits, name=name, start=start, end=end) for name in sorted(FUNNELS)
    ]


# -- Tests ---------------------------------------------------------------------------------


class ReferenceDataTests:
    def test_stored_hits_are_the_reference_matches(self, data):
        """The funnels read what aggregation stored; the reference matched the raw rows."""
        stored = {
            (name, tracking_id, reached_at)
            for name, tracking_id, reached_at in GoalHit.objects.values_list(
                "goal__name", "tracking_id", "reached_at"
            )
        }
        expected = {(name, hit.tracking_id, hit.at) for name, hits in data.hits.items()
                    for hit in hits}  # fmt: skip
        assert stored == expected
        assert GoalHit.objects.count() == sum(len(hits) for hits in data.hits.values())

    def test_data_has_the_shapes_that_break_things(self, data):
        """The random data exercises what funnels are about (else they prove little)."""
        start, end = ranges["all"]
        reports = {name: reference_report(data.hits, name=name, start=start, end=end)
                   for name in FUNNELS}  # fmt: skip
        for report in reports.values():
            assert report["steps"][0]["visitors"] > 0
            assert report["steps"][-1]["visitors"] < report["steps"][0]["visitors"]
        assert reports["Home to signup"]["steps"][2]["visitors"] > 0
        assert reports["Blog to purchase"]["steps"][3]["visitors"] > 0
        # Across visits passes more than the same visit would.
        assert (reports["Pricing twice, any visit"]["steps"][1]["visitors"]
                > reports["Pricing twice"]["steps"][1]["visitors"] > 0)  # fmt: skip
        # Hits before the visitor's first visit exist and start nothing; some aggregated
        # before their visit started start a run now.
        assert any(hit.visit is None for hit in data.hits["Signed up pro"])
        assert any(hit.visit is None for hit in data.hits["Signed up"])
        assert data.entries_before_their_visit > 0
        # Runs that go on past the range's end.
        low, high = ranges["middle"]
        assert any(
            hit.at >= high
            for entry in data.hits["Blog"]
            if low <= entry.at < high
            for hit in data.hits["Pricing"]
            if hit.tracking_id == entry.tracking_id and hit.at > entry.at
        )
        # Visits across midnight, and visitors with several visits reaching step 1.
        assert any(visit.started_at.date() != visit.ended_at.date() for visit in data.visits)
        entering = defaultdict(set)
        for hit in data.hits["Home"]:
            entering[hit.tracking_id].add(hit.visit)
        assert max(len(visits) for visits in entering.values()) >= 3
        # Ties: a step-2 hit at the very moment of a step-1 hit (not after it).
        home = {(hit.tracking_id, hit.at) for hit in data.hits["Signup page"]}
        assert any((hit.tracking_id, hit.at) in home for hit in data.hits["Signed up"])
        assert all(
            VisitSummary.objects.filter(tracking_id=visit.tracking_id, number=visit.number).exists()
            for visit in data.visits[:20]
        )


class FunnelReportTests:
    @pytest.mark.parametrize("range_name", list(ranges))
    def test_every_funnel_equals_reference(self, data, range_name, django_assert_num_queries):
        start, end = ranges[range_name]
        with django_assert_num_queries(2 + len(FUNNELS)):
            reports = funnel_reports(start=start, end=end)
        assert reports == all_references(data, start, end)

    def test_filtered_visits_count_runs_entering_in_them(self, data):
        start, end = ranges["all"]
        chosen = VisitSummary.objects.filter(
            started_at__gte=start, started_at__lt=end, browser="Chrome"
        )
        allowed = {(visit.tracking_id, visit.number) for visit in chosen}
        assert allowed
        for name in FUNNELS:
            report = funnel_report(
                funnel=Funnel.objects.get(name=name), start=start, end=end, visits=chosen
            )
            expected = reference_report(
                data.hits, name=name, start=start, end=end, allowed_visits=allowed
            )
            assert report == expected

    def test_funnel_without_steps_is_empty(self, db):
        funnel = Funnel.objects.create(name="Empty")
        start, end = ranges["all"]
        assert funnel_report(funnel=funnel, start=start, end=end)["steps"] == []


class FunnelRunsUpkeepTests:
    """Runs kept by aggregation, funnel edits and goal rebuilds equal the reference."""

    def assert_all_equal_reference(self, data, hits, definitions) -> None:
        for range_name in ("all", "middle"):
            start, end = ranges[range_name]
            expected = [
                reference_report(hits, name=name, start=start, end=end, definition=definition)
                for name, definition in sorted(definitions.items())
            ]
            assert funnel_reports(start=start, end=end) == expected

    def test_funnel_created_after_aggregation(self, data, django_capture_on_commit_callbacks):
        goals = [Goal.objects.get(name=name) for name in ("Pricing", "Signed up", "Docs")]
        with django_capture_on_commit_callbacks() as callbacks:
            funnel = funnel_create(name="Later", across_visits=False, goals=goals)
        assert len(callbacks) == 1  # the runs' rebuild, queued
        assert rebuild_funnel_runs(funnel.pk) == 1
        assert rebuild_funnel_runs(funnel.pk) == 1  # safe to run twice
        definitions = {**FUNNELS, "Later": (False, ["Pricing", "Signed up", "Docs"])}
        self.assert_all_equal_reference(data, data.hits, definitions)
        funnel.delete()
        assert rebuild_funnel_runs(funnel.pk) == 0  # a no-op once it is gone
        assert not FunnelRun.objects.filter(funnel_id=funnel.pk).exists()

    def test_funnel_added_and_edited_in_the_admin(
        self, data, client, django_capture_on_commit_callbacks
    ):
        get_user_model().objects.create_superuser("root", password="a-long-password-9")
        client.login(username="root", password="a-long-password-9")
        goals = {goal.name: goal.pk for goal in Goal.objects.all()}
        form = {"name": "Admin funnel", "steps-MIN_NUM_FORMS": "2", "steps-MAX_NUM_FORMS": "8"}
        steps = {"steps-TOTAL_FORMS": "2", "steps-INITIAL_FORMS": "0"}
        for index, name in enumerate(["Blog", "Signed up"]):
            steps |= {f"steps-{index}-position": str(index + 1), f"steps-{index}-goal": goals[name]}
        with django_capture_on_commit_callbacks() as callbacks:
            assert client.post("/admin/tracker/funnel/add/", form | steps).status_code == 302
        assert len(callbacks) == 1
        funnel = Funnel.objects.get(name="Admin funnel")
        rebuild_funnel_runs(funnel.pk)
        definitions = {**FUNNELS, "Admin funnel": (False, ["Blog", "Signed up"])}
        self.assert_all_equal_reference(data, data.hits, definitions)
        # Across visits now, and Pricing instead of Blog.
        step_ids = list(funnel.steps.order_by("position").values_list("id", flat=True))
        steps = {"steps-TOTAL_FORMS": "2", "steps-INITIAL_FORMS": "2"}
        chosen = zip(step_ids, ["Pricing", "Signed up"], strict=True)
        for index, (step_id, name) in enumerate(chosen):
            steps |= {
                f"steps-{index}-id": step_id,
                f"steps-{index}-funnel": funnel.pk,
                f"steps-{index}-position": str(index + 1),
                f"steps-{index}-goal": goals[name],
            }
        form["across_visits"] = "on"
        url = f"/admin/tracker/funnel/{funnel.pk}/change/"
        with django_capture_on_commit_callbacks() as callbacks:
            assert client.post(url, form | steps).status_code == 302
        assert len(callbacks) == 1
        rebuild_funnel_runs(funnel.pk)
        definitions["Admin funnel"] = (True, ["Pricing", "Signed up"])
        self.assert_all_equal_reference(data, data.hits, definitions)

    def test_bulk_edits_caught_up_by_aggregation(self, data):
        """Edits that bypass the funnels page and the admin wait for the next aggregation."""
        Funnel.objects.filter(name="Pricing twice").update(across_visits=True)
        FunnelStep.objects.filter(funnel__name="Home to signup", position=30).update(
            goal=Goal.objects.get(name="Signed up")
        )
        FunnelStep.objects.filter(funnel__name="Eight steps", position__gt=20).delete()
        aggregate_visits()
        definitions = {
            **FUNNELS,
            "Pricing twice": (True, ["Pricing", "Pricing"]),
            "Home to signup": (False, ["Home", "Pricing", "Signed up"]),
            "Eight steps": (True, ["Home", "Blog"]),
        }
        self.assert_all_equal_reference(data, data.hits, definitions)

    def test_goal_rebuild_redoes_the_funnels_using_it(self, data):
        """Home matches the blog now: visitors lose all their Home hits, others gain some."""
        Goal.objects.filter(name="Home").update(match="/blog/*")
        goal_hits_rebuild(goal_id=Goal.objects.get(name="Home").pk)
        goals = {**GOALS, "Home": ("page", "/blog/*", "", "")}
        hits = reference_hits(data.views, data.events, data.visits, goals)
        self.assert_all_equal_reference(data, hits, FUNNELS)

    def test_late_page_views_after_a_funnel_was_created(self, data, settings):
        """Page views that arrive later still split and join the visits of the runs."""
        goals = [Goal.objects.get(name=name) for name in ("Signed up", "Pricing")]
        rebuild_funnel_runs(funnel_create(name="Later", across_visits=False, goals=goals).pk)
        rng = random.Random(5)
        late = []
        for view in rng.sample(data.views, 40):
            moment = view.visited_at - dt.timedelta(seconds=rng.choice([1, 600, 1700, 3600]))
            late.append(
                Visit(
                    event_id=uuid.uuid4(),
                    tracking_id=view.tracking_id,
                    visited_at=moment,
                    path=rng.choice(["/pricing/", "/", "/blog/a/"]),
                    browser=view.browser,
                    os=view.os,
                    device=view.device,
                    status_code=200,
                    response_ms=5,
                )
            )
        Visit.objects.bulk_create(late)
        visits_aggregate(batch_size=7)
        views = list(Visit.objects.all())
        visits = reference.split_visits(views, timeout=settings.TRACKER_VISIT_TIMEOUT)
        hits = reference_hits(views, data.events, visits)
        definitions = {**FUNNELS, "Later": (False, ["Signed up", "Pricing"])}
        self.assert_all_equal_reference(data, hits, definitions)


class FunnelPanelTests:
    def test_panel_and_stats_json_equal_reference(self, data, staff_client):
        start, end = dt.date(2026, 2, 4), dt.date(2026, 2, 5)
        query = f"start={start}&end={end}"
        low = dt.datetime(2026, 2, 4, tzinfo=UTC)
        high = dt.datetime(2026, 2, 6, tzinfo=UTC)
        expected = all_references(data, low, high)

        stats = staff_client.get(f"{reverse('dashboard:stats')}?{query}").json()
        assert stats["funnels"] == expected

        response = staff_client.get(
            f"{reverse('dashboard:index')}?{query}", headers={**HTMX, "HX-Target": "funnels"}
        )
        assert response.status_code == 200
        panel = response.context["funnels"]
        assert [report["report"] for report in panel] == expected
        html = response.content.decode()
        for report in panel:
            figure = report["figure"]
            trace = figure["data"][0]
            assert trace["type"] == "funnel"
            assert trace["x"] == [step["visitors"] for step in report["report"]["steps"]]
            assert f'id="funnel-figure-{report["id"]}"' in html
            script = f'<script id="funnel-figure-{report["id"]}" type="application/json">'
            embedded = re.search(rf"{re.escape(script)}(.*?)</script>", html, re.S)
            assert json.loads(embedded.group(1)) == figure

    def test_panel_and_stats_json_follow_the_dashboard_filters(self, data, staff_client):
        """browser=Chrome: only runs entering in a Chrome visit of the range count."""
        query = "start=2026-02-04&end=2026-02-05&browser=Chrome"
        low = dt.datetime(2026, 2, 4, tzinfo=UTC)
        high = dt.datetime(2026, 2, 6, tzinfo=UTC)
        chosen = VisitSummary.objects.filter(
            started_at__gte=low, started_at__lt=high, browser="Chrome"
        )
        allowed = {(visit.tracking_id, visit.number) for visit in chosen}
        expected = [
            reference_report(data.hits, name=name, start=low, end=high, allowed_visits=allowed)
            for name in sorted(FUNNELS)
        ]
        assert expected != all_references(data, low, high)  # the filter changes something
        stats = staff_client.get(f"{reverse('dashboard:stats')}?{query}").json()
        assert stats["funnels"] == expected
        response = staff_client.get(
            f"{reverse('dashboard:index')}?{query}", headers={**HTMX, "HX-Target": "funnels"}
        )
        assert [report["report"] for report in response.context["funnels"]] == expected

    def test_panel_query_counts(self, data, staff_client, django_assert_num_queries):
        """Login (2), the funnels and their steps (2), the aggregation stamp (1), then one query
        per funnel unless cached."""
        url = f"{reverse('dashboard:index')}?range=30d"
        headers = {**HTMX, "HX-Target": "funnels"}
        with django_assert_num_queries(5 + len(FUNNELS)):
            assert staff_client.get(url, headers=headers).status_code == 200
        with django_assert_num_queries(5):
            assert staff_client.get(url, headers=headers).status_code == 200
        # A changed funnel is computed again at once.
        Funnel.objects.filter(name="Pricing twice").update(across_visits=True)
        with django_assert_num_queries(5 + len(FUNNELS)):
            assert staff_client.get(url, headers=headers).status_code == 200

    def test_full_page_loads_the_panel_by_itself(self, staff_client):
        """The page shows at once; the funnels placeholder fetches its panel with htmx."""
        Funnel.objects.create(name="Later")
        response = staff_client.get(f"{reverse('dashboard:index')}?range=7d")
        assert "funnels" not in response.context
        html = response.content.decode()
        placeholder = re.search(r'<section id="funnels"[^>]*>', html).group(0)
        assert 'hx-get="?range=7d"' in placeholder
        assert 'hx-trigger="load"' in placeholder
        assert "Later" not in html

    def test_panel_without_funnels_says_so(self, staff_client):
        response = staff_client.get(
            reverse("dashboard:index"), headers={**HTMX, "HX-Target": "funnels"}
        )
        assert response.status_code == 200
        assert "No funnel yet" in response.content.decode()
