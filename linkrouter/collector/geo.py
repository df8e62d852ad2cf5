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
import threading
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


@implementer(IGeoLocator)
@attrs.frozen
class PackagedLocator:
    """
    Countries and owner networks from the data C{geoip2fast} ships: no configuration, no
    network access, no regions or cities.
    """

    _database: Any = attrs.field(init=False, factory=lambda: _load_packaged())

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
        """
        database = self._database
        if not database.country or getattr(address, "scope_id", None):
            return None  # a city database, or a text lookup() cannot read: its own answer
        number = int(address)
        try:
            found = database._main_index_lookup(number)
            if not isinstance(found, tuple):
                return None
            root, chunk, _, last, _ = found
            if number > last:
                return self._place(False, database.error_code_network_not_found, "")
            network, _ = database._asn_lookup(number)
            country = database._country_lookup(root, chunk)
            if not isinstance(country, tuple):
                return None
            code, _, private = country
        except Exception:  # geoip2fast's internals changed: ask its public call
            return None
        return self._place(private, code, network)

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
