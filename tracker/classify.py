"""Pure decisions about a request: is it a bot, an opt-out, a prefetch, an htmx partial, an
excluded path, and which browser / OS / device sent it.

Nothing here touches the database or the session. User-agent work is cached per user-agent
string in a bounded LRU: user agents repeat heavily, and two uncached regex scans would cost
~15% of a request's time budget (docs/MEASURED figures).

Bots are recognised from maintained public data pinned in requirements.txt, so updating it is
a version bump: the crawler-user-agents list (monthly) and Matomo Device Detector's bot list,
plus a few generic words and the names of headless and automation browsers. The two lists
complement each other: with the words, either alone catches only 75-83% of the other's bots.
CrawlerDetect was dropped: on real browsers' user agents it cost ~400 µs a call (p99 1.5 ms),
more than all the rest together, and added 0.05 points on the crawler list, none on Matomo's.

Devices: common user agents (Windows, macOS, iPhone, iPad, Chrome's reduced Android one) are
settled by their shape; the rest get Matomo Device Detector's device type, from its brand and
model regexes searched through an index (tracker.device_models): ~6 ms a user agent with the
package's own search, ~0.2 ms with the index, the same answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter

import ua_parser
from crawleruseragents import CRAWLER_USER_AGENTS_DATA
from device_detector.parser import Bot

from tracker.device_models import (
    RegexListIndex,
    device_models_warm_up,
    indexed_fixed_type_parser,
    matomo_bot_list_compile,
    matomo_device_type,
)
from tracker.models import FAMILY_MAX_LENGTH, Device

USER_AGENT_CACHE_SIZE = 4096
# Longer user agents are not cached (an attacker could otherwise pin huge strings in memory)
# and are classified on a prefix: no real browser sends one this long.
USER_AGENT_MAX_LENGTH = 512

# Self-declared bots and HTTP libraries the lists may not name yet. "cubot" is a phone brand.
# These patterns and the device markers below are matched against the lowercased user agent:
# an IGNORECASE search of the same alternation is several times slower.
BOT_KEYWORDS = re.compile(
    r"(?<!cu)bot|crawl|spider|slurp|scrap|fetch|externalhit|archiver"
    r"|lighthouse|pingdom|uptime|monitor|preview|validator|checker|scanner|feed|rss"
    r"|curl/|wget|httpie|python|aiohttp|httpx|java/|go-http|okhttp|libwww|http[-_ ]?client"
    r"|node-fetch|axios|postman|insomnia|ruby|perl|php/"
    # Headless and automation browsers: HeadlessChrome is what Puppeteer and Playwright's
    # Chromium send unless told otherwise; the others name their driver.
    r"|headless|phantomjs|slimerjs|htmlunit|jsdom/|cypress/|playwright|puppeteer|selenium"
    r"|webdriver"
)

# Matomo's bot list, searched only where its ~850 regexes can match (as its device lists are):
# a user agent that passes the package's own pre-filter otherwise runs them all (~3 ms).
MatomoBot = indexed_fixed_type_parser(Bot)

# Patterns of the crawler-user-agents list that also match real browsers in Matomo's labelled
# fixtures: a device's build number, phone models (Sonic, Butterfly, Fever, Expanse), the Fluid
# and Sogou browsers. Their crawlers are caught by the other signals.
CRAWLER_PATTERNS_MATCHING_BROWSERS = frozenset(
    {r"AP3A\.240617\.008", "Sogou", "Sonic", "Butterfly", "Fever", "Fluid", "Expanse"}
)


def _crawler_list_index() -> RegexListIndex:
    patterns = [
        crawler["pattern"]
        for crawler in CRAWLER_USER_AGENTS_DATA
        if crawler["pattern"] not in CRAWLER_PATTERNS_MATCHING_BROWSERS
    ]
    # Written case-sensitively; read that way, one of the others matches one of ~35,000
    # browsers in Matomo's fixtures. Indexed by the words each needs, as Matomo's lists are: a
    # browser's user agent is tried against a few of the ~1,500 patterns, not all (~120 µs).
    return RegexListIndex(
        [re.compile(pattern) for pattern in patterns],
        pattern_of=attrgetter("pattern"),
        case_insensitive=False,
    )


_crawler_list = _crawler_list_index()

# Matomo's device types as our classes. Phones of every size and handheld media players (the
# iPod touch) are mobile; TVs and set-top boxes, consoles, car browsers, wearables (watches, VR
# headsets), smart speakers and displays, cameras and peripherals (printers, terminals) are other.
MATOMO_DEVICE_CLASSES = {
    "desktop": Device.DESKTOP,
    "smartphone": Device.MOBILE,
    "phablet": Device.MOBILE,
    "feature phone": Device.MOBILE,
    "portable media player": Device.MOBILE,
    "tablet": Device.TABLET,
    "tv": Device.OTHER,
    "console": Device.OTHER,
    "car browser": Device.OTHER,
    "wearable": Device.OTHER,
    "smart speaker": Device.OTHER,
    "smart display": Device.OTHER,
    "camera": Device.OTHER,
    "peripheral": Device.OTHER,
}
# Most page views come from a few shapes of user agent whose class needs no model database:
# Windows and macOS browsers, iPhones and iPads, and Chrome's reduced Android user agent (model
# "K"), which says "Mobile" on phones only. These markers send the rest to Matomo's detection.
NOT_PLAIN_DESKTOP = re.compile(
    r"touch|arm|tablet|phone|mobile|android|xbox|lumia|kindle|fbmd|tv|tesla|quest|vr "
)
REDUCED_ANDROID = re.compile(r"^mozilla/5\.0 \(linux; android 1\d; k\) ")
# TV browsers that borrow an iPad's or iPhone's user agent and append their own platform.
NOT_PLAIN_HANDHELD = re.compile(r"tv|tclwebkit")
# When Matomo's detection knows no device type, the user agent's platform decides.
DESKTOP_OS_FAMILIES = frozenset(
    {"Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS", "FreeBSD",
     "OpenBSD", "NetBSD", "Solaris", "Mint", "Arch Linux", "Gentoo", "openSUSE", "Red Hat"}
)  # fmt: skip
MOBILE_OS_FAMILIES = frozenset(
    {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Firefox OS", "Tizen",
     "HarmonyOS", "Symbian OS"}
)  # fmt: skip


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
    """Return True if the user agent names a crawler, a bot, an HTTP library or an automated
    browser. The cheap checks go first: most crawlers stop there."""
    lowered = user_agent.lower()
    return (
        BOT_KEYWORDS.search(lowered) is not None
        # A literal pre-filter skips its regexes for nearly every browser (~2 µs).
        or MatomoBot(user_agent, None).parse().is_bot()
        or any(regex.search(user_agent) for regex, _ in _crawler_list.candidates(lowered))
    )


# Crawlers give a contact address in "From" (Googlebot: "googlebot(at)googlebot.com"); browsers
# never send it. Chromium's headless shell (Puppeteer's and Playwright's default) also names
# itself in Sec-CH-UA; a full Chromium run headless (the browser tests' Debian one) does not.
CONTACT_ADDRESS = re.compile(r"@|\(at\)", re.IGNORECASE)


def announces_bot(meta: Mapping[str, str]) -> bool:
    """Return True if headers other than the user agent say the client is a bot."""
    contact = meta.get("HTTP_FROM")
    if contact and CONTACT_ADDRESS.search(contact):
        return True
    brands = meta.get("HTTP_SEC_CH_UA")
    return bool(brands) and "HeadlessChrome" in brands


def plain_device_class(lowered: str) -> str | None:
    """Return the class of a user agent of a common shape that settles it, else None."""
    if lowered.startswith("mozilla/5.0 ("):
        if "(iphone;" in lowered or "(ipad;" in lowered:
            if NOT_PLAIN_HANDHELD.search(lowered):
                return None
            return Device.MOBILE if "(iphone;" in lowered else Device.TABLET
        if lowered.startswith(("mozilla/5.0 (windows nt ", "mozilla/5.0 (macintosh; intel mac")):
            return None if NOT_PLAIN_DESKTOP.search(lowered) else Device.DESKTOP
        if REDUCED_ANDROID.match(lowered):
            return Device.MOBILE if " mobile" in lowered else Device.TABLET
    return None


def device_class(*, user_agent: str, os_family: str, device_family: str) -> str:
    """Return desktop, mobile, tablet or other: at a glance for common user agents, else from
    Matomo Device Detector's brand and model data, else from the platform."""
    lowered = user_agent.lower()
    plain = plain_device_class(lowered)
    if plain is not None:
        return plain
    matomo_type = matomo_device_type(user_agent)
    if matomo_type:
        return MATOMO_DEVICE_CLASSES.get(matomo_type, Device.OTHER)
    if os_family in MOBILE_OS_FAMILIES or device_family in {"iPhone", "iPod"}:
        return Device.MOBILE
    if os_family in DESKTOP_OS_FAMILIES or device_family == "Mac":
        return Device.DESKTOP
    return Device.OTHER


def _classify(user_agent: str) -> UserAgentClass:
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


_classify_cached = lru_cache(maxsize=USER_AGENT_CACHE_SIZE)(_classify)


def classify_user_agent(user_agent: str) -> UserAgentClass:
    """Return the bot verdict and browser / OS / device families of a user agent, cached."""
    return _classify_cached(user_agent[:USER_AGENT_MAX_LENGTH])


# One user agent of each kind: together they reach every parser's lazily built regexes.
WARM_UP_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)


_warm = False


def classifier_warm_up() -> None:
    """Build the parsers' lazily compiled regexes now, at worker start: otherwise a visitor's
    first page view in each worker pays for it (~90 ms measured). Leaves the cache empty."""
    global _warm
    if not _warm:
        for user_agent in WARM_UP_USER_AGENTS:
            _classify(user_agent)
        # Matomo's bot regexes load on the first pre-filter hit (~200 ms) and compile one by
        # one on first use: do both now, not in the page view of the first crawler to get there.
        matomo_bot_list_compile()
        device_models_warm_up()
        _warm = True


def classifier_is_warm() -> bool:
    return _warm


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

    # /share/ pages carry a shared link's token in their path: never stored.
    ALWAYS_EXCLUDED_PREFIXES = ("/admin/", "/dashboard/", "/share/", "/healthz")
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
