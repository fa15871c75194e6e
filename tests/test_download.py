"""Downloads offline: file:// and a loopback HTTP server with Range; extraction that cannot escape."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import tone, write_wav

from audiocls_utils.engine.commands.cli import main
from audiocls_utils.engine.commands.download import download, extract_archive
from audiocls_utils.errors import AudioclsError
from audiocls_utils.files import file_sha256

PAYLOAD = bytes(range(256)) * 4000  # 1,024,000 bytes: more than one read chunk
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_file_sha256_reads_files_of_any_size(tmp_path: Path) -> None:
    for size in (0, 1, 1 << 20, 2_500_000):  # empty, tiny, exactly one chunk, several chunks
        path = tmp_path / f"{size}.bin"
        path.write_bytes((PAYLOAD * 3)[:size])
        assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


class Server:
    """A loopback HTTP server for one payload: Range support, and a first answer cut short."""

    def __init__(self, payload: bytes, ranges: bool = True, cut_first_at: int | None = None):
        self.payload, self.ranges, self.cut_first_at = payload, ranges, cut_first_at
        self.range_headers: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.range_headers.append(self.headers.get("Range"))
                if self.path != "/genres.tar.gz":
                    self.send_error(404)
                    return
                start = 0
                if server.ranges and self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
                    if start >= len(server.payload):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                else:
                    self.send_response(200)
                body = server.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_first_at is not None and len(server.range_headers) == 1:
                    self.wfile.write(body[: server.cut_first_at])  # then the connection drops
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/genres.tar.gz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_file_url_download_is_verified_and_renamed_into_place(tmp_path: Path) -> None:
    source = tmp_path / "genres.tar.gz"
    source.write_bytes(PAYLOAD)
    target = download(source.as_uri(), tmp_path / "out" / "genres.tar.gz", sha256=PAYLOAD_SHA,
                      expected_size=len(PAYLOAD), progress=False)
    assert target.read_bytes() == PAYLOAD
    assert sorted(p.name for p in target.parent.iterdir()) == ["genres.tar.gz"]  # no .part left
    again = download("http://127.0.0.1:9/never-asked", target, sha256=PAYLOAD_SHA.upper(),
                     progress=False)  # already there and verified: no network needed
    assert again == target


def test_wrong_checksum_or_size_deletes_the_download(tmp_path: Path) -> None:
    source = tmp_path / "a.tar.gz"
    source.write_bytes(PAYLOAD)
    wrong = "0" * 64
    with pytest.raises(AudioclsError, match=f"SHA-256 {PAYLOAD_SHA} does not match .*{wrong}"):
        download(source.as_uri(), tmp_path / "b.tar.gz", sha256=wrong, progress=False)
    with pytest.raises(AudioclsError, match=f"gave {len(PAYLOAD)} bytes, expected 5"):
        download(source.as_uri(), tmp_path / "b.tar.gz", expected_size=5, progress=False)
    assert not (tmp_path / "b.tar.gz").exists() and not (tmp_path / "b.tar.gz.part").exists()


def test_interrupted_http_download_resumes_with_a_range_request(tmp_path: Path) -> None:
    target = tmp_path / "genres.tar.gz"
    with Server(PAYLOAD, cut_first_at=300_000) as server:
        with pytest.raises(AudioclsError, match="run the same command again to resume"):
            download(server.url, target, sha256=PAYLOAD_SHA, progress=False)
        assert (tmp_path / "genres.tar.gz.part").stat().st_size == 300_000
        download(server.url, target, sha256=PAYLOAD_SHA, progress=False)
    assert server.range_headers == [None, "bytes=300000-"]
    assert target.read_bytes() == PAYLOAD


def test_server_without_range_support_restarts_from_zero(tmp_path: Path) -> None:
    (tmp_path / "genres.tar.gz.part").write_bytes(b"stale bytes from elsewhere")
    with Server(PAYLOAD, ranges=False) as server:
        target = download(server.url, tmp_path / "genres.tar.gz", sha256=PAYLOAD_SHA,
                          progress=False)
    assert server.range_headers == ["bytes=26-"]
    assert target.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_without_downloading_again(tmp_path: Path) -> None:
    (tmp_path / "genres.tar.gz.part").write_bytes(PAYLOAD)
    with Server(PAYLOAD) as server:  # answers 416: nothing after the last byte
        target = download(server.url, tmp_path / "genres.tar.gz", sha256=PAYLOAD_SHA,
                          progress=False)
    assert target.read_bytes() == PAYLOAD


def test_no_network_names_the_url_and_the_way_around_it(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/genres.tar.gz"
    with pytest.raises(AudioclsError, match=rf"Cannot reach {url} .*file:///path/to/genres\.tar\.gz"):
        download(url, tmp_path / "genres.tar.gz", progress=False)
    with Server(PAYLOAD) as server, pytest.raises(AudioclsError, match="HTTP 404"):
        download(server.url.replace("genres", "other"), tmp_path / "x.tar.gz", progress=False)
    with pytest.raises(AudioclsError, match="No such file.*check the path"):
        download((tmp_path / "absent.tar.gz").as_uri(), tmp_path / "x.tar.gz", progress=False)
    with pytest.raises(AudioclsError, match="is not a URL"):
        download("genres.tar.gz", tmp_path / "x.tar.gz", progress=False)


def test_a_silent_server_times_out_instead_of_hanging(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/genres.tar.gz"
        with pytest.raises(AudioclsError, match="Cannot reach .*timed out"):
            download(url, tmp_path / "genres.tar.gz", timeout=0.3, progress=False)


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """Write a .tar.gz with the given members (data for regular files)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def test_extraction_writes_the_tree_and_keeps_inside_links(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "ok.tar.gz", [
        (_info("genres", tarfile.DIRTYPE), None),
        (_info("genres/blues/blues.00000.wav"), b"RIFF"),
        (_info("genres/blues.mf"), b"blues/blues.00000.wav\tblues\n"),
        (_info("genres/latest", tarfile.SYMTYPE, "blues"), None),
        (_info("genres/copy.mf", tarfile.LNKTYPE, "genres/blues.mf"), None),
    ])
    dest = tmp_path / "dest"
    assert extract_archive(archive, dest) == [dest / "genres"]
    assert (dest / "genres" / "latest" / "blues.00000.wav").read_bytes() == b"RIFF"
    assert (dest / "genres" / "copy.mf").read_text().startswith("blues/")
    assert sorted(p.name for p in dest.iterdir()) == ["genres"]  # no staging folder left
    with pytest.raises(AudioclsError, match="genres already exists"):
        extract_archive(archive, dest)


@pytest.mark.parametrize(("member", "data", "message"), [
    (_info("../escaped.txt"), b"x", "climbs out"),
    (_info("genres/../../escaped.txt"), b"x", "climbs out"),
    (_info("/tmp/audiocls-escaped.txt"), b"x", "absolute path"),
    (_info("genres/evil", tarfile.SYMTYPE, "../.."), None, "points outside"),
    (_info("genres/evil", tarfile.SYMTYPE, "/etc"), None, "points outside"),
    (_info("genres/evil", tarfile.LNKTYPE, "../escaped.txt"), None, "climbs out"),
    (_info("genres/tty", tarfile.CHRTYPE), None, "device file"),
    (_info("genres/pipe", tarfile.FIFOTYPE), None, "device file"),
])
def test_unsafe_archives_are_refused_before_anything_is_written(
    tmp_path: Path, member: tarfile.TarInfo, data: bytes | None, message: str
) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", [(_info("genres/a.wav"), b"RIFF"), (member, data)])
    dest = tmp_path / "deep" / "dest"
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(AudioclsError, match=message):
        extract_archive(archive, dest)
    assert sorted(tmp_path.rglob("*")) == before  # not even dest was created
    assert not Path("/tmp/audiocls-escaped.txt").exists()


def test_zip_archives_extract_and_traversal_is_refused(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.zip", tmp_path / "bad.zip"
    with zipfile.ZipFile(good, "w") as zipped:
        zipped.writestr("Data/genres_original/rock/rock.00000.wav", b"RIFF")
    with zipfile.ZipFile(bad, "w") as zipped:
        zipped.writestr("Data/ok.txt", b"ok")
        zipped.writestr("../escaped.txt", b"x")
    assert extract_archive(good, tmp_path / "a") == [tmp_path / "a" / "Data"]
    with pytest.raises(AudioclsError, match="climbs out"):
        extract_archive(bad, tmp_path / "b")
    assert not (tmp_path / "b").exists() and not (tmp_path / "escaped.txt").exists()


def _genres_archive(folder: Path, genres: tuple[str, ...] = ("blues", "rock")) -> Path:
    """Write folder/genres.tar.gz, GTZAN's layout with one short clip per genre; return it."""
    tree = folder / "source"
    for genre in genres:
        write_wav(tree / "genres" / genre / f"{genre}.00000.wav", tone(300, 0.05))
    archive = folder / "genres.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "genres", arcname="genres")
    return archive


def test_a_corrupt_archive_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "genres.tar.gz").write_bytes(PAYLOAD[:1000])
    with pytest.raises(AudioclsError, match="not a readable"):
        extract_archive(tmp_path / "genres.tar.gz", tmp_path / "dest")


def test_download_command_fetches_verifies_extracts_and_says_what_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = _genres_archive(tmp_path)
    dest = tmp_path / "gtzan"
    args = ["download", "gtzan", "--dest", str(dest), "--url", archive.as_uri(), "--sha256",
            file_sha256(archive)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert (dest / "genres" / "rock" / "rock.00000.wav").is_file()
    assert f"audiocls prepare --data-dir {dest} --out {dest / 'manifest.csv'} --split filtered" in text
    assert main(args) == 0  # a second run verifies and leaves the extracted tree alone
    assert "already downloaded (SHA-256 verified)" in capsys.readouterr().out

    status = main(["download", "gtzan", "--dest", str(tmp_path / "x"), "--url", archive.as_uri(),
                   "--sha256", "abc"])
    assert status == 2 and "not a SHA-256" in capsys.readouterr().err
    status = main(["download", "gtzan", "--dest", str(tmp_path / "y"), "--url", archive.as_uri()])
    assert status == 0 and "integrity cannot be checked" in capsys.readouterr().out


def test_a_genres_folder_that_is_not_the_archive_extracted_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: a genres/ holding only a readme was "already extracted", and nothing was.
    archive = _genres_archive(tmp_path)
    dest = tmp_path / "gtzan"
    (dest / "genres").mkdir(parents=True)
    (dest / "genres" / "README.txt").write_text("GTZAN goes here\n")
    status = main(["download", "gtzan", "--dest", str(dest), "--url", archive.as_uri()])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert (f"{dest / 'genres'} lacks 4 of the files in {dest / 'genres.tar.gz'} (e.g. "
            "genres/blues), so it is no complete copy of it; delete it (or choose another --dest) "
            "to extract again") in err
    assert sorted(p.name for p in (dest / "genres").iterdir()) == ["README.txt"]


def test_a_full_disk_keeps_the_part_file_and_says_how_much_to_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from audiocls_utils.engine.commands import download as download_module

    source = tmp_path / "genres.tar.gz"
    source.write_bytes(PAYLOAD)
    real_open = open

    class FullDisk:
        """A file that takes 1000 bytes, then reports a full disk (ENOSPC)."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            self.file = real_open(*args, **kwargs)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

        def write(self, chunk: bytes) -> None:
            self.file.write(chunk[:1000])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download_module, "open", FullDisk, raising=False)
    target = tmp_path / "out" / "genres.tar.gz"
    with pytest.raises(AudioclsError, match=r"genres.tar.gz.part is full after 0.0 MB: free 1 MB "
                                            r"more and run the same command again to resume"):
        download(source.as_uri(), target, progress=False)
    assert (tmp_path / "out" / "genres.tar.gz.part").stat().st_size == 1000  # kept to resume
    assert not target.exists()


def test_download_without_dest_lands_where_the_chapters_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from audiocls_utils import data, gtzan

    archive = _genres_archive(tmp_path, ("blues",))
    folder = tmp_path / "course"
    monkeypatch.setattr(data, "course_root", lambda: folder)
    assert main(["download", "gtzan", "--url", archive.as_uri()]) == 0
    assert (folder / gtzan.DATA_DIR / "genres" / "blues" / "blues.00000.wav").is_file()
    assert gtzan.find_gtzan(folder) == folder / gtzan.DATA_DIR
    assert "the chapters will find it there" in capsys.readouterr().out

    assert main(["download", "gtzan", "--dest", str(tmp_path / "elsewhere"), "--url",
                 archive.as_uri()]) == 0
    assert (f"the chapters look in {folder / gtzan.DATA_DIR}: move it there, or set "
            f"AUDIOCLS_DATA={tmp_path / 'elsewhere'}") in capsys.readouterr().out


@pytest.mark.parametrize("url", ["htp://example.com/genres.tar.gz", "http//example.com/g.tar.gz",
                                 "https:///genres.tar.gz", "https://exa mple.com/genres.tar.gz",
                                 "http://[::1/genres.tar.gz"])
def test_a_malformed_url_is_called_malformed_not_a_network_problem(
        tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["download", "gtzan", "--dest", str(tmp_path), "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--url {url!r} is malformed" in err
    assert "network" not in err and "reach" not in err


@pytest.mark.parametrize(("content", "says"), [
    (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64), "it is a WAV audio file"),
    (b"<!DOCTYPE html><html><body>Sign in</body></html>", "it is a web page (HTML)"),
    (b"Hello, no archive here", "its first bytes are b'Hello, no archiv'"),
])
def test_a_download_that_is_no_archive_says_what_it_is_in_one_line(
        tmp_path: Path, content: bytes, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "genres.tar.gz"
    source.write_bytes(content)
    assert main(["download", "gtzan", "--dest", str(tmp_path / "dest"), "--url",
                 source.as_uri()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"not a readable .tar.gz/.tgz/.tar/.zip archive ({says})" in err


def test_a_full_disk_while_extracting_says_free_space_not_download_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from audiocls_utils.engine.commands import download as download_module

    def full(archive: Path, folder: Path) -> None:
        (folder / "genres").mkdir()
        raise OSError(errno.ENOSPC, "No space left on device")

    archive = _tar(tmp_path / "genres.tar.gz", [(_info("genres/a.wav"), b"x")])
    monkeypatch.setattr(download_module, "_extract_all", full)
    with pytest.raises(AudioclsError) as error:
        extract_archive(archive, tmp_path / "dest")
    assert "no space left on the disk while extracting" in str(error.value)
    assert "nothing to download again" in str(error.value)
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == []  # staging removed


def _fsdd_archive(folder: Path, takes: int = 2) -> tuple[Path, str]:
    """Write folder/fsdd.tar.gz shaped like FSDD's GitHub archive (a few short recordings, a
    README); return it and the content digest of its recordings."""
    from audiocls_utils.fsdd import recordings_digest

    tree = folder / "source" / "free-spoken-digit-dataset-0123abc"
    for digit in (0, 1):
        for take in range(takes):
            write_wav(tree / "recordings" / f"{digit}_ann_{take}.wav", tone(300 + 100 * digit, 0.05),
                      sample_rate=8000)
    (tree / "README.md").write_text("FSDD\n")
    archive = folder / "fsdd.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return archive, recordings_digest(tree / "recordings")[0]


def test_fsdd_download_keeps_the_recordings_whose_content_matches_the_pinned_digest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from audiocls_utils import fsdd

    archive, digest = _fsdd_archive(tmp_path)
    monkeypatch.setattr(fsdd, "RECORDINGS_DIGEST", digest)
    dest = tmp_path / "data" / "fsdd"
    assert main(["download", "fsdd", "--dest", str(dest), "--url", archive.as_uri()]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in dest.iterdir()) == ["fsdd.tar.gz", "recordings"]  # no staging
    assert sorted(p.name for p in (dest / "recordings").iterdir()) == [
        "0_ann_0.wav", "0_ann_1.wav", "1_ann_0.wav", "1_ann_1.wav"]
    assert "holds FSDD's 4 recordings (content verified" in out
    assert f"audiocls prepare --data-dir {dest / 'recordings'} --label-pattern fsdd --split group" in out
    # Again: the recordings in place are verified and nothing is downloaded (the URL is unused).
    assert main(["download", "fsdd", "--dest", str(dest), "--url", "http://127.0.0.1:9/x.tar.gz"]) == 0
    assert "holds FSDD's 4 recordings (content verified)" in capsys.readouterr().out
    # The archive's own SHA-256, when given, is checked as for GTZAN.
    status = main(["download", "fsdd", "--dest", str(tmp_path / "other"), "--url",
                   archive.as_uri(), "--sha256", "0" * 64])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "does not match the expected" in err


def test_fsdd_recordings_of_another_version_are_refused_and_nothing_is_extracted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from audiocls_utils import fsdd

    archive, digest = _fsdd_archive(tmp_path)
    monkeypatch.setattr(fsdd, "RECORDINGS_DIGEST", "f" * 64)  # the pinned commit's: not these
    dest = tmp_path / "fsdd"
    assert main(["download", "fsdd", "--dest", str(dest), "--url", archive.as_uri()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (f"the 4 recordings in {archive.as_uri()} do not match FSDD at commit 26eb9aa (content "
            f"digest {digest[:12]}..., expected ffffffffffff...)") in err
    assert sorted(p.name for p in dest.iterdir()) == []  # no recordings, no staging, no archive

    # A recordings folder already there that is not FSDD's is refused, not trusted or replaced.
    (dest / "recordings").mkdir()
    (dest / "recordings" / "0_me_0.wav").write_bytes(b"RIFF")
    assert main(["download", "fsdd", "--dest", str(dest), "--url", archive.as_uri()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "its 1 file(s) are not FSDD's recordings at commit 26eb9aa" in err
    assert [p.name for p in (dest / "recordings").iterdir()] == ["0_me_0.wav"]


def test_pinned_fsdd_digest_matches_the_real_recordings(fsdd: Path) -> None:
    from audiocls_utils.fsdd import NUM_RECORDINGS, RECORDINGS_DIGEST, recordings_digest

    assert recordings_digest(fsdd) == (RECORDINGS_DIGEST, NUM_RECORDINGS)


def test_fsdd_download_without_dest_lands_where_the_chapters_look(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from audiocls_utils import data, fsdd

    archive, digest = _fsdd_archive(tmp_path, takes=1)
    monkeypatch.setattr(fsdd, "RECORDINGS_DIGEST", digest)
    monkeypatch.setattr(data, "course_root", lambda: tmp_path / "course")
    assert main(["download", "fsdd", "--url", archive.as_uri()]) == 0
    recordings = tmp_path / "course" / "data" / "fsdd" / "recordings"
    assert sorted(p.name for p in recordings.iterdir()) == ["0_ann_0.wav", "1_ann_0.wav"]
    assert f"AUDIOCLS_DATA={recordings}" in capsys.readouterr().out


def test_an_archive_of_the_real_recordings_passes_the_pinned_digest(
        fsdd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Shaped as GitHub's archive at the pinned commit: <repo>-<commit>/recordings/*.wav, README.
    from audiocls_utils.fsdd import COMMIT

    archive = tmp_path / f"{COMMIT}.tar.gz"
    top = f"free-spoken-digit-dataset-{COMMIT}"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(fsdd, arcname=f"{top}/recordings")
        readme = tarfile.TarInfo(f"{top}/README.md")
        readme.size = 5
        tar.addfile(readme, io.BytesIO(b"FSDD\n"))
    dest = tmp_path / "fsdd"
    assert main(["download", "fsdd", "--dest", str(dest), "--url", archive.as_uri()]) == 0
    assert "holds FSDD's 3000 recordings (content verified" in capsys.readouterr().out
    assert len(list((dest / "recordings").glob("*.wav"))) == 3000
