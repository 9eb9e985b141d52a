"""Pure decisions about a request: is it a bot, an opt-out, a prefetch, an htmx partial, an
excluded path, and which browser / OS / device sent it.

Nothing here touches the database or the session. User-agent work is cached per user-agent
string in a bounded LRU: user agents repeat heavily, and two uncached regex scans would cost
~15% of a request's time budget (docs/MEASURED figures).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import ua_parser
from crawlerdetect import CrawlerDetect

from tracker.models import FAMILY_MAX_LENGTH, Device

USER_AGENT_CACHE_SIZE = 4096
# Longer user agents are not cached (an attacker could otherwise pin huge strings in memory)
# and are classified on a prefix: no real browser sends one this long.
USER_AGENT_MAX_LENGTH = 512

# crawlerdetect alone recognised only ~86% of real crawler user agents: this second signal
# catches the self-declared rest. "cubot" is a phone brand, not a bot.
BOT_KEYWORDS = re.compile(
    r"(?<!cu)bot|crawl|spider|slurp|scrap|fetch|externalhit|archiver|headless|phantomjs"
    r"|lighthouse|pingdom|uptime|monitor|preview|validator|checker|scanner|feed|rss"
    r"|curl/|wget|httpie|python|aiohttp|httpx|java/|go-http|okhttp|libwww|http[-_ ]?client"
    r"|node-fetch|axios|postman|insomnia|ruby|perl|php/",
    re.IGNORECASE,
)
_crawler_detect = CrawlerDetect()

DESKTOP_OS_FAMILIES = frozenset(
    {"Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS", "FreeBSD",
     "OpenBSD", "NetBSD", "Solaris", "Mint", "Arch Linux", "Gentoo", "openSUSE", "Red Hat"}
)  # fmt: skip
MOBILE_OS_FAMILIES = frozenset(
    {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "Tizen",
     "HarmonyOS", "Symbian OS"}
)  # fmt: skip
TABLET_MARKERS = ("ipad", "tablet", "kindle", "silk/", "playbook")


@dataclass(frozen=True, slots=True)
class UserAgentClass:
    """What a user agent says about its sender; the raw string itself is never stored."""

    is_bot: bool
    # A crawler that named itself (as opposed to an empty user agent): it gets no session.
    is_declared_crawler: bool
    browser: str = ""
    os: str = ""
    device: str = Device.OTHER


def is_declared_crawler(user_agent: str) -> bool:
    """Return True if the user agent names a crawler, a bot or an HTTP library."""
    return bool(BOT_KEYWORDS.search(user_agent)) or _crawler_detect.is_crawler(user_agent)


def device_class(*, user_agent: str, os_family: str, device_family: str) -> str:
    """Return desktop, mobile or tablet; Android without "Mobile" is a tablet by convention."""
    lowered = user_agent.lower()
    if device_family == "iPad" or (
        any(marker in lowered for marker in TABLET_MARKERS) and "tablet pc" not in lowered
    ):
        return Device.TABLET
    if os_family == "Android":
        return Device.MOBILE if "mobile" in lowered else Device.TABLET
    if "mobi" in lowered or os_family in MOBILE_OS_FAMILIES or device_family in {"iPhone", "iPod"}:
        return Device.MOBILE
    if os_family in DESKTOP_OS_FAMILIES or device_family == "Mac":
        return Device.DESKTOP
    return Device.OTHER


@lru_cache(maxsize=USER_AGENT_CACHE_SIZE)
def _classify_cached(user_agent: str) -> UserAgentClass:
    if not user_agent.strip():
        return UserAgentClass(is_bot=True, is_declared_crawler=False)
    if is_declared_crawler(user_agent):
        return UserAgentClass(is_bot=True, is_declared_crawler=True)
    parsed = ua_parser.parse(user_agent).with_defaults()
    browser = parsed.user_agent.family
    os_family = parsed.os.family
    return UserAgentClass(
        is_bot=False,
        is_declared_crawler=False,
        browser="" if browser == "Other" else browser[:FAMILY_MAX_LENGTH],
        os="" if os_family == "Other" else os_family[:FAMILY_MAX_LENGTH],
        device=device_class(
            user_agent=user_agent, os_family=os_family, device_family=parsed.device.family
        ),
    )


def classify_user_agent(user_agent: str) -> UserAgentClass:
    """Return the bot verdict and browser / OS / device families of a user agent, cached."""
    return _classify_cached(user_agent[:USER_AGENT_MAX_LENGTH])


OPT_OUT_HEADERS = ("HTTP_DNT", "HTTP_SEC_GPC")
HTMX_REQUEST_HEADER = "HTTP_HX_REQUEST"


def opted_out(meta: Mapping[str, str]) -> bool:
    """Return True if the browser asks not to be tracked (``DNT: 1`` or ``Sec-GPC: 1``)."""
    return any(meta.get(header, "").strip() == "1" for header in OPT_OUT_HEADERS)


SPECULATION_HEADERS = ("HTTP_SEC_PURPOSE", "HTTP_PURPOSE", "HTTP_X_PURPOSE", "HTTP_X_MOZ")
SPECULATION_PURPOSES = re.compile("prefetch|prerender|preview", re.IGNORECASE)


def is_speculative(meta: Mapping[str, str]) -> bool:
    """Return True for a prefetch or prerender: the user may never see that page."""
    for header in SPECULATION_HEADERS:
        value = meta.get(header)
        if value and SPECULATION_PURPOSES.search(value):
            return True
    return False


def is_htmx_partial(meta: Mapping[str, str]) -> bool:
    """Return True for an htmx request that swaps part of a page rather than navigating."""
    return meta.get(HTMX_REQUEST_HEADER) == "true" and meta.get("HTTP_HX_BOOSTED") != "true"


# The headers that can keep a page view from being recorded; most requests send none of them.
EXCLUDING_HEADERS = frozenset({*OPT_OUT_HEADERS, HTMX_REQUEST_HEADER, *SPECULATION_HEADERS})


def is_excluded_by_headers(meta: Mapping[str, str], *, respect_dnt: bool) -> bool:
    """Return True for an opt-out (when respected), a prefetch or an htmx partial. A request
    with none of their headers, most page views, is settled by one set operation."""
    if meta.keys().isdisjoint(EXCLUDING_HEADERS):
        return False
    return (respect_dnt and opted_out(meta)) or is_speculative(meta) or is_htmx_partial(meta)


def is_html(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in {"text/html", "application/xhtml+xml"}


class PathExclusion:
    """Decide which paths are never pages: built once from settings, then a pure check."""

    ALWAYS_EXCLUDED_PREFIXES = ("/admin/", "/dashboard/", "/healthz")
    ALWAYS_EXCLUDED_NAMES = ("favicon.ico", "robots.txt")

    def __init__(self, *, url_prefixes: Iterable[str], patterns: Iterable[str]) -> None:
        prefixes = {self._absolute(prefix) for prefix in url_prefixes if prefix}
        # A prefix of "/" (or one on another host) would exclude everything or nothing.
        prefixes -= {"", "/"}
        self.prefixes = tuple(sorted(prefixes)) + self.ALWAYS_EXCLUDED_PREFIXES
        combined = "|".join(f"(?:{pattern})" for pattern in patterns)
        self.pattern = re.compile(combined) if combined else None

    @staticmethod
    def _absolute(prefix: str) -> str:
        """STATIC_URL may be relative ("static/") or a full URL on another host."""
        if "://" in prefix:
            return ""
        return "/" + prefix.lstrip("/")

    def excludes(self, path: str) -> bool:
        """Return True if the path is a file, an internal page or matches an excluded regex."""
        if path.startswith(self.prefixes):
            return True
        if path.rsplit("/", 1)[-1] in self.ALWAYS_EXCLUDED_NAMES:
            return True
        return self.pattern is not None and self.pattern.search(path) is not None
