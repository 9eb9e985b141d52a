"""Countries: looked up from the visitor's address, which nothing keeps."""

from __future__ import annotations

import logging

import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client

from tests.tracker.user_agents import BROWSER_UA
from tracker import rollups
from tracker.buffer import flush_open_sinks, redis_client
from tracker.countries import client_address, country_label, country_of, request_country
from tracker.models import TrackedSession, Visit, VisitHourly, VisitSummary

# Addresses whose registration is public and long-standing: the registries' own, root name
# servers', national research networks', big providers'.
REGISTERED = {
    "8.8.8.8": "US",
    "9.9.9.9": "US",
    "1.0.16.1": "JP",
    "202.12.27.33": "JP",
    "81.2.69.142": "GB",
    "193.0.6.139": "NL",
    "194.109.6.66": "NL",
    "62.4.0.1": "FR",
    "213.180.193.3": "RU",
    "200.160.2.3": "BR",
    "154.0.0.1": "ZA",
    "2001:67c:2e8:22::c100:68b": "NL",
    "2001:dc7::1": "CN",
    "2001:12ff::1": "BR",
    "2a01:4f8::1": "DE",
    "2001:4860:4860::8888": "US",
    "::ffff:81.2.69.142": "GB",  # an IPv4 visitor seen by an IPv6 socket
}
NO_COUNTRY = [
    "127.0.0.1",
    "::1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # carrier-grade NAT
    "169.254.1.1",
    "fe80::1",
    "fc00::1",
    "192.0.2.1",  # documentation
    "2001:db8::1",
    "0.0.0.0",  # noqa: S104
    "255.255.255.255",
    "224.0.0.1",
    "",
    "garbage",
    "8.8.8.8 ",
    "8.8.8.8:443",
    "[2a01:4f8::1]",
    "999.1.1.1",
    "8.8.8.8\x00",
    "1" * 10_000,
]


class CountryOfTests:
    @pytest.mark.parametrize(("address", "country"), REGISTERED.items())
    def test_country_of_registered_address(self, address, country):
        assert country_of(address) == country

    @pytest.mark.parametrize("address", NO_COUNTRY)
    def test_country_of_private_reserved_malformed_is_unknown(self, address):
        assert country_of(address) == ""

    def test_country_label_flag_and_short_name(self):
        assert country_label("GB") == "\U0001f1ec\U0001f1e7 United Kingdom"
        assert country_label("ZZ") == "ZZ"


class ClientAddressTests:
    def test_client_address_without_proxies_ignores_forwarded_header(self):
        meta = {"REMOTE_ADDR": "81.2.69.142", "HTTP_X_FORWARDED_FOR": "8.8.8.8"}
        assert client_address(meta, trusted_proxies=0) == "81.2.69.142"

    def test_client_address_behind_one_proxy_takes_last_entry(self):
        # The client forged the first entry; the proxy appended the address it saw.
        meta = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "8.8.8.8, 81.2.69.142"}
        assert client_address(meta, trusted_proxies=1) == "81.2.69.142"

    def test_client_address_behind_two_proxies_skips_the_inner_one(self):
        meta = {
            "REMOTE_ADDR": "10.0.0.3",
            "HTTP_X_FORWARDED_FOR": "8.8.8.8, 193.0.6.139,10.0.0.2",
        }
        assert client_address(meta, trusted_proxies=2) == "193.0.6.139"

    def test_client_address_fewer_entries_than_proxies_is_unknown(self):
        meta = {"REMOTE_ADDR": "10.0.0.3", "HTTP_X_FORWARDED_FOR": "81.2.69.142"}
        assert client_address(meta, trusted_proxies=2) == ""
        assert request_country({"REMOTE_ADDR": "10.0.0.3"}, trusted_proxies=1) == ""


def browser(**extra) -> Client:
    return Client(headers={"user-agent": BROWSER_UA}, **extra)


@pytest.mark.django_db
class RecordedCountryTests:
    @pytest.fixture(autouse=True)
    def direct_sink(self, settings):
        settings.TRACKER_SINK = "direct"

    def test_page_view_records_visitor_country(self):
        browser(REMOTE_ADDR="2a01:4f8::1").get("/")
        assert list(Visit.objects.values_list("country", flat=True)) == ["DE"]

    def test_forged_forwarded_header_from_direct_client_changes_nothing(self):
        browser(REMOTE_ADDR="81.2.69.142", HTTP_X_FORWARDED_FOR="8.8.8.8").get("/")
        browser(REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR="8.8.8.8").get("/")
        assert sorted(Visit.objects.values_list("country", flat=True)) == ["", "GB"]

    def test_trusted_proxy_forwarded_address_is_used(self, settings):
        settings.TRACKER_TRUSTED_PROXIES = 1
        browser(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="8.8.8.8, 193.0.6.139").get("/")
        browser(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="not an address").get("/")
        browser(REMOTE_ADDR="10.0.0.2").get("/")
        assert sorted(Visit.objects.values_list("country", flat=True)) == ["", "", "NL"]

    def test_visit_and_visitor_take_country_of_first_page_view(self):
        client = browser(REMOTE_ADDR="81.2.69.142")
        client.get("/")
        client.defaults["REMOTE_ADDR"] = "8.8.8.8"  # roaming: the same visit goes on
        client.get("/about/")
        rollups.visits_aggregate()
        assert list(VisitSummary.objects.values_list("country", flat=True)) == ["GB"]
        assert list(TrackedSession.objects.values_list("country", flat=True)) == ["GB"]
        rows = VisitHourly.objects.filter(dimension=VisitHourly.Dimension.COUNTRY)
        assert list(rows.values_list("value", "visits", "pageviews")) == [("GB", 1, 2)]


SENT_ADDRESSES = ["81.2.69.142", "2a01:4f8:10a:1::7", "193.0.6.139", "203.119.101.61"]


@pytest.mark.django_db(transaction=True)
class AddressNeverKeptTests:
    def test_sent_addresses_found_in_no_table_log_or_stream(self, settings, caplog, drain_visits):
        settings.TRACKER_TRUSTED_PROXIES = 1
        caplog.set_level(logging.DEBUG)
        for address in SENT_ADDRESSES:
            client = browser(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=f"8.8.4.4, {address}")
            client.get("/")
            client.get("/about/")
            client.get("/?utm_source=x")
        stream = ""
        if settings.REDIS_URL:
            flush_open_sinks()  # writes sent corked, a few at a time
            entries = redis_client(settings.REDIS_URL).xrange(settings.TRACKER_REDIS_STREAM)
            stream = repr(entries)
            # The page views, and the about page's cookie_tested events.
            assert sum("visit" in fields for _, fields in entries) == 3 * len(SENT_ADDRESSES)
        drain_visits()
        rollups.visits_aggregate()

        assert Visit.objects.count() == 3 * len(SENT_ADDRESSES)
        assert set(Visit.objects.values_list("country", flat=True)) == {"GB", "DE", "NL", "AU"}
        stored = [stream, caplog.text]
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names():
                cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
                stored.append(repr(cursor.fetchall()))
        # Session data is encoded: read it as the session store does.
        stored += [repr(session.get_decoded()) for session in Session.objects.all()]
        text = "\n".join(stored)
        for address in [*SENT_ADDRESSES, "8.8.4.4"]:
            assert address not in text
