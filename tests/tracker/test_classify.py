from __future__ import annotations

import pytest

from tests.tracker.user_agents import BROWSER_USER_AGENTS, CRAWLER_USER_AGENTS
from tracker.classify import (
    USER_AGENT_CACHE_SIZE,
    PathExclusion,
    _classify_cached,
    announces_bot,
    classifier_is_warm,
    classifier_warm_up,
    classify_user_agent,
    is_excluded_by_headers,
    is_html,
    is_htmx_partial,
    is_speculative,
    opted_out,
)


class UserAgentDataTests:
    def test_data_enough_crawlers_and_browsers(self):
        assert len(CRAWLER_USER_AGENTS) >= 50
        assert len(BROWSER_USER_AGENTS) >= 30
        assert len({ua for *_expected, ua in BROWSER_USER_AGENTS}) == len(BROWSER_USER_AGENTS)


class BotTests:
    @pytest.mark.parametrize("user_agent", CRAWLER_USER_AGENTS)
    def test_crawler_is_bot(self, user_agent):
        agent = classify_user_agent(user_agent)
        assert agent.is_bot
        assert agent.is_declared_crawler

    @pytest.mark.parametrize("user_agent", ["", "   "])
    def test_empty_user_agent_is_bot_not_declared(self, user_agent):
        agent = classify_user_agent(user_agent)
        assert agent.is_bot
        assert not agent.is_declared_crawler

    def test_huge_user_agent_classified_on_prefix(self):
        agent = classify_user_agent("Mozilla/5.0 " + "<script>" * 5000)
        assert agent.browser == ""

    def test_cache_bounded(self):
        assert _classify_cached.cache_info().maxsize == USER_AGENT_CACHE_SIZE

    @pytest.mark.parametrize(
        "user_agent",
        [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/131.0.6778.33 Safari/537.36",
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
            "PhantomJS/2.1.1 Safari/538.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Playwright/1.49.0",
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 Selenium",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Cypress/13.16.0 Chrome/128.0.6613.178 Electron/32.2.6 Safari/537.36",
            "Mozilla/5.0 (linux) AppleWebKit/537.36 (KHTML, like Gecko) jsdom/25.0.1",
        ],
    )
    def test_automation_browser_is_declared_crawler(self, user_agent):
        assert classify_user_agent(user_agent).is_declared_crawler

    @pytest.mark.parametrize(
        "meta",
        [
            {"HTTP_FROM": "googlebot(at)googlebot.com"},
            {"HTTP_FROM": "bingbot(at)microsoft.com"},
            {"HTTP_FROM": "support@search.yandex.ru"},
            {"HTTP_SEC_CH_UA": '"HeadlessChrome";v="131", "Chromium";v="131"'},
        ],
    )
    def test_announces_bot_by_headers(self, meta):
        assert announces_bot({"HTTP_USER_AGENT": BROWSER_USER_AGENTS[0][-1], **meta})

    @pytest.mark.parametrize(
        "meta",
        [
            {},
            {"HTTP_FROM": ""},
            {"HTTP_SEC_CH_UA": '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'},
        ],
    )
    def test_announces_bot_browser_headers_not(self, meta):
        assert not announces_bot(meta)


class WarmUpTests:
    def test_warm_up_leaves_cache_empty(self):
        _classify_cached.cache_clear()
        classifier_warm_up()
        assert classifier_is_warm()
        assert _classify_cached.cache_info().currsize == 0


class BrowserFamilyTests:
    @pytest.mark.parametrize(("browser", "os", "device", "user_agent"), BROWSER_USER_AGENTS)
    def test_browser_families_expected(self, browser, os, device, user_agent):
        agent = classify_user_agent(user_agent)
        assert not agent.is_bot
        assert (agent.browser, agent.os, agent.device) == (browser, os, device)

    def test_browser_families_cover_major_browsers_and_devices(self):
        browsers = {browser for browser, *_rest in BROWSER_USER_AGENTS}
        devices = {device for _browser, _os, device, _ua in BROWSER_USER_AGENTS}
        wanted = {"Chrome", "Chrome Mobile", "Firefox", "Safari", "Mobile Safari", "Edge"}
        assert wanted | {"Samsung Internet"} <= browsers
        assert devices == {"desktop", "mobile", "tablet"}


class HeaderTests:
    @pytest.mark.parametrize(
        ("meta", "expected"),
        [
            ({"HTTP_DNT": "1"}, True),
            ({"HTTP_SEC_GPC": "1"}, True),
            ({"HTTP_DNT": "0"}, False),
            ({}, False),
        ],
    )
    def test_opted_out_dnt_gpc(self, meta, expected):
        assert opted_out(meta) is expected

    @pytest.mark.parametrize(
        ("meta", "expected"),
        [
            ({"HTTP_SEC_PURPOSE": "prefetch"}, True),
            ({"HTTP_SEC_PURPOSE": "prefetch;prerender"}, True),
            ({"HTTP_PURPOSE": "prefetch"}, True),
            ({"HTTP_X_MOZ": "prefetch"}, True),
            ({"HTTP_X_PURPOSE": "preview"}, True),
            ({}, False),
        ],
    )
    def test_is_speculative_headers(self, meta, expected):
        assert is_speculative(meta) is expected

    @pytest.mark.parametrize(
        ("meta", "expected"),
        [
            ({"HTTP_HX_REQUEST": "true"}, True),
            ({"HTTP_HX_REQUEST": "true", "HTTP_HX_BOOSTED": "true"}, False),
            ({}, False),
        ],
    )
    def test_is_htmx_partial_boosted_is_navigation(self, meta, expected):
        assert is_htmx_partial(meta) is expected

    @pytest.mark.parametrize(
        ("meta", "respect_dnt", "expected"),
        [
            ({"HTTP_DNT": "1"}, True, True),
            ({"HTTP_DNT": "1"}, False, False),
            ({"HTTP_SEC_GPC": "1"}, True, True),
            ({"HTTP_DNT": "0"}, True, False),
            ({"HTTP_SEC_PURPOSE": "prefetch"}, False, True),
            ({"HTTP_PURPOSE": "prefetch"}, True, True),
            ({"HTTP_X_PURPOSE": "preview"}, True, True),
            ({"HTTP_X_MOZ": "prefetch"}, True, True),
            ({"HTTP_HX_REQUEST": "true"}, True, True),
            ({"HTTP_HX_REQUEST": "true", "HTTP_HX_BOOSTED": "true"}, True, False),
            ({"HTTP_ACCEPT": "text/html", "HTTP_USER_AGENT": "Mozilla/5.0"}, True, False),
            ({}, True, False),
        ],
    )
    def test_is_excluded_by_headers_each_reason(self, meta, respect_dnt, expected):
        assert is_excluded_by_headers(meta, respect_dnt=respect_dnt) is expected

    @pytest.mark.parametrize(
        ("content_type", "expected"),
        [
            ("text/html; charset=utf-8", True),
            ("TEXT/HTML", True),
            ("application/json", False),
            ("", False),
        ],
    )
    def test_is_html_content_types(self, content_type, expected):
        assert is_html(content_type) is expected


class PathExclusionTests:
    @pytest.fixture
    def exclusion(self):
        return PathExclusion(
            url_prefixes=["static/", "/media/"], patterns=[r"^/private/", r"\.json$"]
        )

    @pytest.mark.parametrize(
        "path",
        [
            "/static/site.css",
            "/media/upload.png",
            "/admin/",
            "/admin/tracker/visit/",
            "/dashboard/",
            "/dashboard/sessions/1/",
            "/healthz",
            "/favicon.ico",
            "/robots.txt",
            "/private/page/",
            "/feed.json",
        ],
    )
    def test_excludes_paths(self, exclusion, path):
        assert exclusion.excludes(path)

    @pytest.mark.parametrize("path", ["/", "/about/", "/staticky/", "/blog/admin-tips/"])
    def test_excludes_pages_kept(self, exclusion, path):
        assert not exclusion.excludes(path)

    def test_excludes_root_prefix_never_excludes_everything(self):
        exclusion = PathExclusion(url_prefixes=["/", "https://cdn.example.com/"], patterns=[])
        assert not exclusion.excludes("/about/")
