"""Download an archive (resumable, verified) and extract it without letting it write outside DEST.

`download` streams into `<name>.part`, resumes it with an HTTP Range request after an
interruption, never waits on a silent server longer than `timeout`, and renames the file into
place only once its size and SHA-256 match. `extract_archive` checks every member before
writing anything: no absolute paths, no `..`, no links leaving the archive, no device files.
"""

from __future__ import annotations

import errno
import fnmatch
import http.client
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from ...errors import AudioclsError
from ...files import file_sha256

CHUNK_BYTES = 1 << 20
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def _offline_message(url: str, reason: object) -> str:
    """Explain that `url` cannot be reached, and how to do without the network."""
    name = posixpath.basename(urllib.parse.urlparse(url).path) or "the file"
    return (f"Cannot reach {url} ({reason}). Check the network connection and try again, or "
            f"download {name} by hand, copy it to this machine and pass it as a file:// URL "
            f"(--url file:///path/to/{name})")


def check_url(url: str) -> None:
    """Stop unless `url` is an http(s) URL with a host name, or a file:// URL: a typo is no
    network problem."""
    example = "e.g. https://host/path/genres.tar.gz or file:///path/to/genres.tar.gz"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError as error:  # "Invalid IPv6 URL", a port that is not a number
        raise AudioclsError(f"--url {url!r} is malformed ({error}): {example}") from None
    if parts.scheme not in ("http", "https", "file"):
        raise AudioclsError(f"--url {url!r} is malformed: it must start with https://, http:// "
                            f"or file://; {example}")
    if parts.scheme != "file" and (not host or any(c.isspace() for c in url)):
        raise AudioclsError(f"--url {url!r} is malformed (no host name, or a space in it): "
                            f"{example}")


def _content_range_start(response: http.client.HTTPResponse) -> int | None:
    """Return where a 206 answer starts (`Content-Range: bytes START-END/TOTAL`), else None."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _open(url: str, offset: int, timeout: float) -> tuple[http.client.HTTPResponse | None, int]:
    """Open `url` from byte `offset`; return the response (None if `offset` is the end) and the
    offset it really starts at (0 when the server ignores the Range request)."""
    headers = {"User-Agent": "audiocls"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left after `offset`: the .part is complete
            return None, offset
        raise AudioclsError(f"{url}: the server answered HTTP {error.code} {error.reason}; check "
                            "the URL, or download the file by hand and pass it as a file:// URL"
                            ) from None
    except urllib.error.URLError as error:
        if urllib.parse.urlparse(url).scheme == "file":
            raise AudioclsError(f"{url}: {error.reason}; check the path") from None
        raise AudioclsError(_offline_message(url, error.reason)) from None
    except (TimeoutError, OSError) as error:
        raise AudioclsError(_offline_message(url, error or "timed out")) from None
    except ValueError as error:  # not a URL at all
        raise AudioclsError(f"{url!r} is not a URL ({error}); e.g. https://... or file:///...") from None
    if offset and getattr(response, "status", None) == 206:
        if _content_range_start(response) == offset:
            return response, offset
        response.close()
        raise AudioclsError(f"{url}: the server resumed at the wrong byte; delete the .part file "
                            "and download again")
    return response, 0  # a full answer (file://, or a server without Range support)


def download(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download `url` to the file `dest`, resuming `dest.part`, and check size and SHA-256.

    A `dest` already in place is kept when it matches `sha256`. An interrupted download keeps
    its `.part` for the next call to resume; a wrong size or checksum deletes it.
    """
    dest = Path(dest)
    sha256 = sha256.lower() if sha256 else None
    if dest.exists():
        if sha256 and file_sha256(dest) != sha256:
            raise AudioclsError(f"{dest} exists but its SHA-256 is not {sha256}: delete it and "
                                "download again")
        print(f"{dest} is already downloaded" + (" (SHA-256 verified)" if sha256 else ""))
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    response, offset = _open(url, offset, timeout)
    if response is not None:
        _stream(response, part, offset, url, progress)
    _verify(part, url, sha256, expected_size)
    os.replace(part, dest)
    return dest


def _stream(response: http.client.HTTPResponse, part: Path, offset: int, url: str,
            progress: bool) -> None:
    """Append the response body to `part` from `offset` (truncating it when offset is 0)."""
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length else None
    if offset:
        print(f"Resuming {part.name} from {offset / 1e6:.1f} MB")
    try:
        with response, open(part, "ab" if offset else "wb") as file, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5],
            disable=not progress,
        ) as bar:
            while chunk := response.read(CHUNK_BYTES):
                file.write(chunk)
                bar.update(len(chunk))
    except (TimeoutError, OSError, http.client.HTTPException) as error:
        done = part.stat().st_size
        if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            left = f"{(total - done) / 1e6:.0f} MB more" if total else "more space"
            raise AudioclsError(f"The disk holding {part} is full after {done / 1e6:.1f} MB: free "
                                f"{left} and run the same command again to resume") from None
        raise AudioclsError(f"Download of {url} stopped ({error or type(error).__name__}) after "
                            f"{done / 1e6:.1f} MB; run the same command again to resume") from None
    if total is not None and part.stat().st_size < total:
        raise AudioclsError(f"Download of {url} stopped after {part.stat().st_size} of {total} "
                            "bytes; run the same command again to resume")


def _verify(part: Path, url: str, sha256: str | None, expected_size: int | None) -> None:
    """Check the size and SHA-256 of a finished download; delete it if either is wrong."""
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise AudioclsError(f"{url} gave {size} bytes, expected {expected_size}; the partial file "
                            "was deleted: check the URL and download again")
    if sha256:
        actual = file_sha256(part)
        if actual != sha256:
            part.unlink()
            raise AudioclsError(f"{url}: SHA-256 {actual} does not match the expected {sha256}; "
                                "the download was deleted. Check the URL and the checksum")


def _check_member_name(name: str, archive: Path) -> str:
    """Return a member path normalized, or raise if it is absolute or climbs out with `..`."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise AudioclsError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    if ".." in re.split(r"[/\\]", name):
        raise AudioclsError(f"{archive}: member {name!r} climbs out with '..'; refusing to extract")
    return posixpath.normpath(name)


def _check_tar_member(member: tarfile.TarInfo, archive: Path) -> str:
    """Check one tar member: a plain file, folder, or link that stays inside the archive."""
    name = _check_member_name(member.name, archive)
    if member.issym():
        # A relative target without `..` resolves at or below the link's folder, so no chain of
        # such links can leave the extraction folder.
        if member.linkname.startswith("/") or ".." in member.linkname.split("/"):
            raise AudioclsError(f"{archive}: symlink {name!r} -> {member.linkname!r} points outside "
                                "the archive; refusing to extract")
    elif member.islnk():
        _check_member_name(member.linkname, archive)
    elif not (member.isfile() or member.isdir()):
        raise AudioclsError(f"{archive}: member {name!r} is a device file or FIFO; refusing to "
                            "extract")
    return name


def _members(archive: Path) -> list[str]:
    """Return the checked member paths of a .tar(.gz)/.tgz or .zip archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            return [_check_member_name(name, archive) for name in zipped.namelist()]
    try:
        with tarfile.open(archive) as tar:
            return [_check_tar_member(member, archive) for member in tar.getmembers()]
    except (tarfile.TarError, EOFError, OSError) as error:
        raise AudioclsError(f"{archive}: not a readable {'/'.join(ARCHIVE_SUFFIXES)} archive "
                            f"({what_it_holds(archive, error)}); check the URL, delete it and "
                            "download again") from None


SIGNATURES = ((b"\x1f\x8b", None), (b"RIFF", "a WAV audio file"), (b"fLaC", "a FLAC audio file"),
              (b"ID3", "an MP3 audio file"), (b"OggS", "an Ogg audio file"),
              (b"%PDF", "a PDF document"), (b"<!doctype html", "a web page (HTML)"),
              (b"<html", "a web page (HTML)"), (b"<?xml", "an XML document (an error page?)"),
              (b"{", "JSON text (an error message?)"))


def what_it_holds(archive: Path, error: Exception) -> str:
    """Say in a few words what a file that is not a readable archive holds."""
    with open(archive, "rb") as file:
        raw = file.read(64)
    head = raw.lstrip().lower()
    if not head:
        return "it is empty"
    for signature, kind in SIGNATURES:
        if head.startswith(signature.lower()):
            return f"it is {kind}" if kind else "a gzip stream that ends early or is damaged"
    lines = [line.strip("- ") for line in str(error).splitlines() if line.strip()]
    return lines[-1] if len(lines) == 1 else f"its first bytes are {raw[:16]!r}"


def _extract_all(archive: Path, folder: Path) -> None:
    """Extract a checked archive into `folder` (tar's 'data' filter too, where Python has it)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(folder)
        return
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(folder, filter="data")
        else:  # Python < 3.10.12: the member checks above are the protection
            tar.extractall(folder)  # noqa: S202


def missing_members(archive: str | Path, dest: str | Path) -> list[str]:
    """Return the archive's members that are not in `dest` (empty: it is all extracted there)."""
    return [name for name in _members(Path(archive))
            if name not in ("", ".") and not os.path.lexists(Path(dest) / name)]


def extract_archive(archive: str | Path, dest: str | Path, pick: str = "*",
                    check: Callable[[list[Path]], None] | None = None) -> list[Path]:
    """Extract `archive` into `dest` safely; return the paths it created there.

    Every member is checked first; the archive is unpacked into a temporary folder inside
    `dest`, then the entries that `pick` matches (a glob of member paths, `*`: every top-level
    entry; `*/recordings`: that folder one level down) are moved into `dest` under their own
    names, so a failure leaves `dest` as it was and nothing already in `dest` is overwritten.
    `check`, given the picked paths while they are still in the temporary folder, may raise to
    refuse them (a content checksum).
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise AudioclsError(f"Archive {archive} not found")
    depth = pick.count("/") + 1
    picked = sorted({"/".join(parts[:depth]) for parts in (name.split("/") for name in _members(archive)
                     if name not in ("", ".")) if len(parts) >= depth
                     and fnmatch.fnmatchcase("/".join(parts[:depth]), pick)})
    if not picked:
        raise AudioclsError(f"{archive} holds nothing matching {pick!r}: it is not the archive "
                            "expected; check the URL, delete it and download again")
    targets = [dest / posixpath.basename(name) for name in picked]
    taken = [target for target in targets if target.exists() or target.is_symlink()]
    if taken:
        raise AudioclsError(f"{taken[0]} already exists; delete it (or choose another --dest) "
                            "to extract again")
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    moved: list[Path] = []
    try:
        _extract_all(archive, staging)
        if check is not None:
            check([staging / name for name in picked])
        for name, target in zip(picked, targets, strict=True):
            os.replace(staging / name, target)
            moved.append(target)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        for path in moved:  # undo a partial move: nothing half-extracted stays behind
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise AudioclsError(f"no space left on the disk while extracting {archive} into "
                                f"{dest}: free some space (the archive is kept: nothing to "
                                "download again) and run the same command again") from None
        raise AudioclsError(f"{archive}: extraction failed ({error}); delete it and download "
                            "again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return targets
