"""The Journeys view under the dashboard's filters: its flows equal the plain-Python reference
restricted to the visits that pass the filters (test_filters' Reference, from the raw rows), on
every database; bad filters are 400s; links, forms and chips keep the filters."""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode

import pytest

from dashboard.filters import filters_parse
from dashboard.journeys import Direction
from tests.dashboard import reference, test_filters
from tests.dashboard.conftest import HTMX, body
from tests.dashboard.test_filters import END, RANGE, START, Reference, _as_querydict
from tests.dashboard.test_journeys import as_counter, reference_journey, reference_top_entry

pytestmark = pytest.mark.django_db

# test_filters' random returning visitors, with countries, events and goal hits.
traffic = test_filters.traffic

URL = "/dashboard/journeys/"

# (filters, the journey's own parameters): "is", "is not", "contains", two and three at once,
# the visit-level dimensions (page, goal) and one that matches nothing.
CASES = [
    ({"browser": "Firefox"}, {"from": "/pricing/", "steps": "3"}),
    ({"referrer": "news.example.com"}, {}),
    ({"referrer": "news.example.com", "device": "desktop"}, {"to": "/signup/", "steps": "4"}),
    ({"browser__not": "Chrome"}, {"from": "/", "steps": "5"}),
    ({"referrer__contains": "example.ORG"}, {"steps": "2"}),
    ({"page": "/pricing/", "browser__not": "Firefox", "country": "GB"}, {"from": "/pricing/"}),
    ({"goal": "Signup"}, {"to": "/signup/"}),
    ({"os__not": "Linux", "page__contains": "blog"}, {"to": "/pricing/", "steps": "2"}),
    ({"browser": "Netscape"}, {}),
]


def _ids(cases) -> list[str]:
    return [urlencode({**case, **own}) for case, own in cases]


def expected_journey(traffic, case: dict, own: dict) -> tuple[str, object, int]:
    """The reference's page, flows and visit count for the filtered visits of RANGE."""
    chosen = Reference(traffic, filters_parse(_as_querydict(case))).chosen
    direction = Direction.BACKWARD if own.get("to") else Direction.FORWARD
    path = own.get("to") or own.get("from") or reference_top_entry(chosen, start=START, end=END)
    steps = int(own.get("steps", 3))
    flows = reference_journey(
        chosen, start=START, end=END, path=path, direction=direction, steps=steps, keep=8
    )
    count = sum(
        1
        for visit in reference.in_range(chosen, start=START, end=END)
        if path in [view.path for view in visit.views]
    )
    return path, flows, count


class JourneyFilterReferenceTests:
    @pytest.mark.parametrize(("case", "own"), CASES, ids=_ids(CASES))
    def test_page_flows_equal_reference(self, staff_client, traffic, case, own):
        path, flows, count = expected_journey(traffic, case, own)
        response = staff_client.get(f"{URL}?{urlencode({**RANGE, **case, **own})}")
        assert response.status_code == 200
        journey = response.context["journey"]
        assert journey.path == path
        assert journey.visits == count
        assert as_counter(journey) == (flows if path else {})
        # The table shows those flows: one row each.
        assert body(response).count("<tr>") == (1 + len(flows) if flows else 0)
        # The same answer a second time, from the cache.
        again = staff_client.get(f"{URL}?{urlencode({**RANGE, **case, **own})}", headers=HTMX)
        assert as_counter(again.context["journey"]) == as_counter(journey)

    def test_cases_are_not_trivial(self, traffic):
        """Most cases keep some visits through the page and lose others to the filters."""
        unfiltered = {
            own_key: expected_journey(traffic, {}, own)[2]
            for own_key, own in ((urlencode(own), own) for _, own in CASES)
        }
        counts = [expected_journey(traffic, case, own)[2] for case, own in CASES]
        narrowed = [
            0 < count < unfiltered[urlencode(own)]
            for count, (_, own) in zip(counts, CASES, strict=True)
            if own.get("from") or own.get("to")
        ]
        assert sum(narrowed) >= len(narrowed) - 1
        assert counts[-1] == 0 and sum(1 for count in counts if count > 0) >= len(CASES) - 2

    def test_filters_join_the_cache_key(self, staff_client, traffic):
        own = {"from": "/", "steps": "3"}
        plain = staff_client.get(f"{URL}?{urlencode({**RANGE, **own})}").context["journey"]
        case = {"browser": "Firefox"}
        filtered = staff_client.get(f"{URL}?{urlencode({**RANGE, **case, **own})}")
        _, flows, count = expected_journey(traffic, case, own)
        assert filtered.context["journey"].visits == count < plain.visits
        assert as_counter(filtered.context["journey"]) == flows
        # And back: the unfiltered journey is not the filtered one's cached copy.
        again = staff_client.get(f"{URL}?{urlencode({**RANGE, **own})}").context["journey"]
        assert again.visits == plain.visits


class JourneyFilterPageTests:
    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("device=phone", "device: the device is one of"),
            ("browser__before=x", "the operator must be is, __not or __contains"),
            ("colour__not=red", "is not a filter"),
            ("device__contains=mob", "device takes is or __not"),
            ("country=Germany", "a country is a two-letter ISO code"),
            ("referrer__contains=", "give some text to look for"),
            ("browser=a%0Ab", "control characters"),
        ],
    )
    def test_bad_filter_is_400(self, staff_client, db, query, message):
        response = staff_client.get(f"{URL}?range=7d&{query}")
        assert response.status_code == 400
        assert message in html.unescape(body(response))
        htmx = staff_client.get(f"{URL}?range=7d&{query}", headers=HTMX)
        assert htmx.status_code == 400
        assert message in body(htmx)

    def test_links_forms_and_chips_keep_the_filters(self, staff_client, traffic):
        case = {"browser__not": "Chrome", "referrer": "news.example.com"}
        filters = "referrer=news.example.com&browser__not=Chrome"
        response = staff_client.get(f"{URL}?{urlencode({**RANGE, **case, 'from': '/'})}")
        page = html.unescape(body(response))
        assert response.context["journey"].links
        # The link back to the dashboard, the range links and the table's links.
        assert f'href="/dashboard/?start=2026-03-25&end=2026-03-29&{filters}"' in page
        assert f'href="?range=7d&{filters}&from=%2F"' in page
        table = page[page.index("<tbody>") : page.index("</tbody>")]
        links = re.findall(r'(?:href|hx-get)="([^"]*)"', table)
        assert links and all(
            link.startswith(f"?start=2026-03-25&end=2026-03-29&{filters}&from=") for link in links
        )
        # The from/to form: the range and the filters as hidden fields.
        form = page[page.index('class="journey-form"') :]
        form = form[: form.index("</form>")]
        assert '<input type="hidden" name="browser__not" value="Chrome">' in form
        assert '<input type="hidden" name="referrer" value="news.example.com">' in form
        # The chips: each removes itself, on the journeys page, keeping the rest and from=.
        assert 'data-filter="browser__not"' in page and 'data-filter="referrer"' in page
        assert 'href="?start=2026-03-25&end=2026-03-29&referrer=news.example.com&from=%2F"' in page
        assert 'href="?start=2026-03-25&end=2026-03-29&browser__not=Chrome&from=%2F"' in page
        assert 'href="?start=2026-03-25&end=2026-03-29&from=%2F"' in page  # clear filters
        assert 'hx-target="#journeys"' in page and 'hx-target="#panels"' not in page
        assert "Add a filter" not in page

    def test_hostile_filter_values_are_escaped(self, staff_client, db):
        hostile = "<script>alert(1)</script>"
        response = staff_client.get(URL, {"range": "7d", "utm_campaign": hostile})
        assert response.status_code == 200
        assert hostile not in body(response)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body(response)

    def test_dashboard_journeys_link_carries_the_filters(self, staff_client, db):
        page = html.unescape(
            body(staff_client.get("/dashboard/?range=30d&browser=Firefox&device__not=mobile"))
        )
        assert 'href="/dashboard/journeys/?range=30d&browser=Firefox&device__not=mobile"' in page
