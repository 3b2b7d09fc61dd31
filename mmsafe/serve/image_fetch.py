"""Remote images for the guard proxy: an ``image_url`` that is an http(s) URL is fetched only from an allowed host,
never from a loopback, link-local, private, reserved or other non-public address (server-side request forgery).

The check is on the addresses the host name resolves to (so ``localhost``, ``0x7f.1`` or a name whose DNS points
inside the network are caught), the connection goes to the address that was checked (so DNS cannot change between
check and connect), every redirect is checked the same way, environment proxies are ignored, and the download is
cut at the size limit however the server declares it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpx

from mmsafe.serve.openai_types import WireError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def address_kind(address: Address) -> str | None:
    """Why ``address`` is not public (``"loopback"``, ``"private"``, ...), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified", "site_local"):
        if getattr(address, f"is_{kind}", False):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"


class ImageFetcher:
    """Downloads remote images for requests: only from ``hosts`` (exact names, case-insensitive), only from public
    addresses unless one falls in ``networks`` (an internal image store, named on purpose), at most ``max_bytes``,
    ``max_redirects`` redirects and ``timeout_s`` seconds in all."""

    def __init__(self, hosts: Iterable[str], networks: Iterable[str] = (), max_bytes: int = 16 * 2**20,
                 timeout_s: float = 10.0, max_redirects: int = 3) -> None:
        self.hosts = frozenset(h.strip().lower() for h in hosts if h.strip())
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        self.max_bytes, self.timeout_s, self.max_redirects = max_bytes, timeout_s, max_redirects
        # trust_env=False: an HTTP(S)_PROXY from the environment would connect somewhere other than the checked address.
        self.client = httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout_s)

    async def fetch(self, url: str, where: str) -> bytes:
        """The body of ``url``, or a ``WireError`` that says which rule refused it."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._fetch(url, where)
        except TimeoutError:
            raise WireError(f"{where}: {url[:100]} did not arrive within {self.timeout_s:g} s") from None
        except httpx.HTTPError as e:
            raise WireError(f"{where}: fetching {url[:100]} failed: {type(e).__name__}: {e}") from None

    async def _fetch(self, url: str, where: str) -> bytes:
        for _ in range(self.max_redirects + 1):
            try:
                parsed = httpx.URL(url)
            except httpx.InvalidURL as e:
                raise WireError(f"{where}: not a valid URL ({e})") from None
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise WireError(f"{where}: only data: URLs and http(s) URLs of allowed hosts are accepted")
            host = parsed.host.lower()
            if host not in self.hosts:
                raise WireError(f"{where}: images from {host!r} are not fetched: the host is not allowed "
                                "(--allow-image-host)")
            address = await self._address(host, parsed.port or (443 if parsed.scheme == "https" else 80), where)
            pinned = parsed.copy_with(host=address)
            extensions: dict[str, Any] = {"sni_hostname": host} if parsed.scheme == "https" else {}
            # identity: a compressed body would be inflated in memory before the size limit could see it
            headers = {"Host": parsed.netloc.decode("ascii"), "Accept-Encoding": "identity"}
            async with self.client.stream("GET", pinned, headers=headers, extensions=extensions) as r:
                if r.is_redirect:
                    url = str(parsed.join(r.headers.get("location", "")))
                    continue
                if r.status_code != 200:
                    raise WireError(f"{where}: {host} answered HTTP {r.status_code}")
                return await self._body(r, where)
        raise WireError(f"{where}: more than {self.max_redirects} redirects")

    async def _address(self, host: str, port: int, where: str) -> str:
        """The address to connect to; every address ``host`` resolves to must be allowed (a name that resolves to
        both a public and a private address is refused)."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise WireError(f"{where}: cannot resolve {host!r} ({e.strerror})") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        for a in addresses:
            kind = address_kind(a)
            if kind is not None and not any(a in n for n in self.networks if n.version == a.version):
                raise WireError(f"{where}: {host!r} resolves to {a}, a {kind} address: not fetched")
        return str(addresses[0])

    async def _body(self, r: httpx.Response, where: str) -> bytes:
        declared = r.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise WireError(f"{where}: the image is {int(declared) / 2**20:.1f} MiB, over the "
                            f"{self.max_bytes / 2**20:g} MiB image limit")
        body = bytearray()
        async for chunk in r.aiter_raw():
            body += chunk
            if len(body) > self.max_bytes:
                raise WireError(f"{where}: the download passed the {self.max_bytes / 2**20:g} MiB image limit")
        return bytes(body)

    async def aclose(self) -> None:
        await self.client.aclose()
