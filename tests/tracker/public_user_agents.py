"""Public user-agent collections that no one here wrote, read from the pinned packages that ship
them (requirements.txt), so a version bump updates the tests' data too.

- crawler-user-agents: every crawler's regex with the real user agents ("instances") it matches.
- fake-useragent: real browsers' user agents seen in traffic, labelled mobile / tablet / desktop.
- device-detector (Matomo's Device Detector, ported): its test fixtures, real user agents that
  Matomo labels by device type, and a collection of bots.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

import crawleruseragents
import yaml_rs

from tracker.classify import MATOMO_DEVICE_CLASSES
from tracker.models import Device

# Matomo's labels are read as our four classes by the product's own definition of each class
# (tracker.classify.MATOMO_DEVICE_CLASSES, which says why); user agents without a device type in
# the fixtures have no class and are left out.
FAKE_USERAGENT_CLASSES = {
    "desktop": Device.DESKTOP,
    "mobile": Device.MOBILE,
    "tablet": Device.TABLET,
}


def crawler_user_agents() -> list[str]:
    """Every instance of every crawler in the crawler-user-agents list."""
    return [
        instance
        for crawler in crawleruseragents.CRAWLER_USER_AGENTS_DATA
        for instance in crawler.get("instances", [])
    ]


@cache
def _matomo_fixtures() -> list[tuple[str, dict]]:
    """(fixture file stem, fixture) for every fixture of Matomo's upstream test suite."""
    folder = files("device_detector") / "tests" / "fixtures" / "upstream"
    return [
        (fixture_file.name.removesuffix(".yml"), fixture)
        for fixture_file in sorted(folder.iterdir(), key=lambda entry: entry.name)
        if fixture_file.name.endswith(".yml")
        for fixture in yaml_rs.loads(fixture_file.read_text(encoding="utf-8")) or []
    ]


def matomo_bot_user_agents() -> list[str]:
    return [fixture["user_agent"] for name, fixture in _matomo_fixtures() if name == "bots"]


def matomo_browser_user_agents() -> list[tuple[str, str]]:
    """(user agent, device class) of the fixtures whose client is a web browser: the page
    views a site gets. Apps, media players and libraries are not browsers."""
    labelled = []
    for name, fixture in _matomo_fixtures():
        client = fixture.get("client") or {}
        device_type = (fixture.get("device") or {}).get("type", "")
        is_browser = name != "bots" and client.get("type") == "browser"
        if is_browser and device_type in MATOMO_DEVICE_CLASSES:
            labelled.append((fixture["user_agent"], MATOMO_DEVICE_CLASSES[device_type]))
    return labelled


def fake_useragent_browsers() -> list[tuple[str, str]]:
    """(user agent, device class) of each distinct real browser user agent fake-useragent ships
    (its file repeats a user agent once per sighting)."""
    data_file = files("fake_useragent") / "data" / "browsers.jsonl"
    labelled = {}
    for line in data_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            browser = json.loads(line)
            labelled[browser["useragent"]] = FAKE_USERAGENT_CLASSES[browser["type"]]
    return list(labelled.items())
