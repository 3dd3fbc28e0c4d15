"""Capped, atomic downloads of attachments and results.

A URL is untrusted: its host may be anywhere, its server may lie about the size, and signed
result URLs carry secrets in the query string. So the host and scheme are checked before any
request (and again on every redirect), the byte count is enforced while streaming, the file
appears at `dest` only when complete, and no message ever repeats the query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import httpx

from bot.errors import DownloadError, ResultExpiredError, scrub

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Statuses that mean the object is gone (result URLs expire), not that the server failed.
EXPIRED_STATUSES = frozenset({403, 404, 410})
MAX_REDIRECTS = 5
_CHUNK = 1 << 16


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
    allowed_hosts: Sequence[str] = (),
    file_root: Path | None = None,
) -> int:
    """Fetch `url` into `dest` (at most `max_bytes`); returns the number of bytes written.

    Raises `ResultExpiredError` when the object is gone (HTTP 403/404/410, missing file) and
    `DownloadError` for everything else (refused host or scheme, too large, network, disk full).
    """
    dest = Path(dest)
    part = dest.with_suffix(dest.suffix + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return await asyncio.to_thread(_copy_file, url, dest, part, max_bytes, file_root)
    _check_remote(url, allowed_hosts)
    try:
        return await _fetch(client, url, dest, part, max_bytes, allowed_hosts)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        raise


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower().rstrip(".")
    except ValueError:
        return ""


def _check_remote(url: str, allowed_hosts: Sequence[str]) -> None:
    """Refuse before any request: https only (http for loopback tests), allowed hosts only."""
    scheme = urlsplit(url).scheme.lower()
    host = _host(url)
    shown = safe_url(url)
    if scheme not in ("https", "http"):
        raise DownloadError(f"refused {shown}: only https URLs can be downloaded")
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise DownloadError(f"refused {shown}: only https URLs can be downloaded")
    if not host_allowed(url, allowed_hosts):
        raise DownloadError(f"refused {shown}: the host {host or '(none)'} is not allowed")


async def _fetch(
    client: httpx.AsyncClient, url: str, dest: Path, part: Path, max_bytes: int,
    allowed_hosts: Sequence[str],
) -> int:
    # Redirects are followed by hand so every hop passes the same host and scheme checks.
    for _hop in range(MAX_REDIRECTS + 1):
        shown = safe_url(url)
        try:
            async with client.stream("GET", url, follow_redirects=False) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    _check_remote(url, allowed_hosts)
                    continue
                _check_response(response, shown, max_bytes)
                return await _stream_to(response, dest, part, max_bytes, shown)
        except httpx.HTTPError as exc:
            reason = scrub(str(exc).replace(url, shown)) or type(exc).__name__
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
            f"{shown} is {_mb(int(declared))}, more than the {_mb(max_bytes)} limit"
        )


async def _stream_to(
    response: httpx.Response, dest: Path, part: Path, max_bytes: int, shown: str
) -> int:
    """Stream the body into `part`, counting as it goes, then rename it over `dest`."""
    written = 0
    try:
        with part.open("wb") as fh:
            async for chunk in response.aiter_bytes(_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise DownloadError(
                        f"{shown} is more than the {_mb(max_bytes)} limit; download stopped"
                    )
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())  # the job row will say "downloaded": the bytes must be there
        os.replace(part, dest)
    except OSError as exc:
        raise _disk_error(exc, shown) from exc
    return written


def _copy_file(url: str, dest: Path, part: Path, max_bytes: int, file_root: Path | None) -> int:
    """Copy a `file://` URL inside `file_root` (the local provider's results) in chunks."""
    parts = urlsplit(url)
    shown = f"file://{unquote(parts.path)}"
    if file_root is None:
        raise DownloadError(f"refused {shown}: file URLs are not allowed here")
    if parts.netloc not in ("", "localhost"):
        raise DownloadError(f"refused {shown}: file URLs must name a local path")
    root = Path(file_root).resolve()
    source = Path(unquote(parts.path)).resolve()
    if not source.is_relative_to(root):
        raise DownloadError(f"refused {shown}: the file is outside the allowed folder")
    if not source.is_file():
        raise ResultExpiredError(f"{shown} no longer exists")
    if source.stat().st_size > max_bytes:
        raise DownloadError(f"{shown} is {_mb(source.stat().st_size)}, more than the "
                            f"{_mb(max_bytes)} limit")
    written = 0
    try:
        with source.open("rb") as src, part.open("wb") as fh:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:  # the file grew while we copied
                    raise DownloadError(f"{shown} is more than the {_mb(max_bytes)} limit")
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, dest)
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


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n:,} bytes"
