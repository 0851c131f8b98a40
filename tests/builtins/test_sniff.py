"""Content-type sniffing: signatures beat names, names beat guesses, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgqueue.builtins import sniff

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


@pytest.mark.parametrize(
    ("head", "name", "kind"),
    [
        (PNG, "cat.png", "image/png"),
        (PNG, "cat.jpg", "image/png"),  # the bytes win over a wrong name
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", None, "image/jpeg"),
        (b"GIF89a\x01\x00", "x", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", None, "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None, "audio/wav"),
        (b"%PDF-1.7\n", "report", "application/pdf"),
        (b"\x00\x00\x00\x18ftypmp42", "clip", "video/mp4"),
        (b"\x00\x00\x00\x18ftypqt  ", None, "video/quicktime"),
        (b"\x00\x00\x00\x18ftypheic", None, "image/heic"),
        (b"PK\x03\x04\x14\x00", "a.zip", "application/zip"),
        (
            b"PK\x03\x04\x14\x00",
            "letter.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (b"\x1f\x8b\x08\x00", "logs.tgz", "application/gzip"),
        (b"\x00" * 257 + b"ustar\x0000", "a.tar", "application/x-tar"),
        (b"hello, world\n", None, "text/plain"),
        (b"a,b,c\n1,2,3\n", "data.csv", "text/csv"),
        (b'{"a": [1, 2]}', None, "application/json"),
        (b"<!DOCTYPE html><html></html>", None, "text/html"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', None, "image/svg+xml"),
        (b"\x00\x01\x02\x03\xfe\xff", None, "application/octet-stream"),
        (b"\x00\x01\x02\x03\xfe\xff", "notes.txt", "application/octet-stream"),
        (b"\x00\x01\x02\x03\xfe\xff", "data.json", "application/octet-stream"),
        (b"\x00\x01\x02\x03\xfe\xff", "song.flac", "audio/flac"),  # names count otherwise
        (b"", "empty", "text/plain"),
        ("naïve café".encode() + b"\xc3", None, "text/plain"),  # cut mid-character
    ],
)
def test_sniff(head: bytes, name: str | None, kind: str) -> None:
    assert sniff(head, name) == kind


@given(st.binary(max_size=600), st.one_of(st.none(), st.text(max_size=30)))
def test_sniff_always_answers_a_type(head: bytes, name: str | None) -> None:
    kind = sniff(head, name)
    assert isinstance(kind, str) and "/" in kind
