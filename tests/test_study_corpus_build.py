"""The real-text corpus builder: markup to prose, duplicates, the split, the .deb checks and a whole build
from tiny hand-made .deb files (twice, to the same bytes)."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

from sn29_growth.study.realtext import (
    BuildSettings,
    DebError,
    Document,
    PinnedPackage,
    Select,
    build_corpus,
    clean_documents,
    deb_files,
    is_english,
    is_held_out,
    locate_debs,
    strip_html,
    strip_pod,
    strip_roff,
    strip_rst,
    summarize_licence,
    to_text,
)
from sn29_growth.train.tokens import open_token_corpus


def _tar(files: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo("./" + name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_deb(path, files: dict[str, bytes], *, data_name: str = "data.tar.xz") -> str:
    """A minimal .deb (ar: debian-binary, control.tar.xz, data.tar.*); returns its sha256."""
    mode = {"data.tar.xz": "w:xz", "data.tar.gz": "w:gz", "data.tar.zst": "w:"}[data_name]
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", _tar({"control": b"Package: x\n"}, "w:xz")),
        (data_name, _tar(files, mode)),
    ]
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(bytes(out))
    return hashlib.sha256(out).hexdigest()


def test_rst_keeps_prose_and_drops_code_comments_and_rules():
    text = """\
Title
=====

.. note::
   :class: small

   The :func:`~os.path.join` function joins ``paths`` with `the separator <https://x>`_.

.. code-block:: python

   print("code")

An example follows::

    literal = block

>>> 1 + 1
2

.. a comment
   that spans lines

After the comment, **bold** and *emphasis* stay as words.
"""
    out = strip_rst(text)
    assert "Title" in out and "=====" not in out
    assert "The join function joins paths with the separator." in out
    assert "An example follows:" in out
    assert "After the comment, bold and emphasis stay as words." in out
    for gone in ("print", "literal", ">>>", "comment\n", "that spans", ":class:", "note::"):
        assert gone not in out


def test_pod_resolves_codes_and_drops_verbatim():
    text = """\
=head1 NAME

perlfoo - what C<foo> does

=head2 Using L<perlfunc/open>

Call B<foo()> with I<care>; see L<the manual|perlfunc> and E<lt>E<gt>.
Also C<< $a->b >> works.

    my $code = 1;

=begin html

<p>html only</p>

=end html

=cut

sub not_pod { }
"""
    out = strip_pod(text)
    assert "NAME" in out and "perlfoo - what foo does" in out
    assert "Using open" in out
    assert "Call foo() with care; see the manual and <>." in out
    assert "Also $a->b works." in out
    for gone in ("my $code", "html only", "not_pod", "=head"):
        assert gone not in out


def test_roff_keeps_text_and_drops_requests_and_examples():
    text = r""".\" a comment
.TH FOO 1 2023
.SH NAME
foo \- do \fBthings\fR
.SH DESCRIPTION
.B foo
reads a file \(em and \fIwrites\fP it.
.BR bar (1)
.nf
int main(void);
.fi
.EX
code here
.EE
.Nm baz
.Xr ls 1 ,
"""
    out = strip_roff(text)
    assert "Name" in out and "foo - do things" in out
    assert "reads a file — and writes it." in out
    assert "bar(1)" in out and "baz" in out and "ls(1)," in out
    for gone in ("comment", "TH", "int main", "code here", "\\f"):
        assert gone not in out


def test_html_drops_head_navigation_scripts_and_code():
    page = (
        "<html><head><title>T</title><style>x{}</style></head><body>"
        '<div class="sphinxsidebar"><ul><li>menu</li></ul></div><nav>links</nav>'
        "<h1>Heading</h1><p>Some &amp; text <b>here</b>.</p><pre>code()</pre><script>js()</script>"
        "</body></html>"
    )
    out = strip_html(page)
    assert "Heading" in out and "Some & text here." in out
    for gone in ("menu", "links", "code()", "js()", "x{}"):
        assert gone not in out


PROSE = (
    "The quick brown fox jumps over the lazy dog, and it is a fact that this sentence is used to test "
    "the fonts of a computer when they are new. "
)


def test_clean_drops_short_foreign_and_duplicate_documents():
    docs = [
        Document("b", "x", PROSE * 10),
        Document("a", "y", (PROSE * 10).upper().replace(",", " ;")),  # same words: a duplicate
        Document("a", "short", PROSE),
        Document("a", "fr", "Le renard brun saute par-dessus le chien paresseux, et voilà tout. " * 20),
    ]
    kept, stats = clean_documents(docs, min_chars=500)
    assert [d.id for d in kept] == ["a:y"]  # the first by (package, path) of the two equals
    assert (stats.duplicates, stats.too_short, stats.not_english) == (1, 1, 1)
    assert is_english(PROSE) and not is_english("Привет мир, как дела? " * 10)
    contents = "\n\n".join(f"Chapter {i}: the name of a section" for i in range(40))
    kept, stats = clean_documents([Document("a", "toc", contents)], min_chars=100)
    assert not kept and stats.not_prose == 1


def test_split_is_a_stable_function_of_the_document_id():
    ids = [f"pkg:doc/{i}.rst" for i in range(2000)]
    held = [i for i in ids if is_held_out(i, 0.05)]
    assert held == [i for i in ids if is_held_out(i, 0.05)]
    assert 60 <= len(held) <= 140
    assert set(held) <= {i for i in ids if is_held_out(i, 0.2)}  # a larger fraction only adds documents
    assert is_held_out("pkg:doc/0.rst", 0.05) is ("pkg:doc/0.rst" in held)


def test_licence_summary_reads_machine_readable_and_free_form_files():
    dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-2+\n\nFiles: x\nLicense: Expat\n"
    assert summarize_licence(dep5) == "GPL-2+, Expat"
    assert "PSF" in summarize_licence("This is the Python Software Foundation License version 2.")


def _package_files(n_docs: int, tag: str) -> dict[str, bytes]:
    files = {f"usr/share/doc/{tag}/copyright": b"Format: x\nFiles: *\nLicense: GPL-2+\n"}
    for i in range(n_docs):
        body = (
            f"Section {i}\n{'=' * 10}\n\n{PROSE * 3}\nDocument {i} of {tag} says {i * 7919 % 1000} things.\n"
        )
        files[f"usr/share/doc/{tag}/src/d{i:02d}.rst.gz"] = gzip.compress(body.encode(), mtime=0)
    files[f"usr/share/doc/{tag}/src/skip.js"] = b"var x = 1;"
    return files


@pytest.fixture
def tiny_debs(tmp_path):
    pkgs = []
    for tag in ("alpha-doc", "beta-doc"):
        sha = make_deb(tmp_path / f"{tag}_1.0-1_all.deb", _package_files(30, tag))
        pkgs.append(PinnedPackage(tag, "1.0-1", sha, (Select(f"usr/share/doc/{tag}/src/*.rst.gz", "rst"),)))
    return tmp_path, tuple(pkgs)


def test_end_to_end_build_is_byte_reproducible(tmp_path, tiny_debs):
    folder, pkgs = tiny_debs
    settings = BuildSettings(vocab_size=600, held_out_fraction=0.2, min_chars=200)
    debs = locate_debs(pkgs, folder)
    build_corpus(debs, tmp_path / "a", packages=pkgs, settings=settings)
    build_corpus(debs, tmp_path / "b", packages=pkgs, settings=settings)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert {"manifest.json", "tokenizer.json", "train.bin", "held_out.bin", "PROVENANCE.md"} <= set(names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    corpus = open_token_corpus(tmp_path / "a", verify=True)
    assert corpus.splits["train"].documents + corpus.splits["held_out"].documents == 60
    assert corpus.splits["held_out"].documents > 0
    sources = {s["package"]: s for s in corpus.manifest["sources"]}
    assert sources["alpha-doc"]["licence"] == "GPL-2+" and sources["beta-doc"]["sha256"] == pkgs[1].sha256
    assert "alpha-doc" in (tmp_path / "a" / "PROVENANCE.md").read_text()

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(corpus.tokenizer_path))
    ids = corpus.tokens("held_out").tolist()
    first = ids[: ids.index(corpus.eos_id)]
    text = tok.decode(first)
    assert text.startswith("Section") and "quick brown fox" in text
    sources = corpus.manifest["sources"]
    assert sum(s["tokens"]["train"] + s["tokens"]["held_out"] for s in sources) == (
        corpus.splits["train"].tokens + corpus.splits["held_out"].tokens
    )


def test_token_cap_keeps_whole_documents_under_the_limit(tmp_path, tiny_debs):
    folder, pkgs = tiny_debs
    settings = BuildSettings(vocab_size=600, held_out_fraction=0.2, min_chars=200, max_tokens=1500)
    corpus = build_corpus(locate_debs(pkgs, folder), tmp_path / "c", packages=pkgs, settings=settings)
    total = corpus.splits["train"].tokens + corpus.splits["held_out"].tokens
    assert 0 < total <= 1500
    assert corpus.manifest["documents"]["dropped_for_token_cap"] > 0


def test_chunked_build_shuffles_pieces_and_keeps_the_split(tmp_path, tiny_debs):
    """chunk_tokens cuts every document into pieces of at most N tokens (each followed by EOS): the same
    tokens in each split as the whole-document build, only cut and reordered."""
    import numpy as np

    folder, pkgs = tiny_debs
    debs = locate_debs(pkgs, folder)
    whole = BuildSettings(vocab_size=600, held_out_fraction=0.2, min_chars=200)
    chunked = BuildSettings(vocab_size=600, held_out_fraction=0.2, min_chars=200, chunk_tokens=32)
    a = build_corpus(debs, tmp_path / "whole", packages=pkgs, settings=whole)
    b = build_corpus(debs, tmp_path / "chunked", packages=pkgs, settings=chunked)
    assert b.manifest["settings"]["chunk_tokens"] == 32 and "chunk_tokens" not in a.manifest["settings"]
    for split in ("train", "held_out"):
        ta, tb = a.tokens(split), b.tokens(split)
        pieces = np.split(tb, np.flatnonzero(tb == b.eos_id) + 1)[:-1]
        assert max(len(p) - 1 for p in pieces) == 32 and len(pieces) > a.splits[split].documents
        assert np.array_equal(np.sort(ta[ta != a.eos_id]), np.sort(tb[tb != b.eos_id])), split
    with pytest.raises(ValueError, match="chunk_tokens"):
        BuildSettings(chunk_tokens=8)


def test_bad_debs_are_named(tmp_path, tiny_debs):
    folder, pkgs = tiny_debs
    wrong = PinnedPackage("alpha-doc", "1.0-1", "0" * 64, pkgs[0].select)
    with pytest.raises(DebError, match=r"alpha-doc_1\.0-1_all\.deb: sha256 .* does not match"):
        locate_debs([wrong], folder)
    missing = PinnedPackage("gamma-doc", "2:1.0", "0" * 64, pkgs[0].select)
    with pytest.raises(DebError, match=r"gamma-doc_2%3a1\.0_all\.deb: missing"):
        locate_debs([missing], folder)

    corrupt = tmp_path / "corrupt.deb"
    data = (folder / "alpha-doc_1.0-1_all.deb").read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])
    with pytest.raises(DebError, match="corrupt.deb"):
        deb_files(corrupt, lambda _: True)
    (tmp_path / "plain.deb").write_bytes(b"not an archive")
    with pytest.raises(DebError, match="plain.deb: not a .deb"):
        deb_files(tmp_path / "plain.deb", lambda _: True)
    make_deb(tmp_path / "zst.deb", {"a": b"x"}, data_name="data.tar.zst")
    with pytest.raises(DebError, match=r"zst.deb: data.tar.zst is not supported"):
        deb_files(tmp_path / "zst.deb", lambda _: True)


def test_gz_data_archives_and_symlinks_are_read(tmp_path):
    make_deb(tmp_path / "g.deb", {"usr/share/doc/x/a.txt": b"hello"}, data_name="data.tar.gz")
    files = deb_files(tmp_path / "g.deb", lambda p: p.endswith(".txt"))
    assert files.files == {"usr/share/doc/x/a.txt": b"hello"}


def test_to_text_reflows_paragraphs_and_rejects_unknown_kinds():
    assert to_text("text", b"one\ntwo  words\n\n\nthree here\n") == "one two words\n\nthree here"
    with pytest.raises(ValueError, match="unknown document kind 'docx'"):
        to_text("docx", b"")
