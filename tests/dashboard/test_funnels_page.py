"""The funnels page (create and delete with htmx or without) and the funnel admin."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from tests.dashboard.conftest import HTMX, XSS_PATH
from tracker.models import Funnel, FunnelStep, Goal

pytestmark = pytest.mark.django_db


@pytest.fixture
def goals(db) -> list[Goal]:
    return [
        Goal.objects.create(name="Home", kind="page", match="/"),
        Goal.objects.create(name="Pricing", kind="page", match="/pricing/"),
        Goal.objects.create(name=XSS_PATH, kind="event", match="signup"),
    ]


def steps_of(funnel: Funnel) -> list[str]:
    return [step.goal.name for step in funnel.steps.order_by("position")]


def post_data(name: str, goals: list[Goal | int | str], across: bool = False) -> dict:
    data = {"name": name}
    if across:
        data["across_visits"] = "on"
    for number, goal in enumerate(goals, 1):
        data[f"step_{number}"] = str(goal.pk if isinstance(goal, Goal) else goal)
    return data


class FunnelsPageTests:
    def test_page_lists_funnels_and_escapes_goal_names(self, staff_client, goals):
        funnel = Funnel.objects.create(name="<b>Signup</b>")
        FunnelStep.objects.create(funnel=funnel, position=1, goal=goals[0])
        FunnelStep.objects.create(funnel=funnel, position=2, goal=goals[2])
        response = staff_client.get(reverse("dashboard:funnels"))
        assert response.status_code == 200
        html = response.content.decode()
        assert "&lt;b&gt;Signup&lt;/b&gt;" in html
        assert XSS_PATH not in html
        assert 'hx-post="/dashboard/funnels/add/"' in html

    def test_create_with_htmx_in_the_order_chosen(self, staff_client, goals):
        data = post_data("Signup", [goals[1], "", goals[0], goals[1]], across=True)
        response = staff_client.post(reverse("dashboard:funnel-add"), data, headers=HTMX)
        assert response.status_code == 200
        funnel = Funnel.objects.get(name="Signup")
        assert funnel.across_visits
        assert steps_of(funnel) == ["Pricing", "Home", "Pricing"]
        assert list(funnel.steps.values_list("position", flat=True)) == [1, 2, 3]
        assert 'id="editor"' in response.content.decode()
        assert "<html" not in response.content.decode()

    def test_create_without_htmx_redirects(self, staff_client, goals):
        response = staff_client.post(reverse("dashboard:funnel-add"), post_data("A", goals[:2]))
        assert response.status_code == 302
        assert response["Location"] == reverse("dashboard:funnels")
        assert not Funnel.objects.get(name="A").across_visits

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (post_data("One", ["1"]), "2 to 8 steps; 1 chosen"),
            (post_data("None", []), "2 to 8 steps; 0 chosen"),
            (post_data("", ["1", "2"]), "Name"),
            (post_data("x" * 101, ["1", "2"]), "Name"),
            (post_data("Bad goal", ["1", "999"]), "Step 2"),
            (post_data("Bad goal", ["1", "not-a-number"]), "Step 2"),
            ({"name": "Nine", **{f"step_{n}": "1" for n in range(1, 10)}}, None),
        ],
    )
    def test_bad_input_gets_400_and_stores_nothing(self, staff_client, goals, data, message):
        # Goal ids 1 and 2 may not exist in this database: map them to real ones.
        for key, value in data.items():
            if key.startswith("step_") and value in ("1", "2"):
                data[key] = str(goals[int(value) - 1].pk)
        response = staff_client.post(reverse("dashboard:funnel-add"), data, headers=HTMX)
        if message is None:  # a ninth step is not a field: eight steps are kept
            assert response.status_code == 200
            assert Funnel.objects.get(name="Nine").steps.count() == 8
            return
        assert response.status_code == 400
        assert message in response.content.decode()
        assert not Funnel.objects.exists()

    def test_duplicate_name_gets_400(self, staff_client, goals):
        data = post_data("Same", goals[:2])
        assert staff_client.post(reverse("dashboard:funnel-add"), data).status_code == 302
        response = staff_client.post(reverse("dashboard:funnel-add"), data, headers=HTMX)
        assert response.status_code == 400
        assert "exists already" in response.content.decode()
        assert Funnel.objects.count() == 1

    def test_delete_keeps_goals(self, staff_client, goals):
        staff_client.post(reverse("dashboard:funnel-add"), post_data("Gone", goals[:2]))
        funnel = Funnel.objects.get()
        url = reverse("dashboard:funnel-delete", args=[funnel.pk])
        response = staff_client.post(url, headers=HTMX)
        assert response.status_code == 200
        assert not Funnel.objects.exists()
        assert not FunnelStep.objects.exists()
        assert Goal.objects.count() == 3
        assert staff_client.post(url).status_code == 404

    def test_get_on_post_urls_refused(self, staff_client, goals):
        assert staff_client.get(reverse("dashboard:funnel-add")).status_code == 405

    def test_csrf_required(self, goals):
        user = get_user_model().objects.create_user("csrf", password="unused-pw-3", is_staff=True)
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        response = client.post(reverse("dashboard:funnel-add"), post_data("X", goals[:2]))
        assert response.status_code == 403
        assert not Funnel.objects.exists()

    def test_staff_only(self, member_client, client, goals):
        data = post_data("X", goals[:2])
        assert member_client.get(reverse("dashboard:funnels")).status_code == 403
        assert member_client.post(reverse("dashboard:funnel-add"), data).status_code == 403
        response = client.post(reverse("dashboard:funnel-add"), data)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]
        assert not Funnel.objects.exists()


@pytest.fixture
def admin_client_logged_in(client):
    get_user_model().objects.create_superuser("root", password="a-long-password-9")
    client.login(username="root", password="a-long-password-9")
    return client


def admin_post(goals: list[Goal], *, name: str = "Admin funnel") -> dict:
    data = {
        "name": name,
        "steps-TOTAL_FORMS": str(len(goals)),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "2",
        "steps-MAX_NUM_FORMS": "8",
    }
    for index, goal in enumerate(goals):
        data[f"steps-{index}-position"] = str(index + 1)
        data[f"steps-{index}-goal"] = str(goal.pk)
    return data


class FunnelAdminTests:
    def test_admin_creates_funnel_with_steps(self, admin_client_logged_in, goals):
        response = admin_client_logged_in.post(
            "/admin/tracker/funnel/add/", admin_post([goals[1], goals[0]])
        )
        assert response.status_code == 302
        assert steps_of(Funnel.objects.get()) == ["Pricing", "Home"]

    @pytest.mark.parametrize("count", [1, 9])
    def test_admin_refuses_too_few_or_many_steps(self, admin_client_logged_in, goals, count):
        chosen = (goals * 3)[:count]
        response = admin_client_logged_in.post("/admin/tracker/funnel/add/", admin_post(chosen))
        assert response.status_code == 200  # the form again, with the error
        assert not Funnel.objects.exists()

    def test_admin_change_page_lists_steps_by_position(self, admin_client_logged_in, goals):
        funnel = Funnel.objects.create(name="Ordered")
        FunnelStep.objects.create(funnel=funnel, position=2, goal=goals[0])
        FunnelStep.objects.create(funnel=funnel, position=1, goal=goals[1])
        response = admin_client_logged_in.get(f"/admin/tracker/funnel/{funnel.pk}/change/")
        assert response.status_code == 200
        formset = response.context["inline_admin_formsets"][0].formset
        assert [form.instance.position for form in formset.forms] == [1, 2]
