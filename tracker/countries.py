"""The visitor's country, looked up from its address on the request path and then forgotten.

The address is read, looked up and dropped inside ``request_country``: nothing here stores, logs,
caches or returns it. The data is iptocc's (pinned in requirements.txt; updating it is a version
bump): the five Regional Internet Registries' delegation files, built into its wheel, no file or
network access at run time. They give the country a block is registered to, which agrees with
commercial geolocation for about 95% of IPv4 addresses. Names and flags come from
django-countries, ISO 3166-1's list with the short names people use ("United Kingdom").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import cache

from django_countries import countries
from iptocc import country_code


@cache
def _iso_codes() -> frozenset[str]:
    # Registries also use codes such as EU and AP for blocks of no one country.
    return frozenset(code for code, _name in countries)


def client_address(meta: Mapping[str, str], *, trusted_proxies: int) -> str:
    """Return the address of the visitor behind ``trusted_proxies`` proxies, or "".

    Each proxy appends the address it received from to X-Forwarded-For, so with n of them the
    visitor's is the n-th entry from the right; anything left of it came from the client and
    can be forged. Without proxies the header is ignored.
    """
    if not trusted_proxies:
        return meta.get("REMOTE_ADDR", "")
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "").split(",")
    if len(forwarded) < trusted_proxies:
        return ""
    return forwarded[-trusted_proxies].strip()


def country_of(address: str) -> str:
    """Return the ISO 3166-1 alpha-2 code of the country an address is registered to, or "" for
    a private, reserved, unknown or malformed one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ""
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if not ip.is_global:
        return ""
    code = country_code(str(ip))
    return code if code in _iso_codes() else ""


def request_country(meta: Mapping[str, str], *, trusted_proxies: int) -> str:
    """Return the country of the request's visitor ("" when unknown)."""
    return country_of(client_address(meta, trusted_proxies=trusted_proxies))


def country_label(code: str) -> str:
    """Return a country's flag and name for display, e.g. "🇬🇧 United Kingdom"."""
    name = countries.name(code)
    if not name:
        return code
    # A flag emoji is the code spelled in regional indicator letters.
    flag = "".join(chr(0x1F1E6 + ord(letter) - ord("A")) for letter in code)
    return f"{flag} {name}"
