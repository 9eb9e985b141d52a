from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User

from tracker.models import Visit

pytestmark = pytest.mark.django_db

ADMIN_MODELS = [
    "visit",
    "trackedsession",
    "pagehourly",
    "visithourly",
    "pagedaily",
    "visitdaily",
    "visitsummary",
    "aggregationstate",
    "event",
    "eventdaily",
]


@pytest.fixture
def staff_client(client):
    User.objects.create_superuser("root", password="a-long-password-9")
    client.login(username="root", password="a-long-password-9")
    return client


class TrackerAdminTests:
    @pytest.mark.parametrize("model", ADMIN_MODELS)
    def test_admin_changelist_read_only(self, staff_client, model):
        response = staff_client.get(f"/admin/tracker/{model}/")
        assert response.status_code == 200
        assert staff_client.get(f"/admin/tracker/{model}/add/").status_code == 403

    def test_admin_visit_search_on_path(self, staff_client):
        for path in ["/pricing/", "/about/"]:
            Visit.objects.create(
                event_id=uuid.uuid4(),
                tracking_id=uuid.uuid4(),
                visited_at=datetime.now(UTC),
                path=path,
                status_code=200,
                response_ms=1,
            )
        body = staff_client.get("/admin/tracker/visit/", {"q": "pricing"}).content.decode()
        assert "/pricing/" in body
        assert "/about/" not in body

    def test_admin_visit_cannot_change_or_delete(self, staff_client):
        visit = Visit.objects.create(
            event_id=uuid.uuid4(),
            tracking_id=uuid.uuid4(),
            visited_at=datetime.now(UTC),
            path="/",
            status_code=200,
            response_ms=1,
        )
        change_page = staff_client.get(f"/admin/tracker/visit/{visit.pk}/change/")
        assert change_page.status_code == 200
        assert 'name="_save"' not in change_page.content.decode()
        delete = staff_client.post(f"/admin/tracker/visit/{visit.pk}/delete/", {"post": "yes"})
        assert delete.status_code == 403
        assert Visit.objects.filter(pk=visit.pk).exists()
