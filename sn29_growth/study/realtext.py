"""Real English prose for the growth study, built offline from Debian documentation packages.

The pipeline, every step a plain function:

1. :func:`locate_debs` / :func:`download_debs` find the pinned ``.deb`` files (:data:`PINNED`) and check each
   one's sha256. A ``.deb`` is an ``ar`` archive whose ``data.tar.{xz,gz,bz2}`` holds the files; both are read
   with the standard library (:func:`deb_files`), no ``dpkg`` needed. ``data.tar.zst`` is refused with a clear
   error (the standard library of this Python has no zstd); every pinned package uses xz.
2. :func:`extract_documents` keeps the members a package's :class:`Select` rules name (reST sources, POD,
   manual pages, HTML, plain text) and turns each into plain prose (:func:`to_text`): markup stripped, code
   blocks dropped, paragraphs reflowed to one line each, separated by a blank line.
3. :func:`clean_documents` drops short and non-English documents and exact or near-exact duplicates (the same
   text after lower-casing and removing everything but letters and digits), keeping the first by
   (package, path).
4. :func:`build_corpus` splits by a stable hash of each document's id (``package:path``), trains a byte-level
   BPE on the train part only, caps the total tokens (documents kept in a fixed hash order) and writes a
   :mod:`sn29_growth.train.tokens` folder with the provenance (packages, versions, sha256, licences) beside it.

Same ``.deb`` files and settings give the same bytes: documents are ordered by hashes of their ids, nothing
depends on time or on the file system's listing order, and the BPE trainer is deterministic.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import html
import html.parser
import io
import lzma
import os
import re
import subprocess
import tarfile
import tempfile
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sn29_growth.fields import int_at_least


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


KINDS = ("rst", "pod", "man", "html", "text")
EOS_TOKEN = "<|endoftext|>"


class DebError(ValueError):
    """A ``.deb`` that is missing, corrupt, of an unsupported layout or not the pinned one."""


@dataclass(frozen=True)
class Select:
    """Members whose path (without the leading ``./``) matches ``pattern`` (fnmatch; ``*`` crosses ``/``)."""

    pattern: str
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Select.kind must be one of {KINDS}, got {self.kind!r}")
        if not self.pattern or self.pattern.startswith("/"):
            raise ValueError(f"Select.pattern must be a relative path pattern, got {self.pattern!r}")


@dataclass(frozen=True)
class PinnedPackage:
    """One Debian package: its exact version and ``.deb`` checksum, and which of its files are documents."""

    name: str
    version: str
    sha256: str
    select: tuple[Select, ...]
    exclude: tuple[str, ...] = ()
    copyright_from: str | None = None  # the package whose copyright file covers this one's
    architecture: str = "all"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", self.name):
            raise ValueError(f"PinnedPackage.name is not a Debian package name: {self.name!r}")
        if not self.version or " " in self.version:
            raise ValueError(f"PinnedPackage.version must be a Debian version, got {self.version!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"PinnedPackage.sha256 must be 64 lower-case hex digits ({self.name})")
        if not self.select:
            raise ValueError(f"PinnedPackage.select must name at least one pattern ({self.name})")

    @property
    def filename(self) -> str:
        """The file name ``apt-get download`` gives the ``.deb``."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"

    def kind_of(self, path: str) -> str | None:
        if any(fnmatch.fnmatchcase(path, p) for p in self.exclude):
            return None
        for s in self.select:
            if fnmatch.fnmatchcase(path, s.pattern):
                return s.kind
        return None


def _doc(prefix: str, *rules: tuple[str, str]) -> tuple[Select, ...]:
    return tuple(Select(prefix + pattern, kind) for pattern, kind in rules)


# Debian 12 (bookworm) documentation packages: English prose about software, all in Debian's main archive.
PINNED: tuple[PinnedPackage, ...] = (
    PinnedPackage(
        "apache2-doc",
        "2.4.68-1~deb12u1",
        "cee8fe80ffb5de2744cd690c3d795b489e43a1c44c4e3a634c521642f22d7835",
        _doc("usr/share/doc/apache2-doc/manual/en/", ("*.html", "html")),
    ),
    PinnedPackage(
        "debian-handbook",
        "11.20220922",
        "3d5dbeac1f1afc9c094eab9d0f701f6ecff99c4927d5a4794cf6c85678134faa",
        _doc("usr/share/doc/debian-handbook/html/en-US/", ("*.html", "html")),
    ),
    PinnedPackage(
        "debian-policy",
        "4.6.2.0",
        "ef9d01b625c3b87c3a845c2cd1b66f1a16e9240b2b9e5bee53472a00e8457a39",
        _doc("usr/share/doc/debian-policy/policy.html/_sources/", ("*.txt", "rst")),
    ),
    PinnedPackage(
        "debian-reference-en",
        "2.100",
        "9f31d3a17df505de09689ca255512ea58c1fc47c59bb1b0c7bf1c23362e9743f",
        _doc("usr/share/debian-reference/", ("*.en.html", "html")),
    ),
    PinnedPackage(
        "developers-reference",
        "12.18",
        "0dba82f6fa16e373f2a84ad07e7971aa9264ad2e7d2ae46b37edbc9c5fd57e2e",
        _doc("usr/share/developers-reference/_sources/", ("*.txt", "rst")),
    ),
    PinnedPackage(
        "erlang-doc",
        "1:25.2.3+dfsg-1+deb12u4",
        "7d172cecfdd9c2930b27c776ad226ffcc84670375cf830c79ee41c6944e8a1c8",
        _doc("usr/share/doc/erlang-doc/", ("*.html", "html")),
        exclude=("usr/share/doc/erlang-doc/lib/wx-*", "*/index.html", "*_app.html"),
    ),
    PinnedPackage(
        "freebsd-manpages",
        "12.2-1",
        "2d4a9606bd59d4c71e6d8355dee3d2624b0ebdab79d3ab5e9169ed7fbb0c197a",
        _doc("usr/share/man/man", ("*.gz", "man")),
    ),
    PinnedPackage(
        "git-doc",
        "1:2.39.5-0+deb12u3",
        "3c89668a11053a6bafade3de1f611f4613db31e082af63f43d8c5b69ad8795ec",
        _doc("usr/share/doc/git-doc/", ("*.txt", "text")),
    ),
    PinnedPackage(
        "kicad-doc-en",
        "6.0.11+dfsg-1",
        "20dbe9acb2e6f38d49bd742d4b71bee2dc3e7dbd8c54a7a45ad05a742e5ae834",
        _doc("usr/share/doc/kicad/help/en/", ("*.html", "html")),
    ),
    PinnedPackage(
        "libreoffice-help-en-us",
        "4:7.4.7-1+deb12u14",
        "8faa840285734d6cfe1ed25537b48f07e74bd6412e3917bf8e5f8a653f7b3712",
        _doc("usr/share/libreoffice/help/en-US/text/", ("*.html", "html")),
    ),
    PinnedPackage(
        "libssl-doc",
        "3.0.20-1~deb12u2",
        "288301da4a89227dfbb98fe498894e1f79aeda29d0aae4a84fb7db4fc0d3fba4",
        _doc("usr/share/man/man", ("*.gz", "man")),
    ),
    PinnedPackage(
        "lilypond-doc-html",
        "2.24.1-2",
        "be9fb743e58bd5ad4710146fe05e7c5f447fe4559e42c6acef1916d53e4bec60",
        _doc("usr/share/doc/lilypond/html/Documentation/", ("*-big-page.html", "html")),
        exclude=("*/internals-big-page.html", "*/snippets-big-page.html"),
    ),
    PinnedPackage(
        "linux-doc-6.1",
        "6.1.176-1",
        "0d843674607703b9ef8c1db5e715c38ed52ff23574feabfe0d961d552126859f",
        _doc("usr/share/doc/linux-doc-6.1/Documentation/", ("*.rst.gz", "rst"), ("*.txt.gz", "text")),
        exclude=(
            "usr/share/doc/linux-doc-6.1/Documentation/translations/*",
            "usr/share/doc/linux-doc-6.1/Documentation/devicetree/*",
            "usr/share/doc/linux-doc-6.1/Documentation/ABI/*",
        ),
    ),
    PinnedPackage(
        "llvm-15-doc",
        "1:15.0.6-4",
        "613d2f6c303411508b28775269d4f6c35498905d0f3e2dd39f862191a1faf564",
        _doc("usr/share/doc/llvm-15-doc/html/_sources/", ("*.txt", "rst")),
    ),
    PinnedPackage(
        "manpages",
        "6.03-2",
        "efa1ba4cd19ad7baeae959c9209a7eb74be2ebb858bcabb412597bfc9f588c91",
        _doc("usr/share/man/man", ("*.gz", "man")),
    ),
    PinnedPackage(
        "manpages-dev",
        "6.03-2",
        "96f55cb5e26231d5567c89b692bced63825a14a2d5bd18fdf16ea2ed44eb9838",
        _doc("usr/share/man/man", ("*.gz", "man")),
        copyright_from="manpages",
    ),
    PinnedPackage(
        "nodejs-doc",
        "18.20.4+dfsg-1~deb12u2",
        "9f674d3536be94923bb8720c48ec17bc92b8de62f2954c3172b59a3ada1de65f",
        _doc("usr/share/doc/nodejs/api/", ("*.md.gz", "text")),
        exclude=("*/all.md.gz",),
    ),
    PinnedPackage(
        "octave-doc",
        "7.3.0-2",
        "b27897cc7e3d688daa5cb8f8d1ea47077f3fbd205ce32e22522200ff0c1eadd5",
        _doc("usr/share/doc/octave/", ("*.html", "html")),
    ),
    PinnedPackage(
        "openjdk-17-doc",
        "17.0.19+10-1~deb12u2",
        "e94dbb2d3663db00888536aba970489ebec932058eba02f038587cbc805e0007",
        tuple(
            Select(f"usr/share/doc/openjdk-17-jre-headless/api/{module}/*.html", "html")
            for module in ("java.base", "java.logging", "java.net.http", "java.sql", "java.xml")
        ),
        exclude=("*/class-use/*", "*/package-tree.html", "*/package-use.html"),
    ),
    PinnedPackage(
        "perl-doc",
        "5.36.0-7+deb12u3",
        "e9e3564ff5ade27de0585835f2acad769bcc545c0a0045a9f55d5401f27f7591",
        _doc("usr/share/perl/5.36.0/pod/", ("*.pod", "pod")) + _doc("usr/share/man/man3/", ("*.gz", "man")),
    ),
    PinnedPackage(
        "postgresql-doc-15",
        "15.18-0+deb12u1",
        "3c598277a463c44d672daa2c335deb8d8252e1852fb025fd4578ea2d9a1b90f0",
        _doc("usr/share/doc/postgresql-doc-15/html/", ("*.html", "html")),
    ),
    PinnedPackage(
        "python-django-doc",
        "3:3.2.25-0+deb12u3",
        "33319c8e45b95693603213442ccf9bcee933ef338488115203ad25a0e01c696f",
        _doc("usr/share/doc/python-django-doc/html/", ("*.html", "html")),
        exclude=("*/genindex*", "*/_modules/*", "*/py-modindex.html", "*/contents.html", "*/search.html"),
    ),
    PinnedPackage(
        "python-pandas-doc",
        "1.5.3+dfsg-2",
        "4998405ff6b12432f46594963e95554ade1104705795428396345fca58d853f8",
        _doc("usr/share/doc/python-pandas-doc/html/_sources/", ("*.txt", "rst")),
    ),
    PinnedPackage(
        "python-sqlalchemy-doc",
        "1.4.46+ds1-1",
        "8805c3167ef75278ac6fd58ed9856321c2b2e3a7e441edba84b2eb955216d0fd",
        _doc("usr/share/doc/python-sqlalchemy-doc/rst/", ("*.rst", "rst")),
    ),
    PinnedPackage(
        "python3.11-doc",
        "3.11.2-6+deb12u8",
        "50eb63e7f636c4281e9ce1b8f10386f1def42159eddce34fc1f41c46261df71b",
        _doc("usr/share/doc/python3.11/html/_sources/", ("*.txt", "rst")),
    ),
    PinnedPackage(
        "qtbase5-doc-html",
        "5.15.8+dfsg-11+deb12u3",
        "e052497a7db970f002807e3543043c11e46135641b8284b0a419086ba64f5f47",
        _doc("usr/share/qt5/doc/", ("*.html", "html")),
        exclude=(
            "*-members.html",
            "*-obsolete.html",
            "*/examples-manifest*",
            "*-example.html",
            "*-module.html",
        ),
    ),
    PinnedPackage(
        "r-doc-html",
        "4.2.2.20221110-2",
        "2c615dd386993a440b80fd4e9060318386e31fbe47f5be65f295f5fb34002c5c",
        _doc("usr/share/R/doc/manual/", ("*.html", "html")),
    ),
    PinnedPackage(
        "rust-doc",
        "1.63.0+dfsg1-2",
        "96ef96fe6df87d939ca713bd7df3d15c2b778ccb892eca025c4ee504146f697b",
        tuple(
            Select(f"usr/share/doc/rust-doc/html/{book}/*.html", "html")
            for book in (
                "book",
                "edition-guide",
                "embedded-book",
                "nomicon",
                "reference",
                "rust-by-example",
                "rustc",
                "rustdoc",
            )
        ),
        exclude=("*/print.html", "*/toc.html", "*/404.html"),
    ),
    PinnedPackage(
        "sphinx-doc",
        "5.3.0-4",
        "1da3d08bb3a0bc82a4b8b8109410e223054bf5fb13904557ec8ea869046f65b4",
        _doc("usr/share/doc/sphinx-doc/html/_sources/", ("*.txt", "rst")),
    ),
    PinnedPackage(
        "sqlite3-doc",
        "3.40.1-2+deb12u2",
        "466e30d7066e2641fa13e56bc662a2ad521b8cc9c17dde9c9dac3d4f105e32f2",
        _doc("usr/share/doc/sqlite3/", ("*.html", "html")),
        exclude=(
            "*/doc_backlink_crossref.html",
            "*/doc_keyword_crossref.html",
            "*/doc_target_crossref.html",
            "*/keyword_index.html",
            "*/sitemap.html",
            "*/toc.html",
        ),
    ),
    PinnedPackage(
        "zsh-common",
        "5.9-4",
        "4f263aa88910f750965b1a83dcbca1355b2cf509acffe96cc2d856333909a7b5",
        _doc("usr/share/man/man", ("*.gz", "man")),
    ),
)


# ---------------------------------------------------------------------------------------------- .deb files


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_ar(path: str | os.PathLike) -> dict[str, bytes]:
    """The members of an ``ar`` archive (the container of a ``.deb``), name -> bytes."""
    data = Path(path).read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise DebError(f"{path}: not a .deb (no ar archive header)")
    members, pos = {}, 8
    while pos < len(data):
        header = data[pos : pos + 60]
        if len(header) < 60 or header[58:60] != b"`\n":
            raise DebError(f"{path}: corrupt ar member header at byte {pos}")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError as exc:
            raise DebError(f"{path}: corrupt ar member size at byte {pos}") from exc
        start = pos + 60
        if start + size > len(data):
            raise DebError(f"{path}: ar member {name!r} is truncated")
        members[name] = data[start : start + size]
        pos = start + size + (size & 1)
    return members


_TAR_MODES = {"data.tar": "r:", "data.tar.xz": "r:xz", "data.tar.gz": "r:gz", "data.tar.bz2": "r:bz2"}


@dataclass(frozen=True)
class DebFiles:
    """The regular files of a ``.deb``'s data part (path without ``./`` -> bytes) and its symlinks."""

    files: dict[str, bytes]
    links: dict[str, str]


def deb_files(path: str | os.PathLike, want: Callable[[str], bool]) -> DebFiles:
    """Read the files of ``path``'s data archive for which ``want(path)`` holds (and every symlink)."""
    members = read_ar(path)
    names = [n for n in members if n.startswith("data.tar")]
    if len(names) != 1:
        raise DebError(f"{path}: expected one data.tar member, found {sorted(members)}")
    name = names[0]
    if name not in _TAR_MODES:
        raise DebError(
            f"{path}: {name} is not supported (xz, gz, bz2 or none); unpack it with "
            f"`dpkg-deb --fsys-tarfile` and repack with xz, or pin a package built with xz"
        )
    files, links = {}, {}
    try:
        with tarfile.open(fileobj=io.BytesIO(members[name]), mode=_TAR_MODES[name]) as tar:
            for info in tar:
                member = info.name[2:] if info.name.startswith("./") else info.name.lstrip("/")
                if info.issym():
                    links[member] = info.linkname
                elif info.isfile() and want(member):
                    handle = tar.extractfile(info)
                    files[member] = handle.read() if handle else b""
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError, OSError) as exc:
        raise DebError(f"{path}: corrupt {name} ({exc})") from exc
    return DebFiles(files=files, links=links)


def locate_debs(packages: Sequence[PinnedPackage], debs_dir: str | os.PathLike) -> dict[str, Path]:
    """The ``.deb`` of every package in ``debs_dir``, each checked against its pinned sha256."""
    found = {}
    for pkg in packages:
        path = Path(debs_dir) / pkg.filename
        if not path.is_file():
            raise DebError(f"{path}: missing (fetch it with --download or `apt-get download {pkg.name}`)")
        digest = sha256_file(path)
        if digest != pkg.sha256:
            raise DebError(f"{path}: sha256 {digest} does not match the pinned {pkg.sha256}")
        found[pkg.name] = path
    return found


def download_debs(packages: Sequence[PinnedPackage], cache_dir: str | os.PathLike) -> dict[str, Path]:
    """Fetch missing pinned ``.deb`` files with ``apt-get download name=version``; then :func:`locate_debs`."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    for pkg in packages:
        if (cache / pkg.filename).is_file():
            continue
        cmd = ["apt-get", "download", f"{pkg.name}={pkg.version}"]
        result = subprocess.run(cmd, cwd=cache, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DebError(f"{' '.join(cmd)} failed in {cache}: {result.stderr.strip()[-500:]}")
    return locate_debs(packages, cache)


# ------------------------------------------------------------------------------------------ markup → text

_UNDERLINE = re.compile(r"^\s*([=\-~^\"'`#*+<>_:.])\1{2,}\s*$")
_RST_PROSE_DIRECTIVES = _words(
    "note warning tip hint important caution attention danger error admonition seealso "
    "versionadded versionchanged deprecated topic sidebar rubric container only glossary hlist "
    "centered epigraph compound function method class attribute data exception module decorator "
    "decoratormethod classmethod staticmethod describe option envvar c:function c:macro c:type "
    "c:member c:struct c:var c:enum c:union c:data cpp:function cpp:class py:function py:method "
    "py:class py:data py:attribute py:exception py:module kernel-doc-free attention "
    "currentmodule program"
)
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.(?:\s+([\w:.-]+)::(.*)|\s.*|)$")
_RST_OPTION = re.compile(r"^\s+:[\w -]+:(\s.*)?$")


def _rst_inline(line: str) -> str:
    line = re.sub(r":[\w:.+-]+:`([^`]*)`", lambda m: _rst_role_text(m.group(1)), line)
    line = re.sub(r"``([^`]+)``", r"\1", line)
    line = re.sub(r"`([^`<]*?)\s*<[^`>]*>`__?", r"\1", line)
    line = re.sub(r"`([^`]+)`__?", r"\1", line)
    line = re.sub(r"`([^`]+)`", r"\1", line)
    line = re.sub(r"\[(?:#\w*|\*|\d+)\]_", "", line)
    line = re.sub(r"\*\*([^*]+)\*\*", r"\1", line)
    line = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\1", line)
    line = re.sub(r"\|([\w -]+)\|_?", r"\1", line)
    return line


def _rst_role_text(text: str) -> str:
    m = re.fullmatch(r"(.*?)\s*<[^<>]*>", text, flags=re.S)
    if m and m.group(1):
        return m.group(1)
    text = text.lstrip("!")
    if text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    return text


def strip_rst(text: str) -> str:
    """reStructuredText → plain lines: directives' code/comment bodies, literal blocks, doctests and
    section rules dropped; prose directives' bodies and inline markup's text kept."""
    out: list[str] = []
    skip_deeper: int | None = None  # skip lines indented deeper than this (and blank ones)
    literal_base: int | None = None  # the paragraph before ended with "::"
    options_base: int | None = None  # just after a kept directive: skip its ":option:" lines
    doctest = False
    previous_blank = True
    for raw in text.splitlines():
        line = raw.expandtabs(8).rstrip()
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_deeper is not None:
            if not stripped or indent > skip_deeper:
                continue
            skip_deeper, previous_blank = None, True
        if literal_base is not None:
            if not stripped:
                continue
            if indent > literal_base:
                skip_deeper = literal_base
                literal_base = None
                continue
            literal_base = None
        if options_base is not None:
            if stripped and indent > options_base and _RST_OPTION.match(line):
                continue
            options_base = None
        if doctest:
            if stripped:
                continue
            doctest = False
        if not stripped:
            out.append("")
            previous_blank = True
            continue
        m = _RST_DIRECTIVE.match(line)
        if m:
            name = (m.group(2) or "").lower()
            if name in _RST_PROSE_DIRECTIVES:
                if name in ("rubric", "topic", "sidebar", "centered"):
                    out.append(_rst_inline(m.group(3).strip()))
                options_base = indent
            else:
                skip_deeper = indent
            previous_blank = False
            continue
        if previous_blank and stripped.startswith(">>>"):
            doctest = True
            continue
        previous_blank = False
        if _UNDERLINE.match(line) or re.match(r"^\s*\+[-=+]+\+\s*$", line):
            continue
        if stripped.endswith("::"):
            literal_base = indent
            stripped = stripped[:-2].rstrip()
            stripped = stripped + ":" if stripped and not stripped.endswith(":") else stripped
            if not stripped:
                continue
        if stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1:
            stripped = stripped.strip("|").replace(" | ", "  ")
        out.append(_rst_inline(stripped))
    return "\n".join(out)


_POD_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&", "apos": "'"}


def _pod_code(code: str, body: str) -> str:
    if code in "XZ":
        return ""
    if code == "E":
        name = body.strip()
        if name in _POD_ENTITIES:
            return _POD_ENTITIES[name]
        if name.isdigit():
            return chr(int(name))
        if name.lower().startswith("0x"):
            return chr(int(name, 16))
        return html.unescape(f"&{name};")
    if code == "L":
        if "|" in body:
            return body.split("|", 1)[0]
        if re.match(r"\w+://", body):
            return body
        page, _, section = body.partition("/")
        return section.strip('"') or page
    return body


def _pod_inline(text: str) -> str:
    for n in (4, 3, 2):
        text = re.sub(
            rf"([A-Z]){'<' * n}\s+(.*?)\s+{'>' * n}",
            lambda m: _pod_code(m.group(1), m.group(2)),
            text,
            flags=re.S,
        )
    while True:
        new = re.sub(r"([A-Z])<([^<>]*)>", lambda m: _pod_code(m.group(1), m.group(2)), text)
        if new == text:
            return new
        text = new


def strip_pod(text: str) -> str:
    """POD → plain paragraphs: headings and item labels kept as text, verbatim (code) paragraphs,
    ``=begin``/``=for`` blocks and anything after ``=cut`` dropped, formatting codes resolved."""
    out: list[str] = []
    in_pod, in_begin = True, False
    for para in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        if not para.strip():
            continue
        if para.startswith("="):
            first, _, remainder = para.partition("\n")
            m = re.match(r"=(\w+)\s*(.*)", first)
            command = m.group(1) if m else ""
            rest = f"{m.group(2) if m else ''} {remainder}".strip()
            if command == "cut":
                in_pod = False
            elif command == "begin":
                in_pod, in_begin = True, True
            elif command == "end":
                in_begin = False
            else:
                in_pod = True
                if not in_begin and (command.startswith("head") or command == "item"):
                    label = re.sub(r"^(\*|\d+\.?)\s*", "", rest)
                    if label:
                        out.append(_pod_inline(label))
            continue
        if not in_pod or in_begin or para[0] in " \t":
            continue
        out.append(_pod_inline(para))
    return "\n\n".join(out)


_ROFF_GLYPHS = {
    "em": "—",
    "en": "–",
    "hy": "-",
    "aq": "'",
    "dq": '"',
    "lq": "“",
    "rq": "”",
    "oq": "‘",
    "cq": "’",
    "bu": "•",
    "co": "©",
    "rg": "®",
    "tm": "™",
    "mu": "×",
    "di": "÷",
    "+-": "±",
    ">=": "≥",
    "<=": "≤",
    "!=": "≠",
    "->": "→",
    "<-": "←",
    "ti": "~",
    "ha": "^",
    "rs": "\\",
    "ga": "`",
    "sl": "/",
    "ba": "|",
    "de": "°",
    "Fo": "«",
    "Fc": "»",
    "at": "@",
    "sh": "#",
    "Do": "$",
    "ua": "↑",
    "da": "↓",
    "**": "*",
    "pl": "+",
    "mi": "-",
    "eq": "=",
    "lB": "[",
    "rB": "]",
    "lC": "{",
    "rC": "}",
    "fm": "′",
    "sq": "□",
}
_ROFF_ESCAPE = re.compile(
    r"\\(?:f(?:\[[^\]]*\]|\(..|.)|\((..)|\[([^\]]*)\]|\*(?:\((..)|\[([^\]]*)\]|(.))"
    r"|[sz][+-]?\d+|[shvwmNlLDxXbo]'[^']*'|[mnFg](?:\(..|\[[^\]]*\]|.)|(.))"
)
_ROFF_BREAK = frozenset(
    ["PP", "LP", "P", "TP", "IP", "HP", "SH", "SS", "sp", "br", "RS", "RE", "Sh", "Pp", "Ss"]
)
_ROFF_SKIP_REGION = {"nf": "fi", "EX": "EE", "TS": "TE", "EQ": "EN", "de": "..", "ig": "..", "Vb": "Ve"}


def _roff_escape(m: re.Match) -> str:
    glyph = m.group(1) or m.group(2)
    string = m.group(3) or m.group(4) or m.group(5)
    char = m.group(6)
    if glyph is not None:
        return _ROFF_GLYPHS.get(glyph, "")
    if string is not None:
        return {"lq": "“", "rq": "”", "R": "®", "Tm": "™", "--": "—", "C`": "“", "C'": "”", "PI": "π"}.get(
            string, ""
        )
    if char is not None:
        return {
            "-": "-",
            "e": "\\",
            "\\": "\\",
            " ": " ",
            "~": " ",
            "0": " ",
            "'": "'",
            "`": "`",
            ".": ".",
        }.get(char, "")
    return ""


def _roff_args(rest: str) -> list[str]:
    return [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"?|\S+', rest)]


_MDOC_INLINE = _words(
    "Nm Nd Xr Fn Fa Ft Fo Ar Va Vt Em Sy Pa Dv Er Ev Cm Fl Ql Dq Sq Pq Li Tn Ux Bx At St Lb In "
    "Cd Ad An Ms Ic Aq Bq Brq Op No Ns Pf Lk Mt Sx Qq Ox Nx Fx Bsx Dx Eo Ec Do Dc Qo Qc So Sc "
    "Po Pc Oo Oc Xo Xc"
)


def _mdoc_text(args: list[str]) -> str:
    """The words of an mdoc line: macro names dropped, ``Xr name n`` → ``name(n)``, ``Fl x`` → ``-x``."""
    words, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "Xr" and i + 1 < len(args):
            section = args[i + 2] if i + 2 < len(args) and args[i + 2].isdigit() else ""
            words.append(f"{args[i + 1]}({section})" if section else args[i + 1])
            i += 3 if section else 2
            continue
        if a == "Fl" and i + 1 < len(args):
            words.append("-" + args[i + 1])
            i += 2
            continue
        if a not in _MDOC_INLINE:
            words.append(a)
        i += 1
    return re.sub(r" ([,.;:)])", r"\1", " ".join(words))


def strip_roff(text: str) -> str:
    """A manual page (man macros) → plain paragraphs: headings and font macros' text kept, comments,
    requests, no-fill/example/table regions (synopses, code) dropped, escapes resolved."""
    out: list[str] = []
    end_region: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if end_region is not None:
            if re.match(rf"^[.']\s*{re.escape(end_region)}\b", line) or (end_region == ".." and line == ".."):
                end_region = None
            continue
        if line.startswith(('.\\"', "'\\\"", '.\\"', './"')) or re.match(r"^\.\s*\\\"", line):
            continue
        line = re.sub(r'\\".*$', "", line)
        if line.startswith((".", "'")):
            m = re.match(r"^[.']\s*(\S+)\s*(.*)$", line)
            if not m:
                continue
            name, rest = m.group(1), m.group(2)
            if name in _ROFF_SKIP_REGION:
                end_region = _ROFF_SKIP_REGION[name]
                continue
            args = [_ROFF_ESCAPE.sub(_roff_escape, a) for a in _roff_args(rest)]
            if name in ("SH", "SS"):
                out += ["", " ".join(args).capitalize() if name == "SH" else " ".join(args), ""]
            elif name in ("B", "I", "SM", "SB"):
                out.append(" ".join(args))
            elif re.fullmatch(r"[BIR]{2}", name):
                out.append("".join(args))
            elif name == "IP" and args and args[0] not in ("\\(bu", "•", ""):
                out += ["", args[0]]
            elif name in _ROFF_BREAK:
                out.append("")
            elif name in ("Sh", "Ss"):
                out += ["", " ".join(args).capitalize(), ""]
            elif name == "Bd" and ("-literal" in args or "-unfilled" in args):
                end_region = "Ed"
            elif name in ("It", "Bl", "El"):
                out += ["", _mdoc_text(args)]
            elif name in _MDOC_INLINE:
                out.append(_mdoc_text([name, *args]))
            continue
        out.append(_ROFF_ESCAPE.sub(_roff_escape, line))
    return "\n".join(out)


class _HtmlText(html.parser.HTMLParser):
    SKIP_TAGS = _words(
        "script style head nav pre noscript svg button form screen programlisting synopsis "
        "literallayout indexterm code-block"
    )
    SKIP_CLASSES = _words(
        "sphinxsidebar related footer navheader navfooter toc breadcrumbs nav navigation highlight "
        "literal-block doc-nav sphinxsidebarwrapper docnav headerlink screen programlisting "
        "synopsis cmdsynopsis funcsynopsis summary inheritance member-signature"
    )
    BLOCK = _words(
        "p div h1 h2 h3 h4 h5 h6 li dt dd tr br section article blockquote table ul ol dl title td "
        "th caption figure"
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip: list[str] = []  # tag names of open skipped elements (outermost first)

    def handle_starttag(self, tag, attrs):
        if self.skip:
            if tag == self.skip[0]:
                self.skip.append(tag)
            return
        classes = set((dict(attrs).get("class") or "").split()) | {dict(attrs).get("role") or ""}
        if tag in self.SKIP_TAGS or classes & self.SKIP_CLASSES:
            if tag not in ("br", "img", "hr", "input", "meta", "link"):
                self.skip.append(tag)
            return
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if self.skip:
            if tag == self.skip[0]:
                self.skip.pop()
            return
        if tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """HTML → plain paragraphs: the text of the page without its head, navigation, scripts and code."""
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def strip_text(text: str) -> str:
    """Plain text or AsciiDoc → plain lines: delimited listing/literal blocks, attribute and anchor lines,
    section rules dropped; ``linkgit:name[n]`` → ``name(n)``."""
    out: list[str] = []
    block: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if block is not None:
            if stripped == block:
                block = None
            continue
        if re.fullmatch(r"(-{4,}|\.{4,}|`{3,}\w*)", stripped):
            block = stripped if not stripped.startswith("`") else "```"
            continue
        if _UNDERLINE.match(line) or re.fullmatch(r"\[\[?[^\]]*\]\]?|:[\w-]+:.*|\+|//.*", stripped):
            continue
        out.append(re.sub(r"linkgit:([\w.-]+)\[(\d)\]", r"\1(\2)", line))
    return "\n".join(out)


_STRIPPERS = {"rst": strip_rst, "pod": strip_pod, "man": strip_roff, "html": strip_html, "text": strip_text}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\ufeff]")


def reflow(text: str) -> str:
    """One line per paragraph (whitespace collapsed), paragraphs separated by one blank line; paragraphs
    with few letters (tables, code left over, rules) are dropped."""
    paragraphs = []
    for para in re.split(r"\n\s*\n", text):
        flat = " ".join(para.split())
        letters = sum(c.isalpha() for c in flat)
        if flat and letters >= 0.5 * len(flat.replace(" ", "")) and re.search(r"[A-Za-z]{2}", flat):
            paragraphs.append(flat)
    return "\n\n".join(paragraphs)


def to_text(kind: str, raw: bytes) -> str:
    """A document's bytes (of ``kind``) as plain, reflowed, NFC-normalized prose."""
    if kind not in _STRIPPERS:
        raise ValueError(f"unknown document kind {kind!r} (one of {KINDS})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = unicodedata.normalize("NFC", _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\t", " ")))
    if kind == "html":
        text = text.replace("\n", " ")  # HTML's line breaks are spaces; blocks come from its tags
    return reflow(_STRIPPERS[kind](text))


_ENGLISH = _words(
    "the of and to in is a that for it be with as on this are by or not an can if you from "
    "which at when will should its use used"
)


def is_english(text: str, *, min_function_words: float = 0.08, min_latin: float = 0.95) -> bool:
    """Mostly Latin letters and enough common English function words among its words."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    latin = sum(c.isascii() for c in letters) / len(letters)
    words = re.findall(r"[a-z]+", text.lower())
    return (
        latin >= min_latin
        and bool(words)
        and sum(w in _ENGLISH for w in words) / len(words) >= min_function_words
    )


def is_prose(text: str, *, min_sentence_share: float = 0.3, sentence_words: int = 12) -> bool:
    """At least ``min_sentence_share`` of the text lies in paragraphs of ``sentence_words`` words or more
    (tables of contents, indexes and lists of names fail)."""
    paragraphs = text.split("\n\n")
    long = sum(len(p) for p in paragraphs if len(p.split()) >= sentence_words)
    return long >= min_sentence_share * max(1, len(text))


def dedup_key(text: str) -> str:
    """Equal for documents that differ only in case, whitespace, punctuation or markup remnants."""
    return hashlib.sha256(re.sub(r"[^0-9a-z]+", "", text.lower()).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ documents


@dataclass(frozen=True)
class Document:
    package: str
    path: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.package}:{self.path}"


def _decompress(path: str, data: bytes) -> bytes:
    return gzip.decompress(data) if path.endswith(".gz") else data


def extract_documents(pkg: PinnedPackage, deb: str | os.PathLike) -> tuple[list[Document], str | None]:
    """The package's selected documents as text (sorted by path) and its copyright file (``None`` if the
    ``.deb`` has none of its own)."""
    copyright_path = f"usr/share/doc/{pkg.name}/copyright"
    files = deb_files(deb, lambda p: p == copyright_path or pkg.kind_of(p) is not None)
    docs = []
    for path in sorted(files.files):
        kind = pkg.kind_of(path)
        if kind is None:
            continue
        try:
            raw = _decompress(path, files.files[path])
        except (OSError, EOFError, zlib.error) as exc:
            raise DebError(f"{deb}: member {path} is not valid gzip ({exc})") from exc
        docs.append(Document(pkg.name, path, to_text(kind, raw)))
    copyright_bytes = files.files.get(copyright_path)
    return docs, None if copyright_bytes is None else copyright_bytes.decode("utf-8", "replace")


@dataclass
class CleanStats:
    extracted: int = 0
    too_short: int = 0
    not_english: int = 0
    not_prose: int = 0
    duplicates: int = 0
    kept: int = 0


def clean_documents(
    documents: Iterable[Document], *, min_chars: int = 500
) -> tuple[list[Document], CleanStats]:
    """Drop short, non-English and duplicate documents; the first (by package, path) of equals is kept."""
    stats = CleanStats()
    seen: set[str] = set()
    kept = []
    for doc in sorted(documents, key=lambda d: (d.package, d.path)):
        stats.extracted += 1
        if len(doc.text) < min_chars:
            stats.too_short += 1
        elif not is_english(doc.text):
            stats.not_english += 1
        elif not is_prose(doc.text):
            stats.not_prose += 1
        elif (key := dedup_key(doc.text)) in seen:
            stats.duplicates += 1
        else:
            seen.add(key)
            kept.append(doc)
    stats.kept = len(kept)
    return kept, stats


def stable_unit(key: str, salt: str) -> float:
    """A number in [0, 1) fixed by ``salt`` and ``key`` (sha256), the same on every machine and run."""
    return int.from_bytes(hashlib.sha256(f"{salt}\0{key}".encode()).digest()[:8], "big") / 2.0**64


def is_held_out(doc_id: str, fraction: float) -> bool:
    return stable_unit(doc_id, "split") < fraction


# ------------------------------------------------------------------------------------------------ licences


def summarize_licence(copyright_text: str) -> str:
    """The licences a Debian copyright file names: its ``License:`` fields (machine-readable format), else
    the well-known licence names it mentions."""
    names: list[str] = []
    machine_readable = copyright_text.lstrip().startswith("Format:")
    for m in (
        () if not machine_readable else re.finditer(r"^License:\s*(\S[^\n]*)$", copyright_text, flags=re.M)
    ):
        name = m.group(1).strip()
        if name not in names:
            names.append(name)
    if names:
        return ", ".join(names)
    known = (
        ("GPL", r"GNU General Public License|\bGPL\b"),
        ("LGPL", r"GNU (Library|Lesser) General Public License|\bLGPL\b"),
        ("GFDL", r"GNU Free Documentation License|\bGFDL\b"),
        ("Artistic", r"Artistic License"),
        ("BSD", r"\bBSD\b"),
        ("MIT", r"\bMIT\b|Permission is hereby granted, free of charge"),
        ("PSF", r"Python Software Foundation License|\bPSF\b"),
        ("Apache-2.0", r"Apache License"),
        ("PostgreSQL", r"PostgreSQL (License|Global Development Group)"),
        ("CC-BY-SA", r"Creative Commons Attribution-ShareAlike|CC-BY-SA"),
        ("verbatim-copying", r"[Pp]ermission is granted to make and distribute verbatim copies"),
    )
    found = [name for name, pattern in known if re.search(pattern, copyright_text)]
    return ", ".join(found) or "see copyright file"


# ------------------------------------------------------------------------------------------------ the build


@dataclass(frozen=True)
class BuildSettings:
    vocab_size: int = 32000
    max_tokens: int = 30_000_000
    held_out_fraction: float = 0.03
    min_chars: int = 500
    # 0: whole documents in a random order. N: every document cut into pieces of at most N tokens, the
    # pieces in a random order (each followed by EOS), so that a short slice of the train split (a CPU
    # study's) samples many documents instead of a few long ones.
    chunk_tokens: int = 0

    def __post_init__(self) -> None:
        if not 512 <= self.vocab_size <= 65536:
            raise ValueError(f"vocab_size must be in [512, 65536] (uint16 ids), got {self.vocab_size}")
        int_at_least("max_tokens", self.max_tokens, 1)
        if not 0.0 < self.held_out_fraction < 0.5:
            raise ValueError(f"held_out_fraction must be in (0, 0.5), got {self.held_out_fraction}")
        int_at_least("min_chars", self.min_chars, 0)
        if self.chunk_tokens != 0 and self.chunk_tokens < 16:
            raise ValueError(f"chunk_tokens must be 0 (whole documents) or >= 16, got {self.chunk_tokens}")


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> str:
    """A byte-level BPE (``tokenizers`` JSON) trained on ``texts``, with :data:`EOS_TOKEN` as id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer.to_str()


def _encode(tokenizer_json: str, texts: Sequence[str], chunk: int = 64) -> list[np.ndarray]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    ids: list[np.ndarray] = []
    for start in range(0, len(texts), chunk):
        batch = tokenizer.encode_batch(list(texts[start : start + chunk]), add_special_tokens=False)
        ids += [np.asarray(e.ids, dtype=np.uint16) for e in batch]
    return ids


@dataclass
class _Source:
    pkg: PinnedPackage
    licence: str
    copyright: str
    documents: dict[str, int] = field(default_factory=lambda: {"train": 0, "held_out": 0})
    tokens: dict[str, int] = field(default_factory=lambda: {"train": 0, "held_out": 0})


def _extract_packages(
    debs: dict[str, Path], packages: Sequence[PinnedPackage], log: Callable[[str], None]
) -> tuple[list[Document], dict[str, _Source]]:
    """Every package's documents, and per package its licence and copyright text."""
    documents: list[Document] = []
    copyrights: dict[str, str | None] = {}
    for pkg in packages:
        if pkg.name not in debs:
            raise DebError(f"no .deb given for package {pkg.name}")
        docs, copyrights[pkg.name] = extract_documents(pkg, debs[pkg.name])
        log(f"{pkg.name}: {len(docs)} documents, {sum(len(d.text) for d in docs) / 1e6:.1f} M characters")
        documents += docs
    sources = {}
    for pkg in packages:
        text = copyrights[pkg.copyright_from or pkg.name]
        if text is None:
            raise DebError(f"{debs[pkg.name]}: no usr/share/doc/{pkg.copyright_from or pkg.name}/copyright")
        sources[pkg.name] = _Source(pkg, summarize_licence(text), text)
    return documents, sources


def _fill_splits(
    units: Sequence[tuple[Document, np.ndarray]],
    split: dict[str, str],
    sources: dict[str, _Source],
    max_tokens: int,
) -> tuple[dict[str, list[np.ndarray]], int]:
    """The token arrays of each split, in order, until ``max_tokens`` (counting one EOS each), and how many
    units did not fit; each source's document and token counts are updated."""
    chosen: dict[str, list[np.ndarray]] = {"train": [], "held_out": []}
    total = dropped = 0
    counted: set[str] = set()
    for doc, doc_ids in units:
        n = len(doc_ids) + 1
        if total + n > max_tokens:
            dropped += 1
            continue
        total += n
        part = split[doc.id]
        chosen[part].append(doc_ids)
        if doc.id not in counted:
            counted.add(doc.id)
            sources[doc.package].documents[part] += 1
        sources[doc.package].tokens[part] += n
    return chosen, dropped


def build_corpus(
    debs: dict[str, Path],
    out: str | os.PathLike,
    *,
    packages: Sequence[PinnedPackage] = PINNED,
    settings: BuildSettings = BuildSettings(),
    overwrite: bool = False,
    log: Callable[[str], None] = lambda _: None,
):
    """Build the token corpus folder ``out`` from the checked ``.deb`` files ``debs`` (name -> path)."""
    from sn29_growth.train.tokens import write_token_corpus

    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"output directory {out} already exists (pass overwrite to replace it)")
    names = [p.name for p in packages]
    if len(set(names)) != len(names):
        raise ValueError(f"packages must have distinct names, got {names}")
    documents, sources = _extract_packages(debs, packages, log)
    kept, stats = clean_documents(documents, min_chars=settings.min_chars)
    del documents
    log(f"kept {stats.kept} of {stats.extracted} documents ({stats.duplicates} duplicates)")
    split = {d.id: "held_out" if is_held_out(d.id, settings.held_out_fraction) else "train" for d in kept}
    tokenizer_json = train_tokenizer((d.text for d in kept if split[d.id] == "train"), settings.vocab_size)
    log("tokenizer trained")
    order = sorted(kept, key=lambda d: stable_unit(d.id, "order"))
    ids = _encode(tokenizer_json, [d.text for d in order])
    units = list(zip(order, ids, strict=True))
    if settings.chunk_tokens:
        c = settings.chunk_tokens
        pieces = [(d, f"{d.id}#{i}", a[i : i + c]) for d, a in units for i in range(0, len(a), c)]
        pieces.sort(key=lambda p: stable_unit(p[1], "order"))
        units = [(d, a) for d, _, a in pieces]
    chosen, dropped = _fill_splits(units, split, sources, settings.max_tokens)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    eos_id = tokenizer.token_to_id(EOS_TOKEN)
    source_rows = [
        {
            "package": s.pkg.name,
            "version": s.pkg.version,
            "sha256": s.pkg.sha256,
            "file": s.pkg.filename,
            "licence": s.licence,
            "copyright_file": f"copyright-{s.pkg.name}.txt",
            "documents": dict(s.documents),
            "tokens": dict(s.tokens),
        }
        for s in sources.values()
    ]
    extra = {
        "builder": "scripts/build_study_corpus.py (sn29_growth.study.realtext)",
        "eos_token": EOS_TOKEN,
        "settings": {
            "vocab_size": settings.vocab_size,
            "max_tokens": settings.max_tokens,
            "held_out_fraction": settings.held_out_fraction,
            "min_chars": settings.min_chars,
            **({"chunk_tokens": settings.chunk_tokens} if settings.chunk_tokens else {}),
        },
        "documents": {**vars(stats), "dropped_for_token_cap": dropped},  # pieces when chunk_tokens
        "sources": source_rows,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tok_path = Path(tmp) / "tokenizer.json"
        tok_path.write_text(tokenizer_json, encoding="utf-8")
        files = {"PROVENANCE.md": provenance_markdown(source_rows, extra)}
        files.update({f"copyright-{name}.txt": sources[name].copyright for name in sorted(sources)})
        corpus = write_token_corpus(
            out,
            tok_path,
            chosen,
            eos_id=eos_id,
            vocab_size=tokenizer.get_vocab_size(),
            extra=extra,
            files=files,
            overwrite=overwrite,
        )
    log(
        f"wrote {out}: {corpus.splits['train'].tokens} train, {corpus.splits['held_out'].tokens} held-out tokens"
    )
    return corpus


def provenance_markdown(sources: Sequence[dict], extra: dict) -> str:
    s = extra["settings"]
    d = extra["documents"]
    lines = [
        "# Provenance of this token corpus",
        "",
        "English prose from the documentation in Debian 12 (bookworm) packages of Debian's main archive,",
        "fetched with `apt-get download NAME=VERSION` and checked against the sha256 below. Markup was stripped",
        "and code blocks dropped (sn29_growth/study/realtext.py); documents that are short, not English, or",
        "duplicates of an earlier one were removed. Built by scripts/build_study_corpus.py.",
        "",
        f"Settings: vocabulary {s['vocab_size']} (byte-level BPE trained on the train split only), at most",
        f"{s['max_tokens']} tokens, held-out fraction {s['held_out_fraction']} by document, documents of at",
        f"least {s['min_chars']} characters.",
        "",
        f"Documents: {d['extracted']} extracted, {d['too_short']} too short, {d['not_english']} not English,",
        f"{d['not_prose']} mostly lists (not prose),",
        f"{d['duplicates']} duplicates, {d['kept']} kept, {d['dropped_for_token_cap']} left out by the token cap.",
        "",
        "| package | version | licence (from its copyright file) | documents | tokens | sha256 of the .deb |",
        "|---|---|---|---|---|---|",
    ]
    for r in sources:
        docs = r["documents"]["train"] + r["documents"]["held_out"]
        toks = r["tokens"]["train"] + r["tokens"]["held_out"]
        lines.append(
            f"| {r['package']} | {r['version']} | {r['licence']} | {docs} | {toks} | `{r['sha256']}` |"
        )
    lines += [
        "",
        "Each package's full Debian copyright file is beside this one as `copyright-<package>.txt`; the text in",
        "this corpus is a derived work of that documentation and is distributed under the same terms.",
        "",
    ]
    return "\n".join(lines)
