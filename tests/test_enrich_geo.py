"""
Tests for L{linkrouter.collector.geo}: the packaged data, a MaxMind DB written here, the
layering of the two, and the errors that name a bad file.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from linkrouter.collector.geo import (
    GeoDatabaseError,
    IGeoLocator,
    LayeredLocator,
    MaxMindLocator,
    PackagedLocator,
    Place,
    layered,
)

LONDON = {
    "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
    "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
    "city": {"names": {"en": "London"}},
}


def write_mmdb(
    path: FilePath[str], networks: dict[str, dict[str, Any]], ip_version: int = 6
) -> FilePath[str]:
    """
    Write a small MaxMind DB of C{networks} (CIDR to record) at C{path}.
    """
    writer = MMDBWriter(
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type="GeoIP2-City",
        languages=["en"],
        description="linkrouter test data",
    )
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(path.path)
    return path


def city_database(case: SynchronousTestCase) -> FilePath[str]:
    return write_mmdb(
        FilePath(case.mktemp()),
        {
            "81.2.69.0/24": LONDON,
            "2a02:8108::/32": {
                "country": {"iso_code": "DE"},
                "subdivisions": [{"iso_code": "BY"}],  # a region with no English name
                "city": {"names": {"de": "München"}},  # a city with no English name
            },
            "198.51.100.0/24": {"autonomous_system_organization": "EXAMPLE-NET"},
            "203.0.113.0/24": {"country": "not a map", "subdivisions": "nor a list"},
        },
    )


class PackagedLocatorTests(SynchronousTestCase):
    locator = PackagedLocator()

    def test_interface(self) -> None:
        """
        The packaged locator provides L{IGeoLocator}.
        """
        self.assertTrue(verifyObject(IGeoLocator, self.locator))

    def test_microsoftSafeLinks(self) -> None:
        """
        The address Microsoft Safe Links scans from is in Microsoft's owner network.
        """
        place = self.locator.locate(ip_address("40.94.16.5"))
        self.assertEqual(place.network, "MICROSOFT-CORP-MSN-AS-BLOCK")
        self.assertIsNotNone(place.country)

    def test_truncated(self) -> None:
        """
        Addresses truncated to their /24 or /48 are placed like the full ones.
        """
        for full, truncated in [
            ("8.8.8.8", "8.8.8.0"),
            ("2a00:1450:4001:82b::200e", "2a00:1450:4001::"),
        ]:
            place = self.locator.locate(ip_address(truncated))
            self.assertEqual(place, self.locator.locate(ip_address(full)))
            self.assertEqual(place.network, "GOOGLE")
            self.assertEqual(len(place.country or ""), 2)

    def test_knownCountries(self) -> None:
        """
        Countries come as ISO codes; there are no regions or cities in the packaged data.
        """
        self.assertEqual(
            self.locator.locate(ip_address("8.8.8.8")), Place("US", None, None, "GOOGLE")
        )

    def test_unknown(self) -> None:
        """
        Private and documentation addresses are nowhere.
        """
        for address in ["192.168.1.1", "2001:db8::1", "::1", "10.0.0.0"]:
            self.assertEqual(self.locator.locate(ip_address(address)), Place(), address)

    def test_oneDatabase(self) -> None:
        """
        The packaged data is loaded once a process, however many locators there are.
        """
        self.assertIs(PackagedLocator()._database, self.locator._database)


class MaxMindLocatorTests(SynchronousTestCase):
    def test_city(self) -> None:
        """
        Country, region and city come from a City database's records, in English.
        """
        locator = MaxMindLocator(city_database(self))
        self.assertTrue(verifyObject(IGeoLocator, locator))
        self.assertEqual(
            locator.locate(ip_address("81.2.69.160")), Place("GB", "England", "London")
        )
        self.assertEqual(locator.locate(ip_address("81.2.69.0")), Place("GB", "England", "London"))

    def test_partialRecords(self) -> None:
        """
        A region without an English name is given by its code; a city without one is
        unknown; an ASN record gives the owner network; malformed parts are unknown.
        """
        locator = MaxMindLocator(city_database(self))
        self.assertEqual(locator.locate(ip_address("2a02:8108:1::")), Place("DE", "BY"))
        self.assertEqual(locator.locate(ip_address("198.51.100.7")), Place(network="EXAMPLE-NET"))
        self.assertEqual(locator.locate(ip_address("203.0.113.1")), Place())
        self.assertEqual(locator.locate(ip_address("1.1.1.1")), Place())

    def test_ipv6InIPv4Database(self) -> None:
        """
        An IPv6 address looked up in an IPv4-only database is unknown, not an error.
        """
        path = write_mmdb(FilePath(self.mktemp()), {"81.2.69.0/24": LONDON}, ip_version=4)
        locator = MaxMindLocator(path)
        self.assertEqual(locator.locate(ip_address("2a02:8108::1")), Place())
        self.assertEqual(locator.locate(ip_address("81.2.69.1")).city, "London")

    def test_missing(self) -> None:
        """
        A missing file is refused at construction, naming it.
        """
        path = FilePath(self.mktemp())
        error = self.assertRaises(GeoDatabaseError, MaxMindLocator, path)
        self.assertEqual(str(error), f"geo database {path.path}: no such file")

    def test_notADatabase(self) -> None:
        """
        A file that is not a MaxMind DB is refused at construction, naming it.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"GeoLite2-City.mmdb\n" * 100)
        error = self.assertRaises(GeoDatabaseError, MaxMindLocator, path)
        self.assertIn(f"geo database {path.path}: is not a MaxMind DB (.mmdb) file", str(error))

    def test_unreadable(self) -> None:
        """
        A path that cannot be read (here a directory) is refused at construction, naming it.
        """
        path = FilePath(self.mktemp())
        path.makedirs()
        error = self.assertRaises(GeoDatabaseError, MaxMindLocator, path)
        self.assertIn(f"geo database {path.path}: ", str(error))


class LayeredLocatorTests(SynchronousTestCase):
    def test_fillsUnknownParts(self) -> None:
        """
        The configured database's place comes first; the packaged data adds the owner
        network it lacks, and the whole place where it knows nothing.
        """
        locator = layered([city_database(self)])
        self.assertTrue(verifyObject(IGeoLocator, locator))
        london = locator.locate(ip_address("81.2.69.160"))
        self.assertEqual((london.country, london.region, london.city), ("GB", "England", "London"))
        self.assertIsNotNone(london.network)
        self.assertEqual(locator.locate(ip_address("8.8.8.8")), Place("US", None, None, "GOOGLE"))

    def test_stopsWhenComplete(self) -> None:
        """
        Once a place is complete, later locators are not asked.
        """
        asked: list[str] = []

        class Recording:
            def locate(self, address: object) -> Place:
                asked.append(str(address))
                return Place("XX", "R", "C", "N")

        locator = LayeredLocator((Recording(), Recording()))
        self.assertEqual(locator.locate(ip_address("192.0.2.1")), Place("XX", "R", "C", "N"))
        self.assertEqual(asked, ["192.0.2.1"])

    def test_noFilesIsPackaged(self) -> None:
        """
        Without configured files the packaged locator is used alone.
        """
        self.assertIsInstance(layered([]), PackagedLocator)

    def test_badFileFailsAtConstruction(self) -> None:
        """
        A bad file among several fails the construction, naming that file.
        """
        missing = FilePath(self.mktemp())
        error = self.assertRaises(GeoDatabaseError, layered, [city_database(self), missing])
        self.assertIn(missing.path, str(error))
