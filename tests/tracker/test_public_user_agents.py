"""Bot and device classification measured over whole public collections (run with -s to see the
rates). The collections come from the pinned packages, so a version bump re-measures them."""

from __future__ import annotations

from collections import Counter
from functools import cache
from importlib.metadata import version

import pytest

from tests.tracker.public_user_agents import (
    crawler_user_agents,
    fake_useragent_browsers,
    matomo_bot_user_agents,
    matomo_browser_user_agents,
)
from tracker.classify import UserAgentClass, _classify
from tracker.models import Device

CRAWLERS_CAUGHT_MIN = 0.98
BROWSERS_LOST_MAX = 0.003
# Per class. Matomo's fixtures are the test suite of the brand and model regexes the classifier
# reads, so they measure how faithfully it applies them (~451 of them are labelled from client
# hints headers that a user agent alone cannot tell); fake-useragent's traffic sample was
# labelled independently.
DEVICE_RIGHT_MIN = 0.95


@cache
def _classified(user_agents: tuple[str, ...]) -> list[UserAgentClass]:
    # Not through the LRU: the collections are larger than it and would only churn it.
    return [_classify(user_agent) for user_agent in user_agents]


def classified(user_agents: list[str]) -> list[UserAgentClass]:
    """Classify each user agent once per test run (several tests read the same collection)."""
    return _classified(tuple(user_agents))


def device_rates(labelled: list[tuple[str, str]]) -> dict[str, tuple[int, int]]:
    """Per labelled class: (classified right, kept as a browser)."""
    right, kept = Counter(), Counter()
    for (_user_agent, label), agent in zip(
        labelled, classified([ua for ua, _label in labelled]), strict=True
    ):
        if not agent.is_bot:
            kept[label] += 1
            right[label] += agent.device == label
    return {label: (right[label], kept[label]) for label in kept}


def report(name: str, part: int, whole: int, what: str) -> float:
    rate = part / whole
    print(f"\n{name}: {part:,} of {whole:,} {what} ({rate:.2%})")
    return rate


class CrawlerCoverageTests:
    def test_crawler_user_agents_list_caught(self):
        user_agents = crawler_user_agents()
        caught = sum(agent.is_declared_crawler for agent in classified(user_agents))
        name = f"crawler-user-agents {version('crawler-user-agents')}"
        assert len(user_agents) >= 2000
        assert report(name, caught, len(user_agents), "caught") >= CRAWLERS_CAUGHT_MIN

    def test_matomo_bots_caught(self):
        user_agents = matomo_bot_user_agents()
        caught = sum(agent.is_declared_crawler for agent in classified(user_agents))
        name = f"device-detector {version('device-detector')} bot fixtures"
        assert len(user_agents) >= 1000
        assert report(name, caught, len(user_agents), "caught") >= CRAWLERS_CAUGHT_MIN


class BrowserLossTests:
    @pytest.mark.parametrize(
        ("name", "load"),
        [
            (f"fake-useragent {version('fake-useragent')}", fake_useragent_browsers),
            (f"device-detector {version('device-detector')} browsers", matomo_browser_user_agents),
        ],
    )
    def test_real_browsers_kept(self, name, load):
        user_agents = [user_agent for user_agent, _label in load()]
        lost = sum(agent.is_bot for agent in classified(user_agents))
        assert len(user_agents) >= 800
        assert report(name, lost, len(user_agents), "lost as bots") <= BROWSERS_LOST_MAX


class DeviceAccuracyTests:
    def test_fake_useragent_devices_right(self):
        rates = device_rates(fake_useragent_browsers())
        assert set(rates) == {Device.DESKTOP, Device.MOBILE, Device.TABLET}
        for label, (right, kept) in rates.items():
            name = f"fake-useragent {version('fake-useragent')} {label}"
            assert report(name, right, kept, "right") >= DEVICE_RIGHT_MIN

    def test_matomo_devices_right(self):
        rates = device_rates(matomo_browser_user_agents())
        assert set(rates) == set(Device)
        for label, (right, kept) in rates.items():
            name = f"device-detector {version('device-detector')} {label}"
            assert kept >= 300
            assert report(name, right, kept, "right") >= DEVICE_RIGHT_MIN
