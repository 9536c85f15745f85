"""gRPC on TCP (``[grpc] tcp_address``): TLS with client certificates, or refused.

containerd serves ``tcp_address`` with TLS when ``tcp_tls_cert`` and
``tcp_tls_key`` are set, asks for client certificates from ``tcp_tls_ca``,
and otherwise serves it in the clear (services/server/server.go).  The API
hands root on the node to whoever can call it, so laminad makes mutual TLS
the only way without an explicit opt-out: a TCP address without the
certificate, key and CA is refused at start-up, naming the settings, unless
``tcp_insecure = true`` (lamina's own key) is set, and then every start logs
a warning saying what is exposed.  ALPN offers ``h2`` only: gRPC clients
require it over TLS.
"""

from __future__ import annotations

import ssl

from lamina.core.config import GrpcConfig
from lamina.core.errors import InvalidArgument
from lamina.core.log import get_logger

log = get_logger()


def server_context(config: GrpcConfig) -> ssl.SSLContext | None:
    """The TLS context for ``tcp_address``, or None to serve it in the clear (``tcp_insecure``)."""
    missing = [key for key in ("tcp_tls_cert", "tcp_tls_key", "tcp_tls_ca") if not getattr(config, key)]
    if missing and not config.tcp_insecure:
        raise InvalidArgument(
            f"grpc tcp_address {config.tcp_address!r} needs TLS with client certificates: set "
            f"{', '.join(missing)} in [grpc] (or tcp_insecure = true to serve it without them)")
    if missing:
        log.warning("gRPC on TCP without mutual TLS: whoever reaches it controls every container",
                    tcp_address=config.tcp_address, missing=missing)
    if not (config.tcp_tls_cert and config.tcp_tls_key):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    try:
        context.load_cert_chain(config.tcp_tls_cert, config.tcp_tls_key)
        if config.tcp_tls_ca:
            context.load_verify_locations(cafile=config.tcp_tls_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"grpc tcp TLS files: {exc}") from None
    return context
