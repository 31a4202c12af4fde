"""URL ingestion's pure parts: URL normalisation, the address guard and its allow-list, and
the guarded HTTP client against a local server (redirects, refusals before connecting).

No test here sends traffic anywhere but loopback, and none resolves a real name through DNS:
names are resolved by a table handed to the guard, or are ``localhost`` (the hosts file).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from media_server import MediaServer, Route, json_ld_page, listener

from tonewire.audio.fetch import Downloading, FetchSettings, Resolved, fetch, part_path
from tonewire.audio.guarded_http import GuardedHttp
from tonewire.audio.ssrf import AddressGuard, Allowlist, refusal_reason, unwrap
from tonewire.audio.urls import parse_source_url
from tonewire.config import Settings
from tonewire.errors import (
    DownloadTimeout,
    DownloadTooLarge,
    ExtractionError,
    InvalidUrl,
    TooLong,
    UrlNotAllowed,
    VideoUnavailable,
)

VID = "dQw4w9WgXcQ"
CANON = f"https://www.youtube.com/watch?v={VID}"


# -- URL normalisation -------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    f"https://www.youtube.com/watch?v={VID}",
    f"http://youtube.com/watch?v={VID}",
    f"https://m.youtube.com/watch?v={VID}&feature=share",
    f"https://music.youtube.com/watch?v={VID}&list=RDAMVM{VID}",
    f"https://www.youtube.com/watch?feature=youtu.be&v={VID}&t=42s",
    f"https://youtu.be/{VID}",
    f"https://youtu.be/{VID}?si=abcdEFGH&t=10",
    f"youtu.be/{VID}",
    f"www.youtube.com/watch?v={VID}",
    f"https://www.youtube.com/shorts/{VID}",
    f"https://youtube.com/shorts/{VID}?feature=share",
    f"https://www.youtube.com/embed/{VID}?autoplay=1",
    f"https://www.youtube-nocookie.com/embed/{VID}",
    f"https://www.youtube.com/live/{VID}",
    f"https://www.youtube.com/v/{VID}",
    f"  HTTPS://WWW.YOUTUBE.COM/watch?v={VID}#t=3  ",
    f"https://www.youtube.com./watch?v={VID}",
])
def test_youtube_forms_normalise_to_one_canonical_url(raw: str) -> None:
    src = parse_source_url(raw)
    assert (src.kind, src.canonical, src.video_id) == ("youtube", CANON, VID)
    assert (src.host, src.port) == ("www.youtube.com", 443)


@pytest.mark.parametrize(("raw", "why"), [
    ("", "empty"),
    ("   ", "empty"),
    ("https://www.youtube.com/watch?v=short", "not a YouTube video id"),
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQQ", "not a YouTube video id"),
    ("https://www.youtube.com/watch", "not a YouTube video link"),
    ("https://www.youtube.com/watch?list=PL123", "not a YouTube video link"),
    ("https://www.youtube.com/playlist?list=PL123", "playlists"),
    ("https://www.youtube.com/@somechannel", "not a YouTube video link"),
    ("https://youtu.be/", "not a YouTube video link"),
    ("https://youtu.be/abc$efghijk", "not a YouTube video id"),
    ("ftp://example.com/a.mp3", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("javascript:alert(1)", "only http and https"),
    ("data:audio/wav;base64,AAAA", "only http and https"),
    ("http://user:pw@example.com/a.mp3", "credentials"),
    ("http:///a.mp3", "no host"),
    ("http://exa mple.com/a.mp3", "spaces"),
    ("http://example.com/a\x00.mp3", "control"),
    ("http://example.com:99999/a.mp3", "valid URL"),
    ("http://[::1/a.mp3", "valid URL"),
    ("https://example.com/" + "a" * 3000, "longer than"),
])
def test_invalid_urls_are_refused_with_a_reason(raw: str, why: str) -> None:
    with pytest.raises(InvalidUrl, match=why) as info:
        parse_source_url(raw)
    assert info.value.code == "INVALID_URL"


@pytest.mark.parametrize(("raw", "canonical", "host", "port"), [
    ("http://127.0.0.1:8000/a/b.mp3", "http://127.0.0.1:8000/a/b.mp3", "127.0.0.1", 8000),
    ("HTTP://Example.COM/Song.MP3?x=1#frag", "http://example.com/Song.MP3?x=1",
     "example.com", 80),
    ("https://example.com:443/a.ogg", "https://example.com/a.ogg", "example.com", 443),
    ("http://example.com:80", "http://example.com/", "example.com", 80),
    ("https://example.com:8443/a.ogg", "https://example.com:8443/a.ogg", "example.com", 8443),
    ("http://[::1]:9000/a.wav", "http://[::1]:9000/a.wav", "::1", 9000),
    ("https://bücher.example/x.mp3", "https://xn--bcher-kva.example/x.mp3",
     "xn--bcher-kva.example", 443),
])
def test_other_urls_are_normalised(raw: str, canonical: str, host: str, port: int) -> None:
    src = parse_source_url(raw)
    assert (src.kind, src.canonical, src.host, src.port) == ("http", canonical, host, port)
    assert len(src.video_id) == 16
    assert parse_source_url(canonical).video_id == src.video_id  # same resource, same id


# -- the address guard -------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "private"),  # reserved for future use (Python counts it private)
    ("255.255.255.255", "private"),
    ("100.64.0.1", "shared (carrier-grade NAT)"),
    ("192.0.2.1", "private"),  # TEST-NET-1, documentation
    ("198.18.0.1", "private"),  # benchmarking
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::", "link-local"),  # 6to4 of 169.254.169.254
])
def test_refused_address_classes(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", [
    "93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8",
    "64:ff9b::808:808",
])
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_unwrap_finds_the_ipv4_inside() -> None:
    assert unwrap(ipaddress.ip_address("::ffff:1.2.3.4")) == ipaddress.ip_address("1.2.3.4")
    assert unwrap(ipaddress.ip_address("2002:0102:0304::")) == ipaddress.ip_address("1.2.3.4")
    assert unwrap(ipaddress.ip_address("64:ff9b::0102:0304")) == ipaddress.ip_address("1.2.3.4")
    assert unwrap(ipaddress.ip_address("2001:db8::1")) == ipaddress.ip_address("2001:db8::1")


def table(names: dict[str, list[str]]) -> AddressGuard:
    """A guard whose resolver is ``names`` (no DNS)."""
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in names:
            raise OSError(f"{host} does not resolve")
        return names[host]
    return AddressGuard(Allowlist(), resolver=resolve)


NAMES = {
    "public.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "internal.example": ["10.0.0.5"],
    "metadata.example": ["169.254.169.254"],
    "mixed.example": ["93.184.215.14", "192.168.0.10"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "nowhere.example": [],
}


def with_allowlist(entries: list[str]) -> AddressGuard:
    guard = table(NAMES)
    return AddressGuard(Allowlist.parse(entries), resolver=guard.resolver)


def test_names_resolving_to_private_addresses_are_refused() -> None:
    guard = table(NAMES)
    assert [str(a) for a in guard.resolve("public.example", 443)] == NAMES["public.example"]
    for host in ("internal.example", "metadata.example", "mixed.example", "mapped.example"):
        with pytest.raises(UrlNotAllowed, match=host):
            guard.resolve(host, 80)
    with pytest.raises(OSError, match="no address"):
        guard.resolve("nowhere.example", 80)
    with pytest.raises(OSError, match="does not resolve"):
        guard.resolve("unknown.example", 80)


def test_address_literals_are_checked_without_resolving() -> None:
    guard = AddressGuard(resolver=lambda h, p: pytest.fail(f"resolved {h}"))
    for literal in ("127.0.0.1", "::1", "[::1]", "10.0.0.1", "::ffff:192.168.0.1", "0.0.0.0"):
        with pytest.raises(UrlNotAllowed):
            guard.resolve(literal, 80)
    assert [str(a) for a in guard.resolve("8.8.8.8", 80)] == ["8.8.8.8"]


def test_localhost_resolves_through_the_hosts_file_and_is_refused() -> None:
    with pytest.raises(UrlNotAllowed, match="loopback"):
        AddressGuard().resolve("localhost", 80)


def test_allowlist_addresses_ranges_and_hosts() -> None:
    guard = with_allowlist(["127.0.0.1", "10.0.0.0/8", "metadata.example"])
    assert [str(a) for a in guard.resolve("127.0.0.1", 80)] == ["127.0.0.1"]
    assert guard.resolve("::ffff:127.0.0.1", 80)  # the mapped spelling of an allowed address
    assert guard.resolve("mapped.example", 80)  # ::ffff:127.0.0.1 is 127.0.0.1
    assert guard.resolve("internal.example", 80)  # 10.0.0.5 in 10.0.0.0/8
    assert guard.resolve("10.255.0.1", 80)
    assert guard.resolve("metadata.example", 80)  # an allow-listed name, whatever it resolves to
    with pytest.raises(UrlNotAllowed):
        guard.resolve("127.0.0.2", 80)  # the allow-list names one address, not the range
    with pytest.raises(UrlNotAllowed):
        guard.resolve("169.254.169.254", 80)  # the name is allowed, not its address
    with pytest.raises(UrlNotAllowed):
        guard.resolve("mixed.example", 80)  # one refused address refuses the name
    with pytest.raises(UrlNotAllowed):
        guard.resolve("::1", 80)


def test_allowlist_ipv6_range() -> None:
    guard = with_allowlist(["fd00::/8", "[::1]"])
    assert guard.resolve("fd12::5", 80)
    assert guard.resolve("::1", 80)
    with pytest.raises(UrlNotAllowed):
        guard.resolve("fe80::1", 80)


def test_allowlist_parsing() -> None:
    allow = Allowlist.parse([" 127.0.0.1 ", "", "10.0.0.0/8", "Media.Internal.", "::1",
                             "192.168.1.7/24"])
    assert allow.hosts == frozenset({"media.internal"})
    assert [str(n) for n in allow.networks] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128",
                                                "192.168.1.0/24"]
    for bad in ("not a host!", "10.0.0.0/33", "http://x.example", "a..b"):
        with pytest.raises(ValueError, match="allow-list entry"):
            Allowlist.parse([bad])


def test_settings_parse_the_allowlist_like_cors_origins() -> None:
    s = Settings(url_allowlist="127.0.0.1, 10.0.0.0/8,media.local ,")  # type: ignore[arg-type]
    assert s.url_allowlist == ["127.0.0.1", "10.0.0.0/8", "media.local"]
    assert s.fetch_settings().allowlist == ("127.0.0.1", "10.0.0.0/8", "media.local")
    assert Settings().url_allowlist == []
    with pytest.raises(ValueError, match="allow-list entry"):
        Settings(url_allowlist="10.0.0.0/99")  # type: ignore[arg-type]


# -- the guarded client and the fetch, against a local server ---------------------------------

@pytest.fixture
def media() -> Iterator[MediaServer]:
    with MediaServer() as server:
        yield server


LOOPBACK = AddressGuard(Allowlist.parse(["127.0.0.1"]))


def test_redirect_to_a_refused_address_is_never_connected(media: MediaServer) -> None:
    with listener("127.0.0.2") as other:
        target = f"http://127.0.0.2:{other.port}/x.wav"
        media.add("/hop", Route(status=302, headers={"Location": target}))
        media.add("/hop2", Route(status=307, headers={"Location": "/hop"}))
        client = GuardedHttp(LOOPBACK, timeout_s=5)
        with pytest.raises(UrlNotAllowed, match=r"127\.0\.0\.2"):
            client.open(media.url("/hop2"))
        assert [h.path for h in media.hits] == ["/hop2", "/hop"]
        assert other.connections() == 0


def test_redirects_within_the_allowlist_are_followed(media: MediaServer) -> None:
    media.add("/a.wav", Route(body=b"RIFF1234", content_type="audio/wav"))
    media.add("/old", Route(status=301, headers={"Location": media.url("/a.wav")}))
    opened = GuardedHttp(LOOPBACK, timeout_s=5).open(media.url("/old"))
    try:
        assert (opened.url, opened.response.status) == (media.url("/a.wav"), 200)
        assert opened.response.read() == b"RIFF1234"
    finally:
        opened.close()


def test_redirect_loops_end(media: MediaServer) -> None:
    media.add("/loop", Route(status=302, headers={"Location": "/loop"}))
    with pytest.raises(VideoUnavailable, match="redirects"):
        GuardedHttp(LOOPBACK, timeout_s=5).open(media.url("/loop"))


def test_redirect_to_another_scheme_is_refused(media: MediaServer) -> None:
    media.add("/ftp", Route(status=302, headers={"Location": "ftp://127.0.0.1/x"}))
    with pytest.raises(InvalidUrl):
        GuardedHttp(LOOPBACK, timeout_s=5).open(media.url("/ftp"))


def test_a_deadline_bounds_the_exchange() -> None:
    client = GuardedHttp(LOOPBACK, timeout_s=5, deadline=time.monotonic() - 1)
    with pytest.raises(DownloadTimeout):
        client.remaining()


def settings(**kw: object) -> FetchSettings:
    base: dict[str, object] = {"max_bytes": 200_000, "timeout_s": 20.0,
                               "socket_timeout_s": 5.0, "max_duration_s": 600.0,
                               "allowlist": ("127.0.0.1",)}
    base.update(kw)
    return FetchSettings(**base)  # type: ignore[arg-type]


def test_fetch_a_direct_link(media: MediaServer, tmp_path: Path) -> None:
    body = b"RIFF" + bytes(range(256)) * 400
    url = media.add("/tone.wav", Route(body=body, content_type="audio/wav"))
    dest = tmp_path / "out.download"
    events = list(fetch(parse_source_url(url), dest, settings(max_bytes=len(body))))
    assert isinstance(events[0], Resolved)
    assert events[0].info.title == "tone"
    downloads = [e for e in events if isinstance(e, Downloading)]
    assert downloads[0] == Downloading(0, len(body))
    assert downloads[-1] == Downloading(len(body), len(body))
    assert dest.read_bytes() == body
    assert not part_path(dest).exists()


def test_fetch_reads_page_metadata_and_refuses_too_long_before_downloading(
        media: MediaServer, tmp_path: Path) -> None:
    media.add("/long.wav", Route(body=b"x" * 1000, content_type="audio/wav"))
    page = json_ld_page(title="Long One", duration_s=7200, content_url=media.url("/long.wav"))
    url = media.add("/long.html", Route(body=page, content_type="text/html"))
    with pytest.raises(TooLong, match="7200 s"):
        list(fetch(parse_source_url(url), tmp_path / "x", settings()))
    assert media.requested("/long.wav") == []


def test_fetch_size_limit_with_and_without_a_length(media: MediaServer, tmp_path: Path) -> None:
    body = b"\0" * 300_000
    sized = media.add("/big.wav", Route(body=body, content_type="audio/wav"))
    unsized = media.add("/big2.wav", Route(body=body, content_type="audio/wav",
                                           send_length=False))
    for url in (sized, unsized):
        dest = tmp_path / "big.download"
        with pytest.raises(DownloadTooLarge):
            list(fetch(parse_source_url(url), dest, settings(max_bytes=100_000)))
        assert not dest.exists() and not part_path(dest).exists()


def test_fetch_failures_are_named(media: MediaServer, tmp_path: Path) -> None:
    media.add("/nothing.html", Route(body=b"<html><body>no media</body></html>",
                                     content_type="text/html"))
    cases = [
        (media.url("/missing.wav"), VideoUnavailable, "404"),
        (media.url("/nothing.html"), ExtractionError, "(?i)unsupported url"),
        (f"http://127.0.0.1:{free_loopback_port()}/x.wav", VideoUnavailable, "reach"),
        ("http://127.0.0.2/x.wav", UrlNotAllowed, r"127\.0\.0\.2"),
    ]
    for url, error, match in cases:
        with pytest.raises(error, match=match):
            list(fetch(parse_source_url(url), tmp_path / "x", settings()))


def test_fetch_times_out_on_a_stalled_body(media: MediaServer, tmp_path: Path) -> None:
    url = media.add("/stall.wav", Route(body=b"\0" * 100_000, content_type="audio/wav",
                                        trickle=(1000, 0.5)))
    dest = tmp_path / "stall.download"
    with pytest.raises(DownloadTimeout):
        list(fetch(parse_source_url(url), dest, settings(timeout_s=1.5, socket_timeout_s=1.0)))
    assert not part_path(dest).exists()


def free_loopback_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pages_yt_dlp_reads_are_bounded_in_time_and_size(media: MediaServer,
                                                         tmp_path: Path) -> None:
    html = b"<html><head><title>t</title></head><body>" + b"x" * 300_000 + b"</body></html>"
    slow = media.add("/slow.html", Route(body=html, content_type="text/html",
                                         trickle=(2000, 0.2)))
    huge = media.add("/huge.html", Route(body=html, content_type="text/html"))
    with pytest.raises(DownloadTimeout):
        list(fetch(parse_source_url(slow), tmp_path / "x",
                   settings(timeout_s=1.5, socket_timeout_s=1.0)))
    with pytest.raises(DownloadTooLarge):
        list(fetch(parse_source_url(huge), tmp_path / "x", settings(max_bytes=100_000)))


def test_yt_dlp_sends_only_through_the_guarded_handler() -> None:
    """If a yt-dlp release stops building its requests this way, this fails loudly."""
    from tonewire.audio.ytdlp import _new_ydl

    ydl = _new_ydl(GuardedHttp(LOOPBACK, timeout_s=5), 1000)
    try:
        assert list(ydl._request_director.handlers) == ["Guarded"]
        assert ydl.proxies == {"all": "__noproxy__"}
    finally:
        ydl.close()
