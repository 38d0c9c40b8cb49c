"""The TLS side of the web config: an ``ssl.SSLContext`` from the validated settings, and the
check of a client certificate's SANs against ``client_allowed_sans``."""

from __future__ import annotations

import ipaddress
import ssl
import tempfile
from pathlib import Path

from exporter.config import ConfigError
from exporter.webconfig.schema import TlsSettings

VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
VERIFY = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
          "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}


def build_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """A server context as Go's crypto/tls would be configured; raises ConfigError."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[tls.min_version]
    context.maximum_version = VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:  # explicitly: the system's OpenSSL configuration may have turned it on
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.ciphers:  # TLS 1.2 only: TLS 1.3 suites are not configurable, as in Go
        try:
            context.set_ciphers(":".join(tls.ciphers))
        except ssl.SSLError:
            raise ConfigError("tls_server_config.cipher_suites: none of these suites is "
                              "available in this Python's OpenSSL") from None
    _load_chain(context, tls)
    context.verify_mode = VERIFY[tls.client_auth]
    if tls.client_auth != "NoClientCert":
        if tls.client_ca_pem is not None:
            try:
                context.load_verify_locations(cadata=tls.client_ca_pem.decode("ascii",
                                                                             "replace"))
            except ssl.SSLError as exc:
                raise ConfigError(f"tls_server_config.client_ca_file: invalid CA: "
                                  f"{exc.reason or exc}") from None
        else:  # no client CA: the system's roots, as Go uses them
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return context


def _load_chain(context: ssl.SSLContext, tls: TlsSettings) -> None:
    # ssl only loads a chain from files: a private temporary directory holds them a moment.
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(tls.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(tls.key_pem)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise ConfigError(f"tls_server_config.cert_file: failed to load X509KeyPair: "
                              f"{exc.reason or exc}") from None


def peer_sans(sslobj: ssl.SSLObject) -> list[str]:
    """The client certificate's SANs as Go lists them: DNS names, e-mail addresses, IP
    addresses and URIs."""
    cert = sslobj.getpeercert() or {}
    values: list[str] = []
    for entry in cert.get("subjectAltName", ()):
        kind, value = str(entry[0]), str(entry[1])
        if kind == "IP Address":
            value = str(ipaddress.ip_address(value.strip()))
        if kind in ("DNS", "email", "IP Address", "URI"):
            values.append(value)
    return values


def sans_allowed(tls: TlsSettings, sslobj: ssl.SSLObject) -> bool:
    """With client_allowed_sans, a client certificate must carry one of them; without a
    certificate (VerifyClientCertIfGiven) there is nothing to check, as in Go."""
    if tls.client_allowed_sans is None or sslobj.getpeercert() is None:
        return True
    return any(san in tls.client_allowed_sans for san in peer_sans(sslobj))
