"""The indexed search of Matomo's regex lists finds what the package's own search finds: the
reference here is the package's parser classes, trying every regex in order."""

from __future__ import annotations

import random

import pytest
import regex
from device_detector import DeviceDetector
from device_detector.parser import Bot
from device_detector.settings import BOUNDED_REGEX

from tests.tracker.public_user_agents import (
    _matomo_fixtures,
    crawler_user_agents,
    fake_useragent_browsers,
)
from tracker.classify import MatomoBot, _crawler_list
from tracker.device_models import ANCHOR, matomo_device_type, regex_words

# The package's sequential device search costs ~10 ms a user agent: a sample keeps this short.
DEVICE_SAMPLE = 600


def package_device_type(user_agent: str) -> str:
    """Matomo's device type as the package's own classes find it (no client parse, as ours)."""
    detector = DeviceDetector(user_agent, skip_bot_detection=True, check_cache=False)
    detector.parse_os()
    detector.parse_device()
    return "tv" if detector.os_name() == "Coolita OS" else str(detector.device_type())


def fixture_user_agents(*, bots: bool) -> list[str]:
    return [
        fixture["user_agent"]
        for name, fixture in _matomo_fixtures()
        if (name == "bots") is bots and fixture.get("user_agent")
    ]


class RegexWordsTests:
    @pytest.mark.parametrize(
        ("pattern", "words", "decisive"),
        [
            # A finite language at a token boundary: finding a word there is a match.
            ("SM-T8[12]5|GT-P", {"sm-t815", "sm-t825", "gt-p"}, True),
            ("Redmi Note 9(?:[);/ ]|$)", {f"redmi note 9{end}" for end in ");/ \x01"}, True),
            # Words common to most user agents ("android 8") are passed over for rarer ones.
            (r"Android 8(?:[\d.]*);(?: [\w-]+;)? (?:BEAM|ZOOM)", {" beam", " zoom"}, False),
            (r"MiTV-\w", {"mitv-"}, False),
        ],
    )
    def test_regex_words_bounded_pattern(self, pattern, words, decisive):
        found, found_decisive = regex_words(BOUNDED_REGEX.format(pattern))
        assert {word.removeprefix(ANCHOR) for word in found} == words
        assert found_decisive is decisive

    def test_regex_words_every_match_contains_one(self):
        patterns = ["SM-T8[12]5|GT-P", r"(?:Lenovo )?TB-X(\d+)[FL]", r"Android 8(?:[\d.]*); BEAM"]
        texts = ["Lenovo TB-X606F", "tb-x8l", "SM-T825)", "(GT-P1000", "Android 8.1.0; BEAM"]
        for pattern in patterns:
            words, _decisive = regex_words(pattern)
            compiled = regex.compile(pattern, regex.IGNORECASE)
            for text in texts:
                if compiled.search(text):
                    assert any(word.removeprefix(ANCHOR) in text.lower() for word in words)

    def test_regex_words_none_without_literal(self):
        assert regex_words(r"(?:[a-z]+)?") == (None, False)


class IndexedSearchTests:
    def test_device_type_same_as_package_search(self):
        user_agents = fixture_user_agents(bots=False)
        sample = random.Random(21).sample(user_agents, DEVICE_SAMPLE)
        sample += [user_agent for user_agent, _label in fake_useragent_browsers()[:100]]
        differing = [
            user_agent
            for user_agent in sample
            if matomo_device_type(user_agent) != package_device_type(user_agent)
        ]
        assert differing == []

    def test_bot_verdict_same_as_package_search(self):
        bots = fixture_user_agents(bots=True)
        browsers = random.Random(21).sample(fixture_user_agents(bots=False), 2000)
        for user_agent in bots + browsers:
            expected = Bot(user_agent, None).parse().is_bot()
            assert MatomoBot(user_agent, None).parse().is_bot() is expected, user_agent

    def test_crawler_list_verdict_same_as_every_pattern(self):
        browsers = random.Random(21).sample(fixture_user_agents(bots=False), 2000)
        for user_agent in crawler_user_agents() + browsers:
            expected = any(compiled.search(user_agent) for compiled in _crawler_list.entries)
            candidates = _crawler_list.candidates(user_agent.lower())
            found = any(compiled.search(user_agent) for compiled, _ in candidates)
            assert found is expected, user_agent
