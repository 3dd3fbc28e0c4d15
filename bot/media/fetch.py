"""Capped, atomic downloads of attachments and results, only from where they may come.

A URL is untrusted: its host may be anywhere (a gateway's callback, forged or not, names the
result URL), its server may lie about the size, and signed result URLs carry secrets in the
query string. So before any request:

- the scheme must be https (http only for hosts the operator listed in
  SEEDANCE_PRIVATE_HOSTS, e.g. a self-hosted proxy or the tests' loopback fakes);
- the host must match the caller's host list, if it has one;
- the host is resolved, and every address must be public (not loopback, private, link-local,
  shared, multicast or reserved) unless the operator listed the host or its network; the
  connection then goes to the address that was checked (the request names the IP, the Host
  header and TLS SNI keep the host name), so a second DNS answer cannot swap it (rebinding).

The same checks run again on every redirect. While streaming, the byte count is enforced; the
file appears at `dest` only when complete; no message ever repeats the query string.
`file://` URLs are read only inside the folder the caller names (the embedded provider's task
folder), never elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import httpx

from bot.errors import DownloadError, RefusedDownload, ResultExpiredError, scrub
from bot.words import size

#: Statuses that mean the object is gone (result URLs expire), not that the server failed.
EXPIRED_STATUSES = frozenset({403, 404, 410})
MAX_REDIRECTS = 5
RESOLVE_TIMEOUT = 10.0
_CHUNK = 1 << 16

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver, off the event loop)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local, shared (CGNAT), reserved,
    unspecified or multicast. An IPv4-mapped IPv6 address is judged by its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class NetworkPolicy:
    """Which addresses downloads may reach.

    `private_hosts` and `private_networks` are the operator's exceptions (SEEDANCE_PRIVATE_HOSTS):
    listed hosts may be private and may use http. `trusted` lifts the address rules entirely,
    for URLs the operator typed (the CLI's inputs), never for a gateway's or a member's URL.
    """

    private_hosts: frozenset[str] = frozenset()
    private_networks: tuple[IPNetwork, ...] = ()
    trusted: bool = False
    resolve: Resolver = system_resolve

    @classmethod
    def parse(cls, text: str, *, resolve: Resolver = system_resolve) -> NetworkPolicy:
        """From "proxy.internal,10.0.0.0/8,127.0.0.1"; raises ValueError naming a bad entry."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in text.split(","):
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            if entry.startswith("[") and entry.endswith("]"):
                entry = entry[1:-1]
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or " " in entry:
                raise ValueError(f"{raw.strip()!r} is neither a host name nor an address or CIDR")
            hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks), resolve=resolve)

    def trusting(self) -> NetworkPolicy:
        """The same policy with the address rules lifted (the operator's own URLs)."""
        return replace(self, trusted=True)

    def listed(self, host: str) -> bool:
        """Whether the operator listed this host name, or the network of this IP literal."""
        host = host.lower().rstrip(".")
        if host in self.private_hosts:
            return True
        address = _ip(host)
        return address is not None and self._in_networks(address)

    def _in_networks(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == net.version and address in net
                   for net in self.private_networks)

    def allows(self, host: str, address: IPAddress) -> bool:
        return (self.trusted or is_public(address) or self.listed(host)
                or self._in_networks(address))

    async def address_for(self, host: str, port: int, shown: str) -> str:
        """The checked address to connect to for `host`. Every address the name resolves to
        must pass: an attacker's DNS answer mixing a public and a private address is refused.
        """
        literal = _ip(host)
        if literal is not None:
            found = [str(literal)]
        else:
            try:
                found = await asyncio.wait_for(self.resolve(host, port), RESOLVE_TIMEOUT)
            except (OSError, TimeoutError, UnicodeError) as exc:
                raise DownloadError(f"downloading {shown} failed: could not resolve {host} "
                                    f"({type(exc).__name__})") from exc
            if not found:
                raise DownloadError(f"downloading {shown} failed: {host} has no address")
        for text in found:
            address = _ip(text)
            if address is None or not self.allows(host, address):
                raise RefusedDownload(
                    f"refused {shown}: {host} is at {text}, a private or reserved address; "
                    "only public hosts (or SEEDANCE_PRIVATE_HOSTS) may be reached")
        return found[0]


#: No exceptions: what every gateway result and every member's URL gets by default.
STRICT = NetworkPolicy()


def host_allowed(url: str, allowed_hosts: Sequence[str]) -> bool:
    """Whether `url`'s host matches one entry, on a label boundary; empty `allowed_hosts` = any.

    "cdn.discordapp.com" matches that host and its subdomains; ".runware.ai" matches any
    subdomain of runware.ai and runware.ai itself. "evilcdn.discordapp.com" matches neither.
    """
    host = _host(url)
    if not host:
        return False
    if not allowed_hosts:
        return True
    for entry in allowed_hosts:
        suffix = entry.strip().lower().rstrip(".").lstrip(".")
        if suffix and (host == suffix or host.endswith("." + suffix)):
            return True
    return False


def safe_url(url: str) -> str:
    """The URL without query, fragment or credentials: fit for logs and user messages."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "(unparseable URL)"
    return scrub(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


async def download(
    client: httpx.AsyncClient,
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    policy: NetworkPolicy = STRICT,
    allowed_hosts: Sequence[str] = (),
    file_root: Path | None = None,
) -> int:
    """Fetch `url` into `dest` (at most `max_bytes`); returns the number of bytes written.

    Raises `RefusedDownload` for a URL the rules refuse (nothing is requested from it),
    `ResultExpiredError` when the object is gone (HTTP 403/404/410, missing file) and
    `DownloadError` for everything else (too large, network, disk full).
    """
    dest = Path(dest)
    part = dest.with_suffix(dest.suffix + ".part")
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return await asyncio.to_thread(_copy_file, url, dest, part, max_bytes, file_root)
    try:
        return await _fetch(client, url, dest, part, max_bytes, policy, allowed_hosts)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        raise


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


def _check_remote(url: str, policy: NetworkPolicy, allowed_hosts: Sequence[str]) -> None:
    """Refuse before any request: https only (http for listed hosts), allowed hosts only."""
    scheme = urlsplit(url).scheme.lower()
    host = _host(url)
    shown = safe_url(url)
    if scheme not in ("https", "http"):
        raise RefusedDownload(f"refused {shown}: only https URLs can be downloaded")
    if scheme == "http" and not (policy.trusted or policy.listed(host)):
        raise RefusedDownload(f"refused {shown}: only https URLs can be downloaded")
    if not host_allowed(url, allowed_hosts):
        raise RefusedDownload(f"refused {shown}: the host {host or '(none)'} is not allowed")


def _pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The request for `url` sent to `address`: the URL names the IP, the Host header and TLS
    SNI (and so certificate checks) keep the host name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _ip(host) is not None:
        return url, {}, {}
    where = f"[{address}]" if ":" in address else address
    if parts.port:
        where += f":{parts.port}"
    target = urlunsplit((parts.scheme, where, parts.path or "/", parts.query, ""))
    shown_host = host + (f":{parts.port}" if parts.port else "")
    extensions = {"sni_hostname": host} if parts.scheme.lower() == "https" else {}
    return target, {"Host": shown_host}, extensions


async def _fetch(
    client: httpx.AsyncClient, url: str, dest: Path, part: Path, max_bytes: int,
    policy: NetworkPolicy, allowed_hosts: Sequence[str],
) -> int:
    # Redirects are followed by hand so every hop passes the same checks and is pinned too.
    for _hop in range(MAX_REDIRECTS + 1):
        shown = safe_url(url)
        _check_remote(url, policy, allowed_hosts)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        address = await policy.address_for(_host(url), port, shown)
        target, headers, extensions = _pinned(url, address)
        try:
            async with client.stream("GET", target, headers=headers, extensions=extensions,
                                     follow_redirects=False) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                _check_response(response, shown, max_bytes)
                return await _stream_to(response, dest, part, max_bytes, shown)
        except httpx.HTTPError as exc:
            text = str(exc).replace(target, shown).replace(url, shown)
            reason = scrub(text) or type(exc).__name__
            raise DownloadError(f"downloading {shown} failed: {reason}") from exc
    raise DownloadError(f"downloading {safe_url(url)} failed: more than {MAX_REDIRECTS} redirects")


def _check_response(response: httpx.Response, shown: str, max_bytes: int) -> None:
    status = response.status_code
    if status in EXPIRED_STATUSES:
        raise ResultExpiredError(
            f"{shown} is no longer available (HTTP {status}); the link has expired", status=status
        )
    if status != 200:
        raise DownloadError(f"downloading {shown} failed: HTTP {status}")
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise DownloadError(
            f"{shown} is {size(int(declared))}, more than the {size(max_bytes)} limit"
        )


async def _stream_to(
    response: httpx.Response, dest: Path, part: Path, max_bytes: int, shown: str
) -> int:
    """Stream the body into `part`, counting as it goes, then rename it over `dest`.

    Opening, the fsync and the rename wait on the disk, so they run off the event loop (one
    trip each way); the writes in between only fill the page cache."""
    written = 0
    try:
        fh = await asyncio.to_thread(_open_part, part)
        try:
            async for chunk in response.aiter_bytes(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise DownloadError(
                        f"{shown} is more than the {size(max_bytes)} limit; download stopped"
                    )
                fh.write(chunk)
        except BaseException:
            fh.close()
            raise
        await asyncio.to_thread(_seal, fh, part, dest)
    except OSError as exc:
        raise _disk_error(exc, shown) from exc
    return written


def _open_part(part: Path) -> BinaryIO:
    part.parent.mkdir(parents=True, exist_ok=True)
    return part.open("wb")


def _seal(fh: BinaryIO, part: Path, dest: Path) -> None:
    """The job row will say "downloaded": the bytes must be on disk under their name first."""
    with fh:
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, dest)


def _copy_file(url: str, dest: Path, part: Path, max_bytes: int, file_root: Path | None) -> int:
    """Copy a `file://` URL inside `file_root` (the local provider's results) in chunks."""
    parts = urlsplit(url)
    shown = f"file://{unquote(parts.path)}"
    if file_root is None:
        raise RefusedDownload(f"refused {shown}: file URLs are not allowed here")
    if parts.netloc not in ("", "localhost"):
        raise RefusedDownload(f"refused {shown}: file URLs must name a local path")
    root = Path(file_root).resolve()
    source = Path(unquote(parts.path)).resolve()
    if not source.is_relative_to(root):
        raise RefusedDownload(f"refused {shown}: the file is outside the allowed folder")
    if not source.is_file():
        raise ResultExpiredError(f"{shown} no longer exists")
    if source.stat().st_size > max_bytes:
        raise DownloadError(f"{shown} is {size(source.stat().st_size)}, more than the "
                            f"{size(max_bytes)} limit")
    written = 0
    try:
        with source.open("rb") as src:
            fh = _open_part(part)
            try:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:  # the file grew while we copied
                        raise DownloadError(f"{shown} is more than the {size(max_bytes)} limit")
                    fh.write(chunk)
            except BaseException:
                fh.close()
                raise
            _seal(fh, part, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _disk_error(exc, shown) from exc
        raise
    return written


def _disk_error(exc: OSError, shown: str) -> DownloadError:
    """Say what filled up in words an operator acts on (not "File too large", which reads as
    a complaint about the video)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError(f"the disk is full; could not save {shown}")
    if exc.errno == errno.EFBIG:
        return DownloadError(
            f"could not save {shown}: it exceeds this machine's file size limit (ulimit -f)"
        )
    return DownloadError(f"could not save {shown}: {exc.strerror or exc}")

