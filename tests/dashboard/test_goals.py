"""Goal figures against a plain-Python reference over the raw rows and the goal definitions.

Randomized page views and events arrive in shuffled waves (late arrivals) around midnight and
are aggregated between waves; some goals exist from the start (hits added by aggregation), others
are added afterwards (hits rebuilt from the raw rows). Every figure of ``goal_totals``, of the
Goals panel and of stats.json's ``goals`` must equal the reference: visitors, conversions (once
per visit, a goal reached twice in a visit counting once), conversion rate, revenue and average.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import uuid
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from dashboard.goal_queries import goal_totals
from tests.dashboard.conftest import HTMX, body
from tests.tracker.rollup_reference import random_visits, reference_visits
from tests.tracker.test_goals import page_matches
from tracker import event_rollups, goal_rollups, goals, rollups
from tracker.models import Event, Goal, GoalHit, Visit, VisitSummary

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 3, 28, 20, 0, tzinfo=dt.UTC)  # visits run across midnight
ODD_PATHS = ["/100%/off", "/100x/off", "/a_b/", "/axb/", "/Pricing/", "/pricing/", "/blog"]
EARLY_GOALS = [
    ("Blog", "page", "/blog/*", "", ""),
    ("Signup", "event", "signup", "", ""),
    ("Purchase", "event", "purchase", "", ""),
]
LATE_GOALS = [
    ("Pricing", "page", "/pricing/", "", ""),
    ("Percent", "page", "/100%/*", "", ""),
    ("Underscore", "page", "/a_b/", "", ""),
    ("Pro purchase", "event", "purchase", "plan", "pro"),
    ("Nothing", "event", "never happens", "", ""),
]
PLACES = Decimal("0.0001")


def random_data(seed: int) -> tuple[list[Visit], list[Event]]:
    rng = random.Random(seed)
    views = random_visits(seed=seed, sessions=60, start=START, hours=8)
    for view in views:
        if rng.random() < 0.25:
            view.path = rng.choice(ODD_PATHS)
    visitors = sorted({view.tracking_id for view in views})
    times = defaultdict(list)
    for view in views:
        times[view.tracking_id].append(view.visited_at)
    events = []
    # A few visitors with events and no page view at all.
    for tracking_id in [*visitors, uuid.UUID(int=1), uuid.UUID(int=2)]:
        for _ in range(rng.choice([0, 0, 1, 2, 4])):
            base = rng.choice(times[tracking_id]) if times[tracking_id] else START
            # Some before the visitor's first page view, some between visits.
            at = base + dt.timedelta(seconds=rng.choice([-600, -1, 0, 1, 30, 900, 4000]))
            name = rng.choice(["signup", "purchase", "purchase", "download", "cookie_tested"])
            props = {"plan": rng.choice(["free", "pro", "Pro"])} if name == "purchase" else {}
            revenue = None
            if name == "purchase":
                revenue = rng.choice([None, Decimal("9.99"), Decimal("49.5"), Decimal("0.0001")])
            events.append(
                Event(
                    event_id=uuid.UUID(int=rng.getrandbits(128)), tracking_id=tracking_id,
                    occurred_at=at, name=name, path="/", props=props, revenue=revenue,
                )
            )  # fmt: skip
    rng.shuffle(events)
    return views, events


def load(seed: int) -> None:
    """Store the data in three shuffled waves, aggregating after each; add the late goals."""
    for name, kind, match, key, value in EARLY_GOALS:
        Goal.objects.create(name=name, kind=kind, match=match, prop_key=key, prop_value=value)
    views, events = random_data(seed)
    for wave in range(3):
        Visit.objects.bulk_create(views[wave::3])
        Event.objects.bulk_create(events[wave::3])
        rollups.visits_aggregate(batch_size=40)
        event_rollups.events_aggregate(batch_size=15)
    for name, kind, match, key, value in LATE_GOALS:
        goal = Goal.objects.create(
            name=name, kind=kind, match=match, prop_key=key, prop_value=value
        )
        goals.goal_hits_rebuild(goal_id=goal.id)


class Reference:
    """Goal figures recomputed from the raw rows, as the README defines them."""

    def __init__(self) -> None:
        views = list(Visit.objects.all())
        self.visits = reference_visits(views)
        self.by_visitor = defaultdict(list)
        for visit in self.visits:
            self.by_visitor[visit.tracking_id].append(visit)
        for own in self.by_visitor.values():
            own.sort(key=lambda visit: visit.number)
        self.hits = []  # (goal name, tracking_id, time, revenue)
        events = list(Event.objects.all())
        for goal in Goal.objects.all():
            if goal.kind == "page":
                self.hits += [
                    (goal.name, v.tracking_id, v.visited_at, None)
                    for v in views
                    if page_matches(goal.match, v.path)
                ]
            else:
                self.hits += [
                    (goal.name, e.tracking_id, e.occurred_at, e.revenue)
                    for e in events
                    if e.name == goal.match
                    and (not goal.prop_key or e.props.get(goal.prop_key) == goal.prop_value)
                ]
        self.names = list(Goal.objects.values_list("name", flat=True))

    def visit_of(self, tracking_id: uuid.UUID, moment: dt.datetime):
        """The visitor's last visit started at or before ``moment`` (its first for earlier)."""
        own = self.by_visitor.get(tracking_id)
        if not own:
            return (tracking_id, None)
        chosen = own[0]
        for visit in own:
            if visit.started_at <= moment:
                chosen = visit
        return (tracking_id, chosen.number)

    def totals(self, *, start, end, device: str | None = None) -> list[dict]:
        started = [v for v in self.visits if start <= v.started_at < end]
        if device is not None:
            started = [v for v in started if v.views[0].device == device]
        allowed = {(v.tracking_id, v.number) for v in started}
        range_visitors = len({v.tracking_id for v in started})
        rows = []
        for name in self.names:
            visitors, conversions, amounts = set(), set(), []
            for goal, tracking_id, moment, revenue in self.hits:
                if goal != name or not start <= moment < end:
                    continue
                visit = self.visit_of(tracking_id, moment)
                if device is not None and visit not in allowed:
                    continue
                visitors.add(tracking_id)
                conversions.add(visit)
                if revenue is not None:
                    amounts.append(revenue)
            revenue = sum(amounts, Decimal(0)) if amounts else None
            average = None
            if revenue is not None and conversions:
                average = (revenue / len(conversions)).quantize(PLACES, rounding=ROUND_HALF_EVEN)
            rows.append(
                {
                    "name": name,
                    "visitors": len(visitors),
                    "conversions": len(conversions),
                    "conversion_rate": round(len(visitors) / range_visitors, 4)
                    if range_visitors
                    else None,
                    "revenue": revenue,
                    "average_revenue": average,
                }
            )
        rows.sort(key=lambda row: (-row["visitors"], -row["conversions"], row["name"]))
        return rows


def ranges(rng: random.Random) -> list[tuple[dt.datetime, dt.datetime]]:
    chosen = [
        (START - dt.timedelta(days=1), START + dt.timedelta(days=6)),
        (START + dt.timedelta(hours=4), START + dt.timedelta(hours=28)),  # one UTC day
        (START, START + dt.timedelta(hours=1)),
        (START - dt.timedelta(hours=5), START),  # empty
    ]
    for _ in range(6):
        first, last = sorted(rng.sample(range(-2, 60), 2))
        chosen.append((START + dt.timedelta(hours=first), START + dt.timedelta(hours=last)))
    return chosen


class GoalFiguresTests:
    @pytest.mark.parametrize("seed", [11, 12, 13])
    def test_goal_totals_equal_reference(self, seed):
        load(seed)
        reference = Reference()
        assert any(row["conversions"] > 1 for row in reference.totals(
            start=START - dt.timedelta(days=1), end=START + dt.timedelta(days=6)))  # fmt: skip
        for start, end in ranges(random.Random(seed)):
            assert goal_totals(start=start, end=end) == reference.totals(start=start, end=end)
            mobile = VisitSummary.objects.filter(
                started_at__gte=start, started_at__lt=end, device="mobile"
            )
            assert goal_totals(start=start, end=end, visits=mobile) == reference.totals(
                start=start, end=end, device="mobile"
            )

    def test_goal_reached_twice_in_a_visit_is_one_conversion(self):
        goal = Goal.objects.create(name="Pricing", kind="page", match="/pricing/")
        tracking_id = uuid.uuid4()
        for minutes, path in [(0, "/"), (1, "/pricing/"), (2, "/pricing/"), (90, "/pricing/")]:
            Visit.objects.create(
                event_id=uuid.uuid4(), tracking_id=tracking_id, path=path, status_code=200,
                response_ms=1, visited_at=START + dt.timedelta(minutes=minutes),
            )  # fmt: skip
        rollups.visits_aggregate()
        assert goal.hits.count() == 3
        (row,) = goal_totals(start=START, end=START + dt.timedelta(hours=2))
        assert (row["visitors"], row["conversions"], row["conversion_rate"]) == (1, 2, 1.0)
        assert row["revenue"] is None and row["average_revenue"] is None

    def test_no_goals(self):
        assert goal_totals(start=START, end=START + dt.timedelta(days=1)) == []

    def test_unfiltered_figures_read_the_rollups_alone(self):
        load(14)
        week = {"start": START - dt.timedelta(days=1), "end": START + dt.timedelta(days=6)}
        expected = Reference().totals(**week)
        GoalHit.objects.all().delete()
        assert goal_totals(**week) == expected

    def test_hits_counted_after_the_upgrade_that_added_the_rollups(self):
        """Hits from before the goal rollups (no visit number) are counted by the next run."""
        load(15)
        reference = Reference()
        goal_rollups.goal_rollups_forget()
        week = {"start": START - dt.timedelta(days=1), "end": START + dt.timedelta(days=6)}
        assert all(row["visitors"] == 0 for row in goal_totals(**week))
        assert goal_rollups.goal_rollups_catch_up() == GoalHit.objects.count() > 0
        assert goal_rollups.goal_rollups_catch_up() == 0  # nothing left
        for start, end in ranges(random.Random(15)):
            assert goal_totals(start=start, end=end) == reference.totals(start=start, end=end)


ROW = re.compile(r'<tr [^>]*data-goal="([^"]*)">(.*?)</tr>', re.S)
FIGURE = re.compile(r'data-figure="(\w+)"(?: data-value="([^"]*)")?>([^<]*)<')


class GoalPanelAndStatsTests:
    def test_panel_and_stats_json_equal_reference(self, staff_client):
        load(21)
        reference = Reference()
        query = "start=2026-03-28&end=2026-03-30"
        start = dt.datetime(2026, 3, 28, tzinfo=dt.UTC)
        expected = reference.totals(start=start, end=start + dt.timedelta(days=3))
        assert any(row["revenue"] for row in expected)

        stats = json.loads(body(staff_client.get(f"/dashboard/api/stats.json?{query}")))
        assert [
            {**row, "revenue": None if row["revenue"] is None else Decimal(row["revenue"])}
            for row in stats["goals"]
        ] == [
            {key: row[key] for key in ("name", "visitors", "conversions", "conversion_rate",
                                       "revenue")}
            for row in expected
        ]  # fmt: skip
        assert all(isinstance(row["revenue"], str | None) for row in stats["goals"])

        response = staff_client.get(f"/dashboard/?{query}", headers={**HTMX, "HX-Target": "goals"})
        assert response.status_code == 200
        text = body(response)
        assert 'id="goals"' in text and "EUR" in text
        shown = []
        for name, cells in ROW.findall(text):
            figures = {key: (value, content) for key, value, content in FIGURE.findall(cells)}
            shown.append(
                {
                    "name": name,
                    "visitors": int(figures["visitors"][1].replace(",", "")),
                    "conversions": int(figures["conversions"][1].replace(",", "")),
                    "conversion_rate": figures["conversion_rate"][1],
                    "revenue": Decimal(figures["revenue"][0]) if figures["revenue"][0] else None,
                    "average_revenue": Decimal(figures["average_revenue"][0])
                    if figures["average_revenue"][0]
                    else None,
                }
            )
        assert shown == [
            {
                **row,
                "conversion_rate": "—"
                if row["conversion_rate"] is None
                else f"{row['conversion_rate'] * 100:.1f}%",
            }
            for row in expected
        ]

    def test_full_dashboard_loads_goals_panel_after_the_page(self, staff_client):
        """The page holds a placeholder that asks for the panel once shown (hx-trigger=load):
        goal figures never hold the rest of the page back."""
        Goal.objects.create(name="<b>Bold</b>", kind="page", match="/")
        text = body(staff_client.get("/dashboard/?range=7d"))
        placeholder = text.split('<section id="goals"')[1].split(">")[0]
        assert 'hx-trigger="load"' in placeholder and 'hx-get="?range=7d"' in placeholder
        assert "Bold" not in text
        headers = {"HX-Request": "true", "HX-Target": "goals"}
        text = body(staff_client.get("/dashboard/?range=7d", headers=headers))
        assert "&lt;b&gt;Bold&lt;/b&gt;" in text and "<b>Bold</b>" not in text


class FilteredGoalsTests:
    def test_panel_and_stats_json_follow_the_dashboard_filters(self, staff_client):
        """device=mobile: only hits of mobile visits count, the rate over mobile visitors."""
        load(22)
        start = dt.datetime(2026, 3, 28, tzinfo=dt.UTC)
        end = start + dt.timedelta(days=3)
        expected = Reference().totals(start=start, end=end, device="mobile")
        assert any(row["visitors"] for row in expected)
        query = "start=2026-03-28&end=2026-03-30&device=mobile"
        stats = json.loads(body(staff_client.get(f"/dashboard/api/stats.json?{query}")))
        columns = ("name", "visitors", "conversions", "conversion_rate", "revenue")
        assert [
            {**row, "revenue": None if row["revenue"] is None else Decimal(row["revenue"])}
            for row in stats["goals"]
        ] == [{key: row[key] for key in columns} for row in expected]
        response = staff_client.get(f"/dashboard/?{query}", headers={**HTMX, "HX-Target": "goals"})
        assert response.context["goals"] == expected


class GoalCacheTests:
    def test_cached_panel_follows_goal_changes_and_rebuilds(self, staff_client):
        load(31)
        url = "/dashboard/?start=2026-03-28&end=2026-03-30"
        headers = {**HTMX, "HX-Target": "goals"}
        stats_url = "/dashboard/api/stats.json?start=2026-03-28&end=2026-03-30"

        def shown() -> tuple[str, dict]:
            stats = json.loads(body(staff_client.get(stats_url)))
            return body(staff_client.get(url, headers=headers)), {
                row["name"]: row["conversions"] for row in stats["goals"]
            }

        text, stats = shown()
        assert "Pricing" in text and "Contact" not in stats
        # A new goal: its name at once, its figures once its hits are rebuilt.
        contact = Goal.objects.create(name="Contact", kind="page", match="/contact/")
        goals.goal_hits_rebuild(goal_id=contact.id)
        start = dt.datetime(2026, 3, 28, tzinfo=dt.UTC)
        expected = {
            row["name"]: row["conversions"]
            for row in Reference().totals(start=start, end=start + dt.timedelta(days=3))
        }
        assert expected["Contact"] > 0
        text, stats = shown()
        assert stats == expected
        assert 'data-goal="Contact"' in text
        # A rename shows at once.
        Goal.objects.filter(pk=contact.pk).update(name="Reached contact")
        text, stats = shown()
        assert 'data-goal="Reached contact"' in text and stats["Reached contact"] > 0
        # A changed match: the figures follow the rebuild.
        Goal.objects.filter(pk=contact.pk).update(match="/nowhere/")
        goals.goal_hits_rebuild(goal_id=contact.pk)
        _, stats = shown()
        assert stats["Reached contact"] == 0
