"""Journeys against a plain-Python reference: visits split again from the raw page views, each
visit walked from its first view of the page, transitions counted and folded per step."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter, defaultdict

import pytest
from django.db import connection

from dashboard import journeys
from dashboard.journeys import Direction, NodeKind
from tests.dashboard import reference
from tests.dashboard.conftest import HTMX, body
from tracker.models import PagePath, Visit, VisitSummary
from tracker.rollups import visits_aggregate
from tracker.visit_pages import visit_pages_catch_up

pytestmark = pytest.mark.django_db

UTC = dt.UTC
START = dt.datetime(2026, 3, 24, tzinfo=UTC)
RANGES = [
    (dt.datetime(2026, 3, 24, tzinfo=UTC), dt.datetime(2026, 4, 2, tzinfo=UTC)),  # everything
    (dt.datetime(2026, 3, 26, 6, tzinfo=UTC), dt.datetime(2026, 3, 29, 18, tzinfo=UTC)),
    (dt.datetime(2026, 3, 2, tzinfo=UTC), dt.datetime(2026, 3, 4, tzinfo=UTC)),  # empty
]
HOSTILE = "<script>alert(1)</script>"


# The reference: written from the definitions, not from the query.


def reference_raw_links(visits, *, start, end, path, direction, steps) -> Counter:
    """(step, source, target) -> visits, nodes as (column, kind, path)."""
    links: Counter = Counter()
    for visit in reference.in_range(visits, start=start, end=end):
        pages = [view.path for view in visit.views]
        if path not in pages:
            continue
        at = pages.index(path)  # the first view of the page
        for step in range(1, steps + 1):
            if direction is Direction.FORWARD:
                source = (step - 1, "page", pages[at + step - 1])
                if at + step < len(pages):
                    links[(step, source, (step, "page", pages[at + step]))] += 1
                else:
                    links[(step, source, (step, "exit", ""))] += 1
                    break
            else:
                target = (1 - step, "page", pages[at - step + 1])
                if at - step >= 0:
                    links[(step, (-step, "page", pages[at - step]), target)] += 1
                else:
                    links[(step, (-step, "entrance", ""), target)] += 1
                    break
    return links


def reference_fold(links: Counter, *, direction, keep: int) -> Counter:
    away = 2 if direction is Direction.FORWARD else 1  # the node on the side away from the page
    through: Counter = Counter()
    for key, count in links.items():
        through[key[away]] += count
    columns = defaultdict(list)
    for node in through:
        if node[1] == "page" and node[0] != 0:
            columns[node[0]].append(node)
    kept = set()
    for nodes in columns.values():
        kept.update(sorted(nodes, key=lambda node: (-through[node], node[2]))[:keep])

    def fold(node):
        if node[1] == "page" and node[0] != 0 and node not in kept:
            return (node[0], "other", "")
        return node

    folded: Counter = Counter()
    for (step, source, target), count in links.items():
        folded[(step, fold(source), fold(target))] += count
    return folded


def reference_journey(visits, *, start, end, path, direction, steps, keep) -> Counter:
    raw = reference_raw_links(
        visits, start=start, end=end, path=path, direction=direction, steps=steps
    )
    return reference_fold(raw, direction=direction, keep=keep)


def as_counter(journey) -> Counter:
    def node(node):
        return (node.column, str(node.kind), node.path)

    counted = Counter()
    for link in journey.links:
        key = (link.step, node(link.source), node(link.target))
        assert key not in counted, key
        counted[key] = link.visits
    return counted


def reference_top_entry(visits, *, start, end) -> str:
    counts = Counter(visit.entry_path for visit in reference.in_range(visits, start=start, end=end))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ranked[0][0] if ranked else ""


@pytest.fixture
def traffic(db, settings):
    timeout = settings.TRACKER_VISIT_TIMEOUT
    Visit.objects.bulk_create(
        reference.random_page_views(
            seed=11, visitor_count=120, start=START, days=8, timeout=timeout
        )
    )
    visits_aggregate(batch_size=89)  # small batches: late page views re-split stored visits
    views = list(Visit.objects.all())
    return reference.split_visits(views, timeout=timeout)


class JourneyReferenceTests:
    @pytest.mark.parametrize("start, end", RANGES)
    @pytest.mark.parametrize("direction", list(Direction))
    @pytest.mark.parametrize("steps, keep", [(2, 8), (3, 3), (5, 2)])
    def test_journey_equals_reference(self, traffic, start, end, direction, steps, keep):
        for path in ["/pricing/", "/signup/", None]:
            self.check(traffic, start, end, direction, steps, keep, path)

    @staticmethod
    def check(traffic, start, end, direction, steps, keep, path):
        expected_path = path or reference_top_entry(traffic, start=start, end=end)
        result = journeys.journey(
            start=start, end=end, path=path, direction=direction, steps=steps, keep=keep
        )
        assert result.path == expected_path
        if not expected_path:
            assert result.links == [] and result.visits == 0
            return
        expected = reference_journey(
            traffic,
            start=start,
            end=end,
            path=expected_path,
            direction=direction,
            steps=steps,
            keep=keep,
        )
        assert as_counter(result) == expected, path
        visits_with_page = sum(
            1
            for visit in reference.in_range(traffic, start=start, end=end)
            if expected_path in [view.path for view in visit.views]
        )
        assert result.visits == visits_with_page
        # Every visit flows through each step until it exits (or from its entrance).
        per_step = Counter()
        for link in result.links:
            per_step[link.step] += link.visits
        assert per_step[1] == visits_with_page
        assert all(per_step[step] >= per_step[step + 1] for step in range(1, steps))

    def test_data_has_loops_one_page_visits_and_folding(self, traffic):
        start, end = RANGES[0]
        visits = reference.in_range(traffic, start=start, end=end)
        assert any(visit.pageviews == 1 and visit.entry_path == "/pricing/" for visit in visits)
        assert any(
            len(pages) != len(set(pages)) and "/pricing/" in pages
            for pages in ([view.path for view in visit.views] for visit in visits)
        )
        folded = journeys.journey(start=start, end=end, path="/pricing/", steps=3, keep=2)
        assert any(link.target.kind is NodeKind.OTHER for link in folded.links)

    def test_filtered_visits_only(self, traffic):
        start, end = RANGES[0]
        mobile = VisitSummary.objects.filter(device="mobile")
        result = journeys.journey(start=start, end=end, path="/", steps=3, visits=mobile)
        chosen = [visit for visit in traffic if visit.views[0].device == "mobile"]
        expected = reference_journey(
            chosen, start=start, end=end, path="/", direction=Direction.FORWARD, steps=3, keep=8
        )
        assert as_counter(result) == expected
        assert result.path == "/"
        assert journeys.top_entry_page(start=start, end=end, visits=mobile) == (
            reference_top_entry(chosen, start=start, end=end)
        )

    def test_query_count(self, traffic, django_assert_max_num_queries):
        start, end = RANGES[0]
        # Top entry page, its page id, the flows; on PostgreSQL in a transaction of their own
        # (here a savepoint and its release) that sets work_mem and jit first.
        queries = 3 + (4 if connection.vendor == "postgresql" else 0)
        with django_assert_max_num_queries(queries):
            journeys.journey(start=start, end=end, steps=5)

    def test_journeys_outlive_the_raw_rows(self, traffic):
        """Journeys read the visits' page lists: pruning every raw row changes nothing."""
        Visit.objects.all().delete()
        start, end = RANGES[0]
        for direction in Direction:
            self.check(traffic, start, end, direction, 3, 3, "/pricing/")

    def test_catch_up_lists_the_pages_of_visits_stored_before_page_lists(self, traffic):
        """After the upgrade, stored visits have no page list until the catch-up gives them
        theirs from the raw rows; a visit whose raw rows are pruned gets an empty one."""
        start, end = RANGES[0]
        VisitSummary.objects.update(pages=None)
        assert journeys.journey(start=start, end=end, path="/pricing/").visits == 0
        pruned = VisitSummary.objects.order_by("started_at").first()
        Visit.objects.filter(tracking_id=pruned.tracking_id).delete()
        kept = [visit for visit in traffic if visit.tracking_id != pruned.tracking_id]

        assert visit_pages_catch_up(chunk=7) == VisitSummary.objects.count()
        assert visit_pages_catch_up() == 0
        lists = dict(
            ((tracking_id, number), pages)
            for tracking_id, number, pages in VisitSummary.objects.values_list(
                "tracking_id", "number", "pages"
            )
        )
        paths = dict(PagePath.objects.values_list("id", "path"))
        for visit in traffic:
            listed = [paths[page] for page in lists[(visit.tracking_id, visit.number)]]
            if visit.tracking_id == pruned.tracking_id:
                assert listed == []
            else:
                assert listed == [view.path for view in visit.views]
        for direction in Direction:
            self.check(kept, start, end, direction, 5, 2, "/pricing/")


def at(minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 5, 4, 10, minute, second, tzinfo=UTC)


def view(number: int, moment: dt.datetime, path: str, **fields) -> Visit:
    return Visit(
        event_id=uuid.uuid4(),
        tracking_id=uuid.UUID(int=number),
        visited_at=moment,
        path=path,
        status_code=200,
        response_ms=5,
        **fields,
    )


class JourneyShapesTests:
    """Known visits with the shapes the definition names, checked figure by figure."""

    @pytest.fixture
    def known(self, db):
        Visit.objects.bulk_create(
            [
                view(1, at(0), "/"),  # a bounce: exit at step one
                view(2, at(0), "/"),  # a loop: / -> /a/ -> / -> exit
                view(2, at(1), "/a/"),
                view(2, at(2), "/"),
                view(3, at(0), "/b/"),  # reaches / later: from its first view of it
                view(3, at(1), "/"),
                view(3, at(2), "/"),
                view(3, at(3), "/a/"),
                view(4, at(0), "/b/"),  # never on /
                # Same instant, new source: a second visit starting on the same second.
                view(5, at(5), "/"),
                view(5, at(5), HOSTILE, referrer_host="other.example"),
            ]
        )
        visits_aggregate()
        return at(0) - dt.timedelta(hours=1), at(0) + dt.timedelta(hours=1)

    @staticmethod
    def flows(result) -> set[tuple]:
        def name(node):
            return node.path or str(node.kind)

        return {
            (link.step, name(link.source), name(link.target), link.visits) for link in result.links
        }

    def test_forward(self, known):
        start, end = known
        assert VisitSummary.objects.filter(tracking_id=uuid.UUID(int=5)).count() == 2
        result = journeys.journey(start=start, end=end, path="/", steps=3)
        assert self.flows(result) == {
            (1, "/", "exit", 2),  # the bounce and visitor 5's first visit
            (1, "/", "/a/", 1),
            (1, "/", "/", 1),
            (2, "/a/", "/", 1),
            (2, "/", "/a/", 1),
            (3, "/", "exit", 1),
            (3, "/a/", "exit", 1),
        }
        assert result.visits == 4

    def test_backward(self, known):
        start, end = known
        result = journeys.journey(start=start, end=end, path="/", direction=Direction.BACKWARD)
        assert self.flows(result) == {
            (1, "entrance", "/", 3),
            (1, "/b/", "/", 1),
            (2, "entrance", "/b/", 1),
        }

    def test_hostile_path_is_a_page_like_any(self, known):
        start, end = known
        result = journeys.journey(start=start, end=end, path=HOSTILE, steps=2)
        assert self.flows(result) == {(1, HOSTILE, "exit", 1)}

    def test_default_is_the_top_entry_page(self, known):
        start, end = known
        assert journeys.top_entry_page(start=start, end=end) == "/"
        assert journeys.journey(start=start, end=end).path == "/"

    def test_empty_range(self, known):
        _, end = known
        result = journeys.journey(start=end, end=end + dt.timedelta(days=1))
        assert (result.path, result.links, result.visits) == ("", [], 0)

    def test_steps_out_of_range(self, db):
        with pytest.raises(ValueError):
            journeys.journey(start=START, end=START, path="/", steps=6)


class JourneyViewTests:
    URL = "/dashboard/journeys/"

    @pytest.fixture
    def known_range(self, db):
        Visit.objects.bulk_create(
            [
                view(1, at(0), "/"),
                view(2, at(0), "/"),
                view(2, at(1), HOSTILE),
                view(2, at(2), "/"),
            ]
        )
        visits_aggregate()
        return "start=2026-05-04&end=2026-05-04"

    def test_staff_only(self, client, member_client):
        assert client.get(self.URL).status_code == 302
        assert member_client.get(self.URL).status_code == 403

    def test_page_with_chart_and_table(self, staff_client, known_range):
        response = staff_client.get(f"{self.URL}?{known_range}&steps=2")
        assert response.status_code == 200
        html = body(response)
        assert 'data-figure="fig-journey"' in html
        assert "from the top entry page" in html
        assert html.count("<tr>") == 1 + 3  # head, then: / -> exit, / -> hostile, hostile -> /
        assert HOSTILE not in html  # escaped everywhere, the JSON of the chart included
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert '<script src="/static/plotly/plotly.min.js"' in html

    def test_htmx_gets_the_part_alone(self, staff_client, known_range):
        response = staff_client.get(f"{self.URL}?{known_range}&to=/", headers=HTMX)
        assert response.status_code == 200
        html = body(response)
        assert html.lstrip().startswith('<div id="journeys"')
        assert "The 3 pages before" in html and "<html" not in html

    def test_from_a_hostile_path(self, staff_client, known_range):
        response = staff_client.get(
            self.URL, {"start": "2026-05-04", "end": "2026-05-04", "from": HOSTILE}
        )
        assert response.status_code == 200
        assert HOSTILE not in body(response)

    def test_no_visits(self, staff_client, db):
        response = staff_client.get(f"{self.URL}?range=7d")
        assert response.status_code == 200
        assert "No visits in this range." in body(response)

    @pytest.mark.parametrize(
        "query, message",
        [
            ("steps=1", "steps:"),
            ("steps=6", "steps:"),
            ("steps=two", "steps: Give a whole number from 2 to 5."),
            ("from=/a/&to=/b/", "Give either from= or to=, not both."),
            ("from=%2Fa%0Ab%2F", "from: The path must not contain control characters."),
            ("to=" + "x" * 501, "to:"),
            ("range=1y", "range:"),
            ("start=2026-05-04", "A custom range needs both"),
        ],
    )
    def test_bad_parameters_are_400(self, staff_client, query, message):
        response = staff_client.get(f"{self.URL}?{query}")
        assert response.status_code == 400
        assert message in body(response)
        htmx = staff_client.get(f"{self.URL}?{query}", headers=HTMX)
        assert htmx.status_code == 400
        assert message in body(htmx)

    def test_dashboard_links_to_journeys(self, staff_client, db):
        html = body(staff_client.get("/dashboard/?range=30d"))
        assert 'href="/dashboard/journeys/?range=30d"' in html
