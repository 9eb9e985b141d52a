"""Matomo Device Detector's device type of a user agent, from the pinned `device-detector`
package's own regexes and rules, at a cost a page view can pay.

The package's parser tries the regexes of ~2,000 device brands one after another (~6 ms a user
agent, measured) and parses the client too, which the device type does not need. Here the same
regex lists are searched only where they can match: each regex is reduced, once, to a few
literal words that every match of it contains, an Aho-Corasick automaton finds the words present
in the user agent, and only the regexes behind them run, in the package's order, so the first
match is the package's first match. The package's own parser classes then apply Matomo's rules
(Android's "Mobile" token, TV and desktop fragments, ...) unchanged.
"""

from __future__ import annotations

import re._constants as sre
import re._parser as sre_parse
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any

import ahocorasick_rs
from device_detector import DeviceDetector
from device_detector.parser import OS, Bot, Device
from device_detector.parser.device.vendor_fragment import vendor_regex_list
from device_detector.settings import BOUNDED_REGEX

# Every regex of the package is wrapped in this, so its matches start at a token boundary.
BOUNDARY_PREFIX, BOUNDARY_SUFFIX = BOUNDED_REGEX.split("{}")
TOKEN_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
# A word anchored at the boundary starts with this in the sets built below; END stands for the
# end of the text (``$``), appended to the text searched.
ANCHOR = "\x00"
END = "\x01"
# Cartesian products of character classes are kept up to this many words, alternations up to
# the other; past them a regex falls back to a shorter word or to being tried on every agent.
PRODUCT_MAX_WORDS = 64
ALTERNATION_MAX_WORDS = 4096
SMALL_CLASS_MAX_CHARACTERS = 10
REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)
# Words found in nearly every user agent are a last resort: they would select their regex for
# every page view.
COMMON_TEXT = (
    "Mozilla/5.0 (Linux; U; Android 4.4.2; en-us; Build/KOT49H) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/120.0.0.0 Mobile Safari/537.36 "
    "(Windows NT 10.0; Win64; x64) (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 "
    + " ".join(f"Android {version}.0;" for version in range(1, 20))
).lower()
# The regex module reads these (POSIX classes, nested sets) unlike re's parser used here.
SYNTAX_READ_OTHERWISE = ("[[",)


def _at_boundary(text: str, start: int) -> bool:
    """Return True if a match of BOUNDARY_PREFIX can end at ``start`` in the lowered text."""
    if start == 0 or text[start - 1] not in TOKEN_CHARACTERS:
        return True
    if text[start - 1] == "_" and start >= 2 and text[start - 2] not in TOKEN_CHARACTERS - {"_"}:
        return True
    return text.endswith(("sprd-", "mz-"), 0, start)


def _folds_as_lowered(character: str) -> bool:
    """Return True if the regex module's case-insensitive match of the character is what
    lowering both sides finds: ASCII, or a character without case (Hangul, CJK)."""
    return character.isascii() or character.lower() == character.upper() == character


def _product(left: set[str] | None, right: set[str] | None) -> set[str] | None:
    if left is None or right is None or len(left) * len(right) > PRODUCT_MAX_WORDS:
        return None
    return {head + tail for head in left for tail in right}


def _exact(items: Iterable) -> set[str] | None:
    """Every string the parsed sequence can match, lowered, if they are few."""
    strings: set[str] | None = {""}
    for op, av in items:
        strings = _product(strings, _exact_item(op, av))
        if strings is None:
            return None
    return strings


def _exact_item(op, av) -> set[str] | None:
    if op is sre.LITERAL:
        character = chr(av)
        return {character.lower()} if _folds_as_lowered(character) else None
    if op is sre.IN:
        characters = set()
        for item_op, item in av:
            if item_op is sre.LITERAL:
                characters.add(chr(item))
            elif item_op is sre.RANGE and item[1] - item[0] < SMALL_CLASS_MAX_CHARACTERS:
                characters.update(map(chr, range(item[0], item[1] + 1)))
            elif item_op is sre.CATEGORY and item is sre.CATEGORY_DIGIT:
                characters.update("0123456789")
            else:
                return None
        if len(characters) > SMALL_CLASS_MAX_CHARACTERS or not all(
            map(_folds_as_lowered, characters)
        ):
            return None
        return {character.lower() for character in characters}
    if op in ZERO_WIDTH:
        return {""}
    if op is sre.SUBPATTERN:
        return _exact(av[-1])
    if op is sre.ATOMIC_GROUP:
        return _exact(av)
    if op in REPEATS:
        low, high, body = av
        strings = _exact(body) if high <= 1 else None
        if strings is None:
            return None
        return strings if low == 1 else strings | {""}
    if op is sre.BRANCH:
        union: set[str] = set()
        for branch in av[1]:
            strings = _exact(branch)
            if strings is None:
                return None
            union |= strings
        return union if len(union) <= PRODUCT_MAX_WORDS else None
    return None


def _is_common(word: str) -> bool:
    anchored = word.startswith(ANCHOR)
    word = word.removeprefix(ANCHOR)
    start = COMMON_TEXT.find(word)
    while start != -1:
        if not anchored or _at_boundary(COMMON_TEXT, start):
            return True
        start = COMMON_TEXT.find(word, start + 1)
    return False


def _rank(words: set[str]) -> tuple[bool, int, int]:
    """Rarer first: no common word, then the longest shortest word, then fewer words."""
    shortest = min(len(word.removeprefix(ANCHOR)) for word in words)
    return (not any(_is_common(word) for word in words), shortest, -len(words))


def _required(items: Sequence, *, anchored: bool) -> set[str] | None:
    """Words one of which every match of the parsed sequence contains, or None."""
    start = {ANCHOR} if anchored else {""}
    best: set[str] | None = None

    def consider(words: set[str] | None) -> None:
        nonlocal best
        if not words or words & {"", ANCHOR}:
            return
        if best is None or _rank(words) > _rank(best):
            best = words

    run = start
    for op, av in items:
        strings = _exact_item(op, av)
        if strings is not None:
            joined = _product(run, strings)
            if joined is None:
                consider(run)
                run = strings
            else:
                run = joined
            continue
        at_start = run == {ANCHOR}
        if op in REPEATS and av[0] >= 1 and (body := _exact(av[2])) is not None:
            # One repetition ends right before whatever follows: the run goes on from it.
            joined = _product(run, body)
            consider(joined if joined is not None else run)
            consider(body)
            run = body
            continue
        consider(run)
        run = {""}
        consider(_required_item(op, av, anchored=at_start))
    consider(run)
    return best


def _required_item(op, av, *, anchored: bool) -> set[str] | None:
    if op is sre.SUBPATTERN:
        return _required(av[-1], anchored=anchored)
    if op is sre.ATOMIC_GROUP:
        return _required(av, anchored=anchored)
    if op in REPEATS:
        return _required(av[2], anchored=anchored) if av[0] >= 1 else None
    if op is sre.BRANCH:
        union: set[str] = set()
        for branch in av[1]:
            words = _required(branch, anchored=anchored)
            if words is None:
                return None
            union |= words
        return union if len(union) <= ALTERNATION_MAX_WORDS else None
    return None


def _language(items: Iterable) -> set[str] | None:
    """Every string the parsed sequence matches, lowered, with END for the end of the text, if
    that decides a match: no lookaround, and few strings."""
    strings: set[str] | None = {""}
    for op, av in items:
        if op is sre.AT:
            item = {END} if av is sre.AT_END else None
        elif op in ZERO_WIDTH:
            item = None
        elif op is sre.SUBPATTERN:
            item = _language(av[-1])
        elif op is sre.BRANCH:
            item = set()
            for branch in av[1]:
                branch_strings = _language(branch)
                if branch_strings is None:
                    return None
                item |= branch_strings
        elif op in REPEATS:
            low, high, body = av
            item = _language(body) if high <= 1 else None
            if item is not None and low == 0:
                item = item | {""}
        else:
            item = _exact_item(op, av)
        strings = _product(strings, item)
        if strings is None:
            return None
    return {string for string in strings if END not in string[:-1]}


def regex_words(pattern: str) -> tuple[set[str] | None, bool]:
    """Lowered words one of which every match of ``pattern`` (case-insensitive) contains, a
    word starting with ANCHOR only at a token boundary (None if there are none); and whether
    finding one of them there is a match (the pattern matches exactly these words)."""
    anchored = pattern.startswith(BOUNDARY_PREFIX) and pattern.endswith(BOUNDARY_SUFFIX)
    if anchored:
        pattern = pattern[len(BOUNDARY_PREFIX) : len(pattern) - len(BOUNDARY_SUFFIX)]
    if any(syntax in pattern for syntax in SYNTAX_READ_OTHERWISE):
        return None, False
    try:
        parsed = sre_parse.parse(pattern)
    except (sre.error, OverflowError, RecursionError):
        return None, False  # syntax of the regex module that re does not read
    language = _language(parsed) if anchored else None
    if language and "" not in language:
        return {ANCHOR + string for string in language}, True
    return _required(parsed, anchored=anchored), False


def _pattern(entry: dict[str, Any]) -> str:
    # The package compiles its regexes lazily; read the pattern without compiling it.
    return object.__getattribute__(entry["regex"], "pattern")


class RegexListIndex:
    """An ordered list of regexes (by default one of the package's), searched only where they
    can match."""

    def __init__(
        self,
        entries: Sequence[Any],
        *,
        pattern_of: Callable[[Any], str] = _pattern,
        case_insensitive: bool = True,
    ) -> None:
        """``case_insensitive``: the regexes are (as the package's are), so finding a word of
        one that matches exactly its words decides the match."""
        self.entries = entries
        self.everywhere: list[int] = []
        self.decided_by_words: set[int] = set()
        positions: dict[str, tuple[list[int], list[int]]] = {}
        for position, entry in enumerate(entries):
            words, decisive = regex_words(pattern_of(entry))
            if words is None:
                self.everywhere.append(position)
                continue
            if decisive and case_insensitive:
                self.decided_by_words.add(position)
            for word in words:
                anywhere, at_boundary = positions.setdefault(
                    word.removeprefix(ANCHOR), ([], [])
                )
                (at_boundary if word.startswith(ANCHOR) else anywhere).append(position)
        self.words = list(positions)
        self.positions = [
            (tuple(anywhere), tuple(at_boundary))
            for anywhere, at_boundary in map(positions.__getitem__, self.words)
        ]
        # The contiguous automaton: a DFA per model list would take ~40 MB more in all.
        self.automaton = (
            ahocorasick_rs.AhoCorasick(
                self.words, implementation=ahocorasick_rs.Implementation.ContiguousNFA
            )
            if self.words
            else None
        )

    def candidates(self, lowered_user_agent: str) -> list[tuple[Any, bool]]:
        """The entries whose regex may match, in the list's order, each with True if it does
        match (then its regex need not run)."""
        found = set(self.everywhere)
        if self.automaton is not None:
            text = lowered_user_agent + END
            for word_index, start, _end in self.automaton.find_matches_as_indexes(
                text, overlapping=True
            ):
                anywhere, at_boundary = self.positions[word_index]
                found.update(anywhere)
                if at_boundary and _at_boundary(text, start):
                    found.update(at_boundary)
        return [
            (self.entries[position], position in self.decided_by_words)
            for position in sorted(found)
        ]

    def compile_all(self, *, decided_too: bool = True) -> None:
        for position, entry in enumerate(self.entries):
            if decided_too or position not in self.decided_by_words:
                entry["regex"].search("")
            for version in entry.get("versions", ()):
                version["regex"].search("")


# Built on first use (~2 s in all), which the warm-up moves to worker start.
@cache
def _index(parser: type) -> RegexListIndex:
    """The regex list of one of the package's parser classes, indexed."""
    return RegexListIndex(parser("", None).regex_list)


@cache
def _model_indexes() -> dict[str, RegexListIndex]:
    """Per brand of mobiles.yml: its models, indexed."""
    return {
        entry["brand"]: RegexListIndex(entry["models"])
        for entry in _index(Device).entries
        if entry.get("models")
    }


class IndexedParser:
    """Mixin for one of the package's parser classes: its regex list, only the regexes that
    may match."""

    __slots__ = ()
    package_parser: type

    @property
    def regex_list(self) -> list[dict[str, Any]]:
        candidates = _index(self.package_parser).candidates(self.user_agent_lower)
        return [entry for entry, _matches in candidates]


class IndexedOS(IndexedParser, OS):
    __slots__ = ()
    package_parser = OS

    def platform(self) -> str:
        return ""  # the CPU architecture: not read for the device type, and 7 regex scans


class IndexedDevice(IndexedParser, Device):
    __slots__ = ("_television",)
    package_parser = Device

    def is_television(self, os_name: str) -> bool:
        # dtype() asks twice a parse (before and after the model) for the same answer: five
        # regex scans of the user agent, a fifth of the whole detection's time.
        try:
            return self._television
        except AttributeError:
            self._television = super().is_television(os_name)
            return self._television

    def extract_model(self) -> None:
        """Set the device type of the first model that matches, as the package does; most
        models' regexes are decided by their words alone, and a model's name is not read."""
        if self.ua_data.get("models"):
            brand_type = self.ua_data.get("device")
            candidates = _model_indexes()[self.ua_data["brand"]].candidates(self.user_agent_lower)
            if any(model.get("device", brand_type) != brand_type for model, _ in candidates):
                for model, matches in candidates:
                    if matches or model["regex"].search(self.user_agent):
                        self.ua_data["device"] = model.get("device", brand_type)
                        break
            self.ua_data["models"] = []
        super().extract_model()


def indexed_fixed_type_parser(parser: type) -> type:
    """One of the package's parsers whose device type is fixed (bots, TVs, consoles, cars,
    cameras, media players, notebooks), indexed: a matched brand's models need not be tried."""

    def extract_model(self) -> None:
        self.ua_data.pop("models", None)
        parser.extract_model(self)

    return type(
        parser.__name__,
        (IndexedParser, parser),
        {"__slots__": (), "package_parser": parser, "extract_model": extract_model},
    )


# The package finds a parser's pre-filter words by the parser's class name.
IndexedOS.__name__ = OS.__name__
IndexedDevice.__name__ = Device.__name__


class IndexedDeviceDetector(DeviceDetector):
    """Matomo's device detection with indexed parsers and no client parse (only the device
    type is read)."""

    __slots__ = ()
    DEVICE_PARSERS = tuple(
        IndexedDevice if parser is Device else indexed_fixed_type_parser(parser)
        for parser in DeviceDetector.DEVICE_PARSERS
    )

    def parse_os(self) -> None:
        if not self.os:
            parsed = IndexedOS(self.user_agent, self.client_hints).parse()
            if parsed:
                self.os = parsed
                self.all_details["os"] = parsed.ua_data


def matomo_device_type(user_agent: str) -> str:
    """Return Matomo's device type ("smartphone", "tablet", "tv", ...; "" when unknown)."""
    detector = IndexedDeviceDetector(user_agent, skip_bot_detection=True, check_cache=False)
    detector.parse_os()
    detector.parse_device()
    if detector.os_name() == "Coolita OS":  # as DeviceDetector.parse does
        return "tv"
    return str(detector.device_type())


def matomo_bot_list_compile() -> None:
    """Load and compile Matomo's bot regexes (~200 ms)."""
    _index(Bot).compile_all()


def device_models_warm_up() -> None:
    """Index the lists and compile the regexes that may run now (~3 s and ~70 MB a process,
    measured), rather than in visitors' page views: the largest brand regex alone takes ~5 ms
    to compile, a small one ~0.4 ms."""
    for parser in (IndexedOS, *IndexedDeviceDetector.DEVICE_PARSERS):
        _index(parser.package_parser).compile_all()
    for models in _model_indexes().values():
        models.compile_all(decided_too=False)
    for vendor in vendor_regex_list():  # tried for a brand when no brand regex matched
        for regex in vendor["regexes"]:
            regex.search("")
