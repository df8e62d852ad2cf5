# -*- test-case-name: tests.test_enrich_geo -*-
"""
Where an address is: country, region, city, and the network that owns it.

Two implementations answer the same L{IGeoLocator}: L{PackagedLocator} needs no
configuration (C{geoip2fast} ships country and owner-network data for IPv4 and IPv6), and
L{MaxMindLocator} reads a MaxMind C{.mmdb} file an operator configures, for regions and
cities. L{LayeredLocator} fills what one does not know from another.
"""

from __future__ import annotations

import ipaddress
import sys
import threading
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Protocol

import attrs
import maxminddb
from geoip2fast import GeoIP2Fast
from twisted.python.filepath import FilePath
from zope.interface import Interface, implementer  # type: ignore[import-untyped]

__all__ = [
    "Address",
    "GeoDatabaseError",
    "GeoLocator",
    "IGeoLocator",
    "LayeredLocator",
    "MaxMindLocator",
    "PackagedLocator",
    "Place",
    "layered",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_PACKAGED_FILE = "geoip2fast-asn-ipv6.dat.gz"  # countries and owner networks, IPv4 and IPv6
_IPV6_END = 2**128  # a name: Python does not fold a constant this large


class GeoDatabaseError(ValueError):
    """
    A geo database cannot be used; the message names the file and what is wrong with it.
    """


@attrs.frozen
class Place:
    """
    What is known of where an address is; C{None} is unknown.

    @ivar country: the ISO 3166-1 alpha-2 code, such as C{"DE"}.
    @ivar region: the first-level subdivision's English name, such as C{"Bavaria"}.
    @ivar network: the owner network's name (its AS organisation), such as
        C{"MICROSOFT-CORP-MSN-AS-BLOCK"}: a strong hint that a machine visited.
    """

    country: str | None = None
    region: str | None = None
    city: str | None = None
    network: str | None = None

    def fill(self, other: Place) -> Place:
        """This place, its unknown parts taken from C{other}."""
        return Place(
            self.country or other.country,
            self.region or other.region,
            self.city or other.city,
            self.network or other.network,
        )

    @property
    def complete(self) -> bool:
        return None not in (self.country, self.region, self.city, self.network)


class IGeoLocator(Interface):  # type: ignore[misc]
    """
    Places addresses. Lookups are pure CPU over data loaded at construction: a database
    that cannot be loaded fails then, with L{GeoDatabaseError}, never at lookup time.
    """

    def locate(address: Address) -> Place:  # type: ignore[empty-body]  # noqa: N805
        """
        Where C{address} (a public address, possibly truncated to its /24 or /48) is;
        an address the data does not know gives an empty L{Place}.
        """


class GeoLocator(Protocol):
    """
    L{IGeoLocator} as a typing protocol: zope interfaces do not type-check their methods.
    """

    def locate(self, address: Address) -> Place: ...


@cache
def _geoip2fast() -> Any:
    """
    The one C{geoip2fast} database of this process: the library keeps its data in module
    globals, so two instances would share (and overwrite) it. Loading takes about 0.3 s.
    """
    return GeoIP2Fast(geoip2fast_data_file=_PACKAGED_FILE)


_geoip2fast_lock = threading.Lock()


@attrs.frozen
class _Tables:
    """
    The tables C{geoip2fast} searches, read from its module globals once loaded (where
    the library keeps them), so a lookup reaches them without its methods' layers.

    @ivar codes: by country index, the country code of C{mainListNamesCountry}'s
        C{"code:name"} entry, or C{None} where the entry is not of that form.
    """

    index: list[int]
    first: list[list[int]]
    length: list[list[int]]
    country: list[list[int]]
    codes: list[str | None]
    asn_index: list[int]
    asn_first: list[list[int]]
    asn_length: list[list[int]]
    asn_id: list[list[int]]
    asn_names: list[str]
    v4_sizes: list[int]
    v6_sizes: list[int]
    max_v4: int

    def network(self, database: Any, number: int) -> str:
        """
        The owner network's name C{database._asn_lookup(number)} gives, or C{""}: its
        steps, but for the text of the network's range that C{lookup} drops. That text
        fails (and so gives C{""}) only for a first address out of the IPv6 range.
        """
        if database.asn == False:  # noqa: E712  # geoip2fast's own test
            return ""
        try:
            root = bisect_right(self.asn_index, number) - 1
            firsts = self.asn_first[root]
            chunk = bisect_right(firsts, number) - 1
            first = firsts[chunk]
            name = self.asn_names[self.asn_id[root][chunk]]
            sizes = self.v6_sizes if database.ipv6 else self.v4_sizes
            if number > first + sizes[self.asn_length[root][chunk]] - 1:
                return ""
            if not 0 <= first < _IPV6_END:
                return ""
        except Exception:
            return ""
        return name


def _code(entry: object) -> str | None:
    """
    The country code of a C{"code:name"} entry as C{_country_lookup} reads it, or C{None}
    where its C{split(":")} cannot be unpacked into two.
    """
    try:
        code, _ = entry.split(":")  # type: ignore[attr-defined]
    except Exception:
        return None
    return code  # type: ignore[no-any-return]


@cache
def _packaged_tables() -> _Tables | None:
    """
    The loaded C{geoip2fast} data's tables, or C{None} (every lookup then asks the public
    call) where the library's module does not hold them as this version expects.
    """
    _load_packaged()
    library = sys.modules[GeoIP2Fast.__module__]
    try:
        return _Tables(
            index=library.mainIndex,
            first=library.mainListFirstIP,
            length=library.mainListNetlength,
            country=library.mainListIDCountryCodes,
            codes=[_code(entry) for entry in library.mainListNamesCountry],
            asn_index=library.mainIndexASN,
            asn_first=library.mainListFirstIPASN,
            asn_length=library.mainListNetlengthASN,
            asn_id=library.mainListIDASN,
            asn_names=library.mainListNamesASN,
            v4_sizes=library.numIPsv4,
            v6_sizes=library.numIPsv6,
            max_v4=library.MAX_IPv4,
        )
    except AttributeError:
        return None


@implementer(IGeoLocator)
@attrs.frozen
class PackagedLocator:
    """
    Countries and owner networks from the data C{geoip2fast} ships: no configuration, no
    network access, no regions or cities.
    """

    _database: Any = attrs.field(init=False, factory=lambda: _load_packaged())
    # Caches of the library's data, not part of the locator's value.
    _tables: _Tables | None = attrs.field(
        init=False, factory=lambda: _packaged_tables(), eq=False, repr=False
    )
    _places: dict[tuple[bool, str, str], Place] = attrs.field(
        init=False, factory=dict, eq=False, repr=False
    )

    def locate(self, address: Address) -> Place:
        found = self._locate_number(address)
        if found is not None:
            return found
        return self._place(*self._details(address))

    def _details(self, address: Address) -> tuple[bool, str, str]:
        """
        What C{geoip2fast}'s public C{lookup} says of C{address}: whether it is private,
        its country code (or an error code), its owner network.
        """
        detail = self._database.lookup(str(address))
        return detail.is_private, detail.country_code, detail.asn_name

    def _locate_number(self, address: Address) -> Place | None:
        """
        The place C{lookup} would give, from the steps it takes after reading the address,
        or C{None} where they do not answer plainly (then C{lookup} itself is asked). The
        public call formats a timer, the network's text and a result object on every
        address, which costs more than the search: the collector places one per event.
        The steps are those of C{_main_index_lookup}, C{_asn_lookup} and
        C{_country_lookup}, over the tables L{_Tables} holds, less the text of the owner
        network's range that C{_asn_lookup} formats and C{lookup} drops.
        """
        database = self._database
        tables = self._tables
        if tables is None or not database.country or getattr(address, "scope_id", None):
            return None  # a city database, or a text lookup() cannot read: its own answer
        number = int(address)
        try:
            root = bisect_right(tables.index, number) - 1
            firsts = tables.first[root]
            chunk = bisect_right(firsts, number) - 1
            sizes = tables.v4_sizes if number <= tables.max_v4 else tables.v6_sizes
            if number > firsts[chunk] + sizes[tables.length[root][chunk]] - 1:
                return self._place(False, database.error_code_network_not_found, "")
            country = tables.country[root][chunk]
            code = tables.codes[country]
        except Exception:  # a lookup geoip2fast's own steps fail on: its public answer
            return None
        if code is None:
            return None
        private = country < 16  # geoip2fast's first sixteen "countries" are private ranges
        network = tables.network(database, number)
        key = (private, code, network)
        place = self._places.get(key)
        if place is None:
            place = self._places[key] = self._place(private, code, network)
        return place

    @staticmethod
    def _place(private: bool, country: str, network: str) -> Place:
        if private:
            return Place()
        return Place(
            country=country if len(country) == 2 and country.isalpha() else None,
            network=network or None,
        )


def _load_packaged() -> Any:
    with _geoip2fast_lock:
        try:
            return _geoip2fast()
        except Exception as error:  # geoip2fast raises its own, undocumented errors
            raise GeoDatabaseError(
                f"packaged geo data {_PACKAGED_FILE} (geoip2fast) cannot be loaded: {error}"
            ) from None


def _english(names: object) -> str | None:
    if isinstance(names, Mapping):
        name = names.get("en")
        if isinstance(name, str) and name:
            return name
    return None


def _place_of(record: object) -> Place:
    """
    The place in a MaxMind record: a GeoIP2/GeoLite2 City or Country record, an ASN record,
    or one that has both (as some commercial databases do).
    """
    if not isinstance(record, Mapping):
        return Place()
    country = record.get("country")
    code = country.get("iso_code") if isinstance(country, Mapping) else None
    subdivisions = record.get("subdivisions")
    region = None
    if isinstance(subdivisions, list) and subdivisions and isinstance(subdivisions[0], Mapping):
        first = subdivisions[0]
        region = _english(first.get("names")) or first.get("iso_code")
    city = record.get("city")
    network = record.get("autonomous_system_organization")
    return Place(
        country=code if isinstance(code, str) and code else None,
        region=region if isinstance(region, str) and region else None,
        city=_english(city.get("names")) if isinstance(city, Mapping) else None,
        network=network if isinstance(network, str) and network else None,
    )


@implementer(IGeoLocator)
@attrs.frozen
class MaxMindLocator:
    """
    Places from a MaxMind DB file (GeoIP2 or GeoLite2 City, Country or ASN, or any database
    with their record layout), memory-mapped.

    @ivar path: the C{.mmdb} file; it is opened and checked at construction.
    """

    path: FilePath[str]
    _reader: maxminddb.Reader = attrs.field(init=False)

    @_reader.default
    def _open(self) -> maxminddb.Reader:
        try:
            return maxminddb.open_database(self.path.path)
        except FileNotFoundError:
            raise GeoDatabaseError(f"geo database {self.path.path}: no such file") from None
        except OSError as error:
            raise GeoDatabaseError(
                f"geo database {self.path.path}: cannot be read: {error.strerror or error}"
            ) from None
        except (maxminddb.InvalidDatabaseError, ValueError) as error:
            raise GeoDatabaseError(
                f"geo database {self.path.path}: is not a MaxMind DB (.mmdb) file: {error}"
            ) from None

    def locate(self, address: Address) -> Place:
        try:
            record = self._reader.get(address)
        except (ValueError, maxminddb.InvalidDatabaseError):
            return Place()  # an IPv6 address in an IPv4 database, or a damaged record
        return _place_of(record)


@implementer(IGeoLocator)
@attrs.frozen
class LayeredLocator:
    """
    Asks each locator in turn and keeps what the earlier ones knew: a City database for
    the place, an ASN database or the packaged data for the owner network.
    """

    locators: tuple[GeoLocator, ...]

    def locate(self, address: Address) -> Place:
        place = Place()
        for locator in self.locators:
            place = place.fill(locator.locate(address))
            if place.complete:
                break
        return place


def layered(mmdb_files: Sequence[FilePath[str]]) -> GeoLocator:
    """
    The locator for a configuration: the configured C{.mmdb} files first, in order, then
    the packaged data for whatever they leave unknown.
    """
    packaged = PackagedLocator()
    if not mmdb_files:
        return packaged
    return LayeredLocator((*(MaxMindLocator(path) for path in mmdb_files), packaged))
