"""Content type of a file from its first bytes and its name. Pure.

The bytes decide when they carry a known signature (a ``.jpg`` that is really a PNG is
``image/png``); otherwise the name's extension; otherwise text or not. ``HEAD_BYTES`` is
how much of the start of a file ``sniff`` needs.
"""

from __future__ import annotations

import mimetypes

HEAD_BYTES = 4096

OCTET_STREAM = "application/octet-stream"

# (offset, signature, type); the first match wins, so longer signatures come first.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"BZh", "application/x-bzip2"),
    (0, b"\xfd7zXZ\x00", "application/x-xz"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"\x28\xb5\x2f\xfd", "application/zstd"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar"),
    (0, b"OggS", "application/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"\x1a\x45\xdf\xa3", "video/webm"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
    (0, b"\x00asm", "application/wasm"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"SQLite format 3\x00", "application/vnd.sqlite3"),
    (0, b"wOFF", "font/woff"),
    (0, b"wOF2", "font/woff2"),
    (257, b"ustar", "application/x-tar"),
)

# Formats that are zip files inside: the extension says which one.
_ZIP_FAMILY = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".epub": "application/epub+zip",
    ".jar": "application/java-archive",
    ".apk": "application/vnd.android.package-archive",
    ".whl": "application/zip",
}


_TEXT_FORMATS = frozenset(
    {"application/json", "application/xml", "application/javascript", "image/svg+xml"}
)


def sniff(head: bytes, name: str | None = None) -> str:
    """The content type of a file starting with ``head``, named ``name`` (may be None)."""
    ext = _extension(name)
    riff = _riff(head)
    if riff:
        return riff
    if head[4:8] == b"ftyp":
        return _ftyp(head[8:12])
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _ZIP_FAMILY.get(ext, "application/zip")
    for offset, signature, kind in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return kind
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and ext == ".mp3":
        return "audio/mpeg"  # an MPEG audio frame without an ID3 tag
    guessed = mimetypes.guess_type("x" + ext, strict=False)[0] if ext else None
    text = _text_kind(head)
    if guessed:
        # A name saying text over bytes that are not text is not believed.
        if text is None and (guessed.startswith("text/") or guessed in _TEXT_FORMATS):
            return OCTET_STREAM
        return guessed
    return text or OCTET_STREAM


def _extension(name: str | None) -> str:
    if not name:
        return ""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:].lower() if dot > 0 else ""


def _riff(head: bytes) -> str | None:
    if head[:4] != b"RIFF":
        return None
    return {b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo", b"WEBP": "image/webp"}.get(
        head[8:12], OCTET_STREAM
    )


def _ftyp(brand: bytes) -> str:
    if brand in (b"heic", b"heix", b"heim", b"heis"):
        return "image/heic"
    if brand in (b"avif", b"avis"):
        return "image/avif"
    if brand == b"qt  ":
        return "video/quicktime"
    if brand in (b"M4A ", b"M4B "):
        return "audio/mp4"
    return "video/mp4"


def _text_kind(head: bytes) -> str | None:
    """``text/...`` when ``head`` reads as UTF-8 text (possibly cut mid-character)."""
    if not head:
        return "text/plain"
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return "text/plain"
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of head
            return None
        text = head[: exc.start].decode("utf-8")
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f\b\x1b")
    if controls > len(text) // 100:
        return None
    start = text.lstrip().lower()
    if start.startswith(("<!doctype html", "<html")):
        return "text/html"
    if start.startswith("<svg") or (start.startswith("<?xml") and "<svg" in start):
        return "image/svg+xml"
    if start.startswith("<?xml"):
        return "application/xml"
    if start.startswith(("{", "[")) and _looks_like_json(text):
        return "application/json"
    return "text/plain"


def _looks_like_json(text: str) -> bool:
    import json

    try:
        json.loads(text)
    except ValueError:
        return False
    return True
