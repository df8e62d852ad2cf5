# -*- test-case-name: tests.test_sni -*-
"""
Certificates by server name, for custom tracking domains, and a connection creator that
always hands out the current ones, so a reload changes what new connections see and nothing
else.

A router serves its default certificate (C{[listen] certificate}) and any number of
certificate-and-key pairs from a directory, C{NAME.pem} (leaf first, then intermediates)
beside C{NAME-key.pem}. The names a pair serves are the DNS names of its certificate's
subjectAltName, wildcards (C{*.customer.example}) included; the file name only pairs the
files, so ACME clients' names work as they are. At the handshake the client's SNI name picks
the context; a client without SNI, or with a name nobody serves, gets the default.

Every context comes from L{linkrouter.tls.server_options}, so each one is hardened alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from attrs import frozen
from cryptography import x509
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.python.filepath import FilePath
from zope.interface import implementer  # type: ignore[import-untyped]

from .tls import OCSPStaple, TLSError, server_options, staple_ocsp

__all__ = ["CurrentContexts", "ServerContexts", "load_contexts", "server_names"]

KEY_SUFFIX = "-key.pem"


@frozen
class ServerContexts:
    """
    The default context and the context for each served name (exact names, and C{*.x}
    patterns for wildcard certificates).
    """

    default: SSL.Context
    names: Mapping[str, SSL.Context]

    def for_name(self, name: bytes | None) -> SSL.Context:
        """
        The context for the SNI C{name}: an exact name first, then a wildcard covering its
        first label (C{*.x} matches C{a.x}, not C{a.b.x}), else the default.
        """
        if not name:
            return self.default
        host = name.decode("ascii", "replace").lower().removesuffix(".")
        context = self.names.get(host)
        if context is None:
            dot = host.find(".")
            if dot > 0:
                context = self.names.get("*" + host[dot:])
        return self.default if context is None else context

    def _switch(self, connection: SSL.Connection) -> None:
        context = self.for_name(connection.get_servername())
        if context is not self.default:
            connection.set_context(context)


def server_names(certificate: FilePath[str]) -> list[str]:
    """
    The DNS names, lower case, of the subjectAltName of the first certificate in the PEM file
    C{certificate}.

    @raise TLSError: the file holds no certificate or the certificate names no DNS name.
    """
    try:
        leaf = x509.load_pem_x509_certificates(certificate.getContent())[0]
    except OSError as error:
        raise TLSError(
            f"certificate {certificate.path} cannot be read: {error.strerror}"
        ) from None
    except ValueError:
        raise TLSError(f"certificate {certificate.path} holds no PEM certificate") from None
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = x509.SubjectAlternativeName([])
    dns = [name.lower().removesuffix(".") for name in names.get_values_for_type(x509.DNSName)]
    if not dns:
        raise TLSError(f"certificate {certificate.path} names no DNS name in its subjectAltName")
    return dns


def _pairs(directory: FilePath[str]) -> list[tuple[FilePath[str], FilePath[str]]]:
    try:
        children = sorted(directory.children())
    except OSError as error:
        raise TLSError(
            f"certificates directory {directory.path} cannot be read: {error.strerror}"
        ) from None
    pairs = []
    for child in children:
        name = child.basename()
        if name.startswith(".") or not name.endswith(".pem") or not child.isfile():
            continue  # editors' and ACME clients' temporary files, notes, subdirectories
        if name.endswith(KEY_SUFFIX):
            if not child.sibling(name.removesuffix(KEY_SUFFIX) + ".pem").exists():
                raise TLSError(f"private key {child.path} has no certificate beside it")
            continue
        key = child.sibling(name.removesuffix(".pem") + KEY_SUFFIX)
        if not key.exists():
            raise TLSError(f"certificate {child.path} has no private key {key.basename()}")
        pairs.append((child, key))
    return pairs


def load_contexts(
    certificate: FilePath[str],
    private_key: FilePath[str],
    directory: FilePath[str] | None = None,
    ocsp_response: FilePath[str] | None = None,
) -> ServerContexts:
    """
    Hardened contexts for the default pair and for every pair in C{directory}; the default
    context switches to a named one when the client's SNI asks for it, and staples
    C{ocsp_response} (read and checked now, so a reload re-reads it) for the default
    certificate.

    @raise TLSError: a file is unusable, or two certificates in C{directory} serve one name;
        the message names the file.
    """
    default = server_options(certificate, private_key).getContext()
    if ocsp_response is not None:
        staple = OCSPStaple(ocsp_response, certificate)
        staple.load()
        staple_ocsp(default, staple)
    names: dict[str, SSL.Context] = {}
    served_by: dict[str, FilePath[str]] = {}
    for chain, key in _pairs(directory) if directory is not None else []:
        context = server_options(chain, key).getContext()
        for name in server_names(chain):
            if name in served_by:
                raise TLSError(
                    f"certificates {served_by[name].path} and {chain.path} both serve {name}; "
                    "remove one"
                )
            served_by[name] = chain
            names[name] = context
    contexts = ServerContexts(default, names)
    default.set_tlsext_servername_callback(contexts._switch)
    return contexts


@implementer(IOpenSSLServerConnectionCreator)
class CurrentContexts:
    """
    Makes each new server connection from the contexts current at that moment: swapping
    them (a reload) changes the certificate of new connections and leaves every open
    connection as it is.

    @param current: called once per connection for the contexts to use.
    """

    def __init__(self, current: Callable[[], ServerContexts]) -> None:
        self._current = current

    def serverConnectionForTLS(self, protocol: object) -> SSL.Connection:
        return SSL.Connection(self._current().default, None)
