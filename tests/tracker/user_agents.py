"""The user-agent data files the tracker's tests share."""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


def _lines(name: str) -> list[str]:
    text = (DATA_DIR / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


CRAWLER_USER_AGENTS = _lines("crawler_user_agents.txt")
# (browser, os, device, user agent)
BROWSER_USER_AGENTS = [tuple(line.split("\t", 3)) for line in _lines("browser_user_agents.tsv")]
