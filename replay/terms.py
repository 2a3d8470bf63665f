"""The query terms that `replay`, `search` and `html` share, one grammar each:
a point in time, a duration, a destination, a path glob.

- time: RFC 3339 / ISO 8601, '2026-11-14T10:00:00.5Z', '2026-11-14 10:00+01:00',
  or a date '2026-11-14' (midnight); without a zone, UTC;
- duration: a number and a unit, '90', '1.5s', '500ms', '2m', '1h', '7d', '2w'
  (seconds without one); `replay --since 2m` counts from the start of the
  recording, `search --since 2m` back from now;
- destination (--dest): ADDR, ADDR:PORT, [V6ADDR]:PORT, V6ADDR, :PORT, a CIDR
  network (10.0.0.0/8, [2001:db8::/32]:443), or a unix socket path or
  @abstract name (a glob). Session files hold addresses, not host names. An
  IPv4 address also matches its v4-mapped IPv6 form, and an IPv6 zone (%N)
  is ignored;
- path glob: fnmatch's, case-sensitive, where * also matches '/'.
"""

from __future__ import annotations

import calendar
import fnmatch
import functools
import ipaddress
import re
from dataclasses import dataclass

from sessrec import linux
from sessrec.errors import UsageError

# --- time and duration --------------------------------------------------------------

_INSTANT = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)"
    r"(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9})\d*)?)?)?"
    r"\s*([Zz]|[+-]\d\d:?\d\d)?$"
)
_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w)?$", re.IGNORECASE)
_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
            "d": 86_400_000_000_000, "w": 604_800_000_000_000}
_YEAR_MAX = 9999


def parse_instant(text: str) -> int | None:
    """ns since the epoch of a time (see the module's grammar); None if the
    text is not one or is out of range."""
    m = _INSTANT.match(text.strip())
    if not m:
        return None
    year, mon, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    hh, mm, ss = (int(g or 0) for g in m.group(4, 5, 6))
    if not (1 <= mon <= 12 and 1 <= day <= 31 and hh < 24 and mm < 60 and ss < 61
            and 1 <= year <= _YEAR_MAX):
        return None
    try:
        secs = calendar.timegm((year, mon, day, hh, mm, ss, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    zone = m.group(8)
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:]) * 60
        secs -= offset if zone[0] == "+" else -offset
    if secs < 0:
        return None  # before 1970: no session file holds such times
    return secs * 1_000_000_000 + int((m.group(7) or "").ljust(9, "0"))


def parse_duration(text: str) -> int | None:
    """ns of a duration (see the module's grammar); None if it is not one."""
    m = _DURATION.match(text.strip())
    if not m:
        return None
    return int(float(m.group(1)) * _UNIT_NS[(m.group(2) or "s").lower()])


_TIME_HELP = ("a duration (90, 1.5s, 500ms, 2m, 1h, 7d) or a time "
              "(2026-11-14, 2026-11-14T10:00:00Z)")


def parse_when(spec: str, wall_ns: int, option: str = "--since") -> int:
    """`replay --since/--until`: ns since the recording's clock (event ts). A
    duration counts from the start of the recording."""
    since_start = parse_duration(spec)
    if since_start is not None:
        return since_start
    absolute = parse_instant(spec)
    if absolute is None:
        raise UsageError(f"{option}: cannot read time {spec!r}: give {_TIME_HELP}")
    return absolute - wall_ns


def parse_time(spec: str, now_ns: int, option: str = "--since") -> int:
    """`search --since/--until`: ns since the epoch. A duration is that long
    ago."""
    ago = parse_duration(spec)
    if ago is not None:
        return now_ns - ago
    absolute = parse_instant(spec)
    if absolute is None:
        raise UsageError(f"{option}: cannot read time {spec!r}: give {_TIME_HELP}")
    return absolute


# --- path globs ---------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.DOTALL)


def glob_match(pattern: str | None, value: str | None) -> bool:
    """fnmatch.fnmatchcase, cached, with None matching nothing."""
    if pattern is None or value is None:
        return False
    return _glob_regex(pattern).match(value) is not None


# --- destinations -------------------------------------------------------------------


@dataclass(frozen=True)
class Dest:
    """A --dest term: an address, network, unix socket or port."""

    addresses: tuple[str, ...] = ()  # exact spellings of one address
    network: str | None = None  # CIDR
    unix: str | None = None  # glob on unix paths and @abstract names
    port: int | None = None
    text: str = ""

    def matches(self, addr: linux.SockAddr) -> bool:
        """Whether a connect's decoded address is this destination."""
        if self.port is not None and addr.port != self.port:
            return False
        if self.addresses:
            return addr.address is not None and addr.address.split("%", 1)[0] in self.addresses
        if self.network is not None:
            return in_network(self.network, addr.address)
        if self.unix is not None:
            return addr.family == linux.AF_UNIX and glob_match(self.unix, addr.address)
        return True


def _ip_spellings(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, ...]:
    """The ways the decoder may print ip: an IPv4 address is also reached
    through its v4-mapped IPv6 form."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return (f"::ffff:{mapped}", str(mapped))
        return (str(ip),)
    return (str(ip), f"::ffff:{ip}")


def parse_dest(text: str) -> Dest:
    """A --dest term (see the module's grammar)."""
    t = text.strip()
    if not t:
        raise UsageError("--dest needs an address")
    if t.startswith(("/", "@")):
        return Dest(unix=t, text=text)
    port: int | None = None
    host = t
    if t.startswith("["):
        end = t.find("]")
        if end < 0:
            raise UsageError(f"--dest {text!r}: missing ']'")
        host, rest = t[1:end], t[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"--dest {text!r}: expected ':PORT' after ']'")
            port = _port(rest[1:], text)
    elif t.count(":") == 1:  # IPv4:PORT or :PORT; a bare IPv6 has several colons
        host, _, p = t.partition(":")
        port = _port(p, text)
    if not host or host == "*":
        return Dest(port=port, text=text)
    try:
        if "/" in host:
            net = ipaddress.ip_network(host, strict=False)
            return Dest(network=str(net), port=port, text=text)
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(
            f"--dest {text!r}: not an IP address, network, unix socket path or :PORT "
            "(session files hold addresses, not host names)"
        ) from None
    return Dest(addresses=_ip_spellings(ip), port=port, text=text)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise UsageError(f"--dest {whole!r}: bad port {text!r}")
    return int(text)


@functools.lru_cache(maxsize=64)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


def in_network(network: str | None, addr: str | None) -> bool:
    """Whether the address text addr (maybe v4-mapped, maybe with a zone) is
    in the CIDR network."""
    if network is None or addr is None:
        return False
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    net = _network(network)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        if isinstance(net, ipaddress.IPv4Network):
            return ip.ipv4_mapped in net
    return ip in net
