"""Talking to OCI distribution registries: references, hosts, auth, resolve, fetch and push.

``Session`` carries the HTTP clients and credentials for one operation;
``Resolver`` turns a reference into its root descriptor and fetches blobs;
``Pusher`` uploads into one repository.  Pull and push over the content store
live in :mod:`lamina.client.pull` and :mod:`lamina.client.push`.
"""

from lamina.client.remotes.auth import Authorizer, static_credentials
from lamina.client.remotes.dockerconfig import docker_config_credentials
from lamina.client.remotes.errors import Forbidden, RegistryFailure, Unauthorized
from lamina.client.remotes.hosts import HostOptions, RegistryHost
from lamina.client.remotes.pusher import Pusher
from lamina.client.remotes.reference import Reference, parse
from lamina.client.remotes.resolver import Resolver
from lamina.client.remotes.session import Session

__all__ = [
    "Authorizer", "Forbidden", "HostOptions", "Pusher", "Reference", "RegistryFailure", "RegistryHost",
    "Resolver", "Session", "Unauthorized", "docker_config_credentials", "parse", "static_credentials",
]
