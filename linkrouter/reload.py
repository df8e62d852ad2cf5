# -*- test-case-name: tests.test_reload -*-
"""
Live reloads: SIGHUP re-reads the keyring, the certificates and the block list, and swaps
them in all at once, or not at all.

Everything is read and checked before anything changes, so a half-copied certificate or a
keyring with a typo leaves the router serving exactly what it served before, and one log
line says which file is wrong. The router reads the current material once per request (keys,
block list) or per connection (certificates): open connections are never touched.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen
from twisted.logger import Logger

from .blocklist import EMPTY, BlockList, BlockListError, load_blocklist
from .config import RouterConfig
from .keyfile import load_keyring
from .keys import Key, KeyringInvalid
from .sni import ServerContexts, load_contexts
from .tls import TLSError

__all__ = ["Material", "Reloader", "load_material", "reload_on_hangup"]


@frozen
class Material:
    """
    What a reload replaces: the keys by id, the block list and the TLS contexts (C{None}
    without TLS).
    """

    keys: Mapping[str, Key]
    blocklist: BlockList
    tls: ServerContexts | None

    @property
    def contexts(self) -> ServerContexts:
        """
        The TLS contexts, for a router configured with TLS.
        """
        assert self.tls is not None, "the router was configured without TLS"
        return self.tls


def load_material(config: RouterConfig) -> Material:
    """
    Read and check the keyring, block list and certificates that C{config} names.

    @raise KeyringInvalid, BlockListError, TLSError: one is unusable; the message names it.
    """
    keys = load_keyring(config.keyring).by_id
    blocklist = EMPTY if config.blocklist_file is None else load_blocklist(config.blocklist_file)
    tls = None
    if config.tls:
        assert config.certificate is not None and config.private_key is not None
        tls = load_contexts(
            config.certificate,
            config.private_key,
            config.certificates_directory,
            config.ocsp_response,
        )
    return Material(keys, blocklist, tls)


class Reloader:
    """
    Holds the current L{Material}; L{reload} replaces it when the new one loads completely.

    @param load: reads the material; raises L{KeyringInvalid}, L{BlockListError} or
        L{TLSError} when a file is unusable. Called once now: a failure stops start-up.
    """

    log = Logger()

    def __init__(self, load: Callable[[], Material]) -> None:
        self._load = load
        self.current = load()
        """The material every new request and connection uses."""

    def reload(self) -> bool:
        """
        Load the material again and swap it in; on failure keep the current one and log why.

        @return: whether the new material is in use.
        """
        try:
            material = self._load()
        except (KeyringInvalid, BlockListError, TLSError) as error:
            self.log.error(
                "reload failed, still serving the previous keyring, certificates and block "
                "list: {error}",
                error=str(error),
            )
            return False
        self.current = material
        blocked = material.blocklist
        self.log.info(
            "reloaded: {keys} keys, {names} certificate names besides the default, "
            "{entries} block list entries",
            keys=len(material.keys),
            names=0 if material.tls is None else len(material.tls.names),
            entries=sum(
                map(len, [blocked.link_ids, blocked.message_keys, blocked.key_ids, blocked.hosts])
            ),
        )
        return True


def reload_on_hangup(reactor: Any, reload: Callable[[], object]) -> Any:
    """
    Call C{reload} in the reactor's thread whenever the process receives SIGHUP.

    The signal handler only schedules the call: the reload itself runs between two reactor
    events, never in the middle of a request.

    @return: the handler SIGHUP had before, to restore it.
    """
    return signal.signal(signal.SIGHUP, lambda number, frame: reactor.callFromThread(reload))
