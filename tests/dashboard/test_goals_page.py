"""/dashboard/goals/ and the Goal admin: staff only, CSRF on, validated (400 with messages)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.dashboard.conftest import HTMX, body
from tracker.models import Funnel, FunnelStep, Goal

pytestmark = pytest.mark.django_db

GOOD = {"name": "Signed up", "kind": "page", "match": "/signup/thanks/"}
BAD = [
    ({"name": "", "kind": "page", "match": "/a/"}, "name"),
    ({"name": "x" * 101, "kind": "page", "match": "/a/"}, "name"),
    ({"name": "A", "kind": "visit", "match": "/a/"}, "kind"),
    ({"name": "A", "kind": "page", "match": "signup/*"}, "starts with"),
    ({"name": "A", "kind": "page", "match": "/a/", "prop_key": "plan", "prop_value": "pro"},
     "Only event goals"),
    ({"name": "A", "kind": "event", "match": "sign<up>"}, "Event name"),
    ({"name": "A", "kind": "event", "match": "x" * 65}, "Event name"),
    ({"name": "A", "kind": "event", "match": "buy", "prop_key": "plan"}, "value"),
    ({"name": "A", "kind": "event", "match": "buy", "prop_value": "pro"}, "Name the property"),
    ({"name": "A", "kind": "event", "match": "buy", "prop_key": "pl\"an", "prop_value": "x"},
     "Property name"),
]  # fmt: skip


class GoalsPageTests:
    def test_anonymous_redirected_and_member_forbidden(self, client, member_client):
        assert client.get("/dashboard/goals/").status_code == 302
        assert client.post("/dashboard/goals/", GOOD).status_code == 302
        assert member_client.get("/dashboard/goals/").status_code == 403
        assert member_client.post("/dashboard/goals/", GOOD).status_code == 403
        assert not Goal.objects.exists()

    def test_add_with_htmx_lists_the_goal_and_queues_its_hits(
        self, staff_client, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks() as callbacks:
            response = staff_client.post("/dashboard/goals/", GOOD, headers=HTMX)
        assert response.status_code == 200
        text = body(response)
        assert 'id="goals"' in text and "<html" not in text
        assert "/signup/thanks/" in text
        goal = Goal.objects.get()
        assert (goal.name, goal.kind, goal.match) == ("Signed up", "page", "/signup/thanks/")
        assert len(callbacks) == 1

    def test_add_without_htmx_redirects(self, staff_client):
        response = staff_client.post("/dashboard/goals/", {**GOOD, "kind": "event",
                                                           "match": "purchase",
                                                           "prop_key": "plan",
                                                           "prop_value": "pro"})  # fmt: skip
        assert response.status_code == 302
        assert Goal.objects.get().prop_value == "pro"

    @pytest.mark.parametrize(("data", "message"), BAD)
    def test_bad_input_is_400_with_message(self, staff_client, data, message):
        response = staff_client.post("/dashboard/goals/", data, headers=HTMX)
        assert response.status_code == 400
        assert message in body(response)
        assert not Goal.objects.exists()

    def test_duplicate_name_is_400(self, staff_client):
        Goal.objects.create(name="Signed up", kind="page", match="/")
        response = staff_client.post("/dashboard/goals/", GOOD, headers=HTMX)
        assert response.status_code == 400
        assert "already exists" in body(response)

    def test_names_are_escaped(self, staff_client):
        Goal.objects.create(name="<script>x</script>", kind="page", match="/<b>/")
        text = body(staff_client.get("/dashboard/goals/"))
        assert "<script>x</script>" not in text and "&lt;script&gt;" in text
        assert "/<b>/" not in text

    def test_csrf_enforced(self, db):
        user = get_user_model().objects.create_user("s", password="unused-pw-3", is_staff=True)
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        assert client.post("/dashboard/goals/", GOOD).status_code == 403
        assert not Goal.objects.exists()

    def test_delete(self, staff_client):
        goal = Goal.objects.create(name="A", kind="page", match="/")
        response = staff_client.post(f"/dashboard/goals/{goal.pk}/delete/", headers=HTMX)
        assert response.status_code == 200
        assert not Goal.objects.exists()
        assert staff_client.get(f"/dashboard/goals/{goal.pk}/delete/").status_code == 405

    def test_delete_goal_of_a_funnel_is_400(self, staff_client):
        goal = Goal.objects.create(name="A", kind="page", match="/")
        funnel = Funnel.objects.create(name="F")
        FunnelStep.objects.create(funnel=funnel, position=1, goal=goal)
        response = staff_client.post(f"/dashboard/goals/{goal.pk}/delete/", headers=HTMX)
        assert response.status_code == 400
        assert "funnel" in body(response)
        assert Goal.objects.filter(pk=goal.pk).exists()


@pytest.fixture
def admin_client_(db) -> Client:
    user = get_user_model().objects.create_superuser("root", password="a-long-password-9")
    client = Client()
    client.force_login(user)
    return client


class GoalAdminTests:
    def test_add_valid_goal_queues_rebuild(self, admin_client_, django_capture_on_commit_callbacks):
        data = {"name": "Buy", "kind": "event", "match": "purchase", "prop_key": "",
                "prop_value": ""}  # fmt: skip
        with django_capture_on_commit_callbacks() as callbacks:
            response = admin_client_.post("/admin/tracker/goal/add/", data)
        assert response.status_code == 302
        assert Goal.objects.get().match == "purchase"
        assert len(callbacks) == 1

    def test_invalid_goal_refused(self, admin_client_):
        data = {"name": "Bad", "kind": "page", "match": "no-slash", "prop_key": "",
                "prop_value": ""}  # fmt: skip
        response = admin_client_.post("/admin/tracker/goal/add/", data)
        assert response.status_code == 200
        assert "starts with" in body(response)
        assert not Goal.objects.exists()

    def test_rename_does_not_rebuild(self, admin_client_, django_capture_on_commit_callbacks):
        goal = Goal.objects.create(name="A", kind="page", match="/a/")
        data = {"name": "B", "kind": "page", "match": "/a/", "prop_key": "", "prop_value": ""}
        with django_capture_on_commit_callbacks() as callbacks:
            response = admin_client_.post(f"/admin/tracker/goal/{goal.pk}/change/", data)
        assert response.status_code == 302
        assert callbacks == []
        data["match"] = "/b/"
        with django_capture_on_commit_callbacks() as callbacks:
            admin_client_.post(f"/admin/tracker/goal/{goal.pk}/change/", data)
        assert len(callbacks) == 1

    def test_goal_hits_read_only(self, admin_client_):
        assert admin_client_.get("/admin/tracker/goalhit/").status_code == 200
        assert admin_client_.get("/admin/tracker/goalhit/add/").status_code == 403
