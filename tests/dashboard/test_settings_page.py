"""/dashboard/settings/: staff only, CSRF-protected forms (htmx and plain POST), 400 if bad."""

from __future__ import annotations

import hashlib
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from dashboard import sharing
from dashboard.models import ReportSubscription, SharedLink
from tests.dashboard.conftest import HTMX, body

pytestmark = pytest.mark.django_db

SETTINGS_URLS = [
    ("get", "/dashboard/settings/", {}),
    ("post", "/dashboard/settings/reports/", {"email": "a@example.org", "kinds": ["weekly"]}),
    ("post", "/dashboard/settings/links/", {"label": "board"}),
    ("post", "/dashboard/settings/links/{link}/revoke/", {}),
]


def unrevoked_link() -> SharedLink:
    link, _ = sharing.shared_link_create(user=None, label="", expires_at=None, allow_exports=False)
    return link


def staff(client: Client) -> object:
    return get_user_model().objects.get(username="staff")


class SettingsAccessTests:
    @pytest.mark.parametrize(("method", "url", "data"), SETTINGS_URLS)
    def test_anonymous_redirected_to_login(self, client, method, url, data):
        link = unrevoked_link()
        url = url.format(link=link.pk)
        response = getattr(client, method)(url, data)
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/login/?next={quote(url, safe='/')}"
        assert SharedLink.objects.get() == link and not ReportSubscription.objects.exists()
        link.refresh_from_db()
        assert link.revoked_at is None

    @pytest.mark.parametrize(("method", "url", "data"), SETTINGS_URLS)
    def test_non_staff_forbidden(self, member_client, method, url, data):
        link = unrevoked_link()
        url = url.format(link=link.pk)
        assert getattr(member_client, method)(url, data).status_code == 403
        assert SharedLink.objects.get() == link and not ReportSubscription.objects.exists()
        link.refresh_from_db()
        assert link.revoked_at is None

    def test_staff_sees_both_sections(self, staff_client):
        response = staff_client.get("/dashboard/settings/")
        text = body(response)
        assert response.status_code == 200
        assert 'id="reports"' in text and 'id="links"' in text
        assert 'hx-post="/dashboard/settings/reports/"' in text
        assert 'name="csrfmiddlewaretoken"' in text
        assert response["Cache-Control"].startswith("max-age=0")

    def test_csrf_enforced(self, db):
        client = Client(enforce_csrf_checks=True)
        user = get_user_model().objects.create_user("staff2", is_staff=True)
        client.force_login(user)
        response = client.post("/dashboard/settings/reports/", {"kinds": ["weekly"]})
        assert response.status_code == 403
        assert not ReportSubscription.objects.exists()
        page = client.get("/dashboard/settings/")
        token = page.cookies["csrftoken"].value
        response = client.post(
            "/dashboard/settings/reports/",
            {"email": "s2@example.org", "kinds": ["weekly"]},
            headers={**HTMX, "X-CSRFToken": token},
        )
        assert response.status_code == 200
        assert ReportSubscription.objects.filter(user=user, kind="weekly").exists()

    def test_get_only_and_post_only(self, staff_client):
        assert staff_client.post("/dashboard/settings/").status_code == 405
        assert staff_client.get("/dashboard/settings/reports/").status_code == 405


class ReportSettingsTests:
    def test_plain_post_subscribes_and_redirects(self, staff_client):
        response = staff_client.post(
            "/dashboard/settings/reports/",
            {"email": "me@example.org", "kinds": ["weekly", "monthly"]},
        )
        assert response.status_code == 302 and response["Location"] == "/dashboard/settings/"
        user = staff(staff_client)
        assert user.email == "me@example.org"
        kinds = set(ReportSubscription.objects.filter(user=user).values_list("kind", flat=True))
        assert kinds == {"weekly", "monthly"}
        text = body(staff_client.get("/dashboard/settings/"))
        assert 'value="weekly" checked' in text and 'value="monthly" checked' in text

    def test_htmx_post_returns_section_and_keeps_start_date(self, staff_client):
        staff_client.post("/dashboard/settings/reports/", {"email": "m@e.org", "kinds": ["weekly"]})
        first = ReportSubscription.objects.get()
        response = staff_client.post(
            "/dashboard/settings/reports/",
            {"email": "m@e.org", "kinds": ["weekly"]},
            headers={**HTMX, "HX-Target": "reports"},
        )
        text = body(response)
        assert response.status_code == 200
        assert text.lstrip().startswith('<section id="reports"') and "Saved." in text
        assert ReportSubscription.objects.get().created_at == first.created_at

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            ({"email": "not-an-address", "kinds": ["weekly"]}, "Enter a valid email address."),
            ({"email": "a@example.org", "kinds": ["daily"]}, "Select a valid choice."),
            ({"email": "", "kinds": ["weekly"]}, "Reports need an email address to go to."),
            ({"email": "a@example.org\n", "kinds": ["weekly"] * 3}, None),
        ],
    )
    @pytest.mark.parametrize("headers", [{}, HTMX], ids=["plain", "htmx"])
    def test_bad_input_is_400(self, staff_client, data, message, headers):
        response = staff_client.post("/dashboard/settings/reports/", data, headers=headers)
        if message is None:  # a trailing newline is stripped and repeats are one choice
            assert response.status_code in (200, 302)
            assert ReportSubscription.objects.count() == 1
            return
        assert response.status_code == 400
        assert message in body(response)
        assert not ReportSubscription.objects.exists()


class SharedLinkSettingsTests:
    def test_create_shows_link_once_and_stores_its_hash(self, staff_client):
        response = staff_client.post(
            "/dashboard/settings/links/",
            {"label": "board <b>meeting</b>", "expires_in_days": "7", "allow_exports": "on"},
        )
        text = body(response)
        assert response.status_code == 200
        link = SharedLink.objects.get()
        start = text.index('data-new-link') - 200
        url = text[start:].split('value="', 1)[1].split('"', 1)[0]
        assert url.startswith("http://testserver/share/") and url.endswith("/")
        token = url.removeprefix("http://testserver/share/").removesuffix("/")
        assert len(token) == 55 and token.startswith(link.selector)
        assert link.verifier_hash == hashlib.sha256(token[12:].encode()).hexdigest()
        assert token[12:] not in str(list(SharedLink.objects.values()))
        assert "board &lt;b&gt;meeting&lt;/b&gt;" in text
        assert link.allow_exports and link.expires_at is not None
        # Listed afterwards, without the token.
        listing = body(staff_client.get("/dashboard/settings/"))
        assert "board &lt;b&gt;meeting&lt;/b&gt;" in listing and token[12:] not in listing
        assert "by staff" in listing and "active" in listing

    def test_htmx_create_returns_links_section(self, staff_client):
        response = staff_client.post("/dashboard/settings/links/", {}, headers=HTMX)
        text = body(response)
        assert text.lstrip().startswith('<section id="links"') and "data-new-link" in text

    @pytest.mark.parametrize(
        "data",
        [{"expires_in_days": "3650"}, {"expires_in_days": "x"}, {"label": "x" * 101}],
    )
    def test_bad_input_is_400(self, staff_client, data):
        response = staff_client.post("/dashboard/settings/links/", data)
        assert response.status_code == 400
        assert not SharedLink.objects.exists()
        assert "data-new-link" not in body(response)

    def test_revoke(self, staff_client):
        staff_client.post("/dashboard/settings/links/", {"label": "old"})
        link = SharedLink.objects.get()
        response = staff_client.post(f"/dashboard/settings/links/{link.pk}/revoke/")
        assert response.status_code == 302
        link.refresh_from_db()
        assert link.revoked_at is not None
        assert "revoked" in body(staff_client.get("/dashboard/settings/"))
        response = staff_client.post(f"/dashboard/settings/links/{link.pk}/revoke/", headers=HTMX)
        assert response.status_code == 200
        assert staff_client.post("/dashboard/settings/links/999/revoke/").status_code == 404


class DashboardAdminTests:
    @pytest.mark.parametrize("model", ["reportsubscription", "reportdelivery", "sharedlink"])
    def test_changelist_read_only(self, admin_client, model):
        assert admin_client.get(f"/admin/dashboard/{model}/").status_code == 200
        assert admin_client.get(f"/admin/dashboard/{model}/add/").status_code == 403

    def test_link_page_hides_the_hash(self, admin_client, staff_client):
        staff_client.post("/dashboard/settings/links/", {"label": "x"})
        link = SharedLink.objects.get()
        response = admin_client.get(f"/admin/dashboard/sharedlink/{link.pk}/change/")
        assert response.status_code == 200
        assert link.verifier_hash not in body(response)
