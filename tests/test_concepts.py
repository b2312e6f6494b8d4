"""Concept sets: cleaning, hashing, fetching with checksums, and every kind of bad input."""

from __future__ import annotations

import hashlib
import re
import sys

import pytest

from sieve.backends import BackendError
from sieve.concepts import ConceptSetError, clean_concepts, concept_id, load_concept_set, read_lines

HOSTILE = [
    "$(rm -rf ~)",
    "../../etc/passwd",
    "naïve café 東京 \"quoted\" 'single' `tick`",
    "x" * 5000,
    "{} {0} {name}",
    "a;b|c&d > /tmp/out",
    "*?[wild]{card}",
]


def test_clean_drops_blanks_and_duplicates_keeping_first():
    res = clean_concepts(["dog", "  ", "", "cat ", "dog", "Dog", "red\tcar", "red   car", "cat"])
    assert res.concepts == ["dog", "cat", "Dog", "red car"]
    assert (res.n_raw, res.n_blank, res.n_duplicates) == (9, 2, 3)


def test_concept_id_is_sha256_prefix():
    for text in HOSTILE:
        cid = concept_id(text)
        assert re.fullmatch(r"[0-9a-f]{16}", cid)
        assert cid == hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    assert len({concept_id(t) for t in HOSTILE}) == len(HOSTILE)


def test_read_lines_formats(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes("\ufeffdog\r\ncat\r\nlast".encode())
    assert read_lines(p) == ["dog", "cat", "last"]
    p.write_bytes(b"one\ntwo\n")
    assert read_lines(p) == ["one", "two"]
    p.write_bytes("a\u2028b\n".encode())  # a unicode line separator stays inside the concept
    assert len(read_lines(p)) == 1
    p.write_bytes(b"ok\n\xff\xfe broken\n")
    with pytest.raises(ConceptSetError, match=r"c\.txt is not UTF-8 text \(byte 3"):
        read_lines(p)


def test_path_set_with_hostile_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "words.txt"
    p.write_text("\n".join(HOSTILE + ["", HOSTILE[0]]) + "\n", encoding="utf-8")
    before = sorted(str(x) for x in tmp_path.rglob("*"))
    data = load_concept_set("words", {"path": str(p)}, resources_dir=tmp_path / "resources")
    assert [c["text"] for c in data["concepts"]] == HOSTILE
    assert [c["id"] for c in data["concepts"]] == [concept_id(t) for t in HOSTILE]
    assert (data["n_raw"], data["n_blank"], data["n_duplicates"]) == (len(HOSTILE) + 2, 1, 1)
    assert data["concept_set"] == "words" and str(p) in data["source"]
    assert sorted(str(x) for x in tmp_path.rglob("*")) == before  # reading created no file at all


@pytest.mark.parametrize("content", ["", "\n\n  \n\t\n"])
def test_empty_set_is_an_error(tmp_path, content):
    p = tmp_path / "empty.txt"
    p.write_text(content)
    with pytest.raises(ConceptSetError, match="concept set 'mine' .*empty.txt.* is empty"):
        load_concept_set("mine", {"path": str(p)})


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConceptSetError, match="concept set 'mine'.*not found"):
        load_concept_set("mine", {"path": str(tmp_path / "nope.txt")})


def test_url_fetched_once_and_checksum_checked(tmp_path):
    src = tmp_path / "remote.txt"
    src.write_text("red\nblue\nred\n")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    res = tmp_path / "resources" / "concepts"
    spec = {"url": src.as_uri(), "sha256": digest}
    data = load_concept_set("colours", spec, resources_dir=res)
    assert [c["text"] for c in data["concepts"]] == ["red", "blue"] and data["n_duplicates"] == 1
    assert (res / "colours.txt").read_bytes() == src.read_bytes()
    src.unlink()  # the second read uses the cached copy, not the url
    assert load_concept_set("colours", spec, resources_dir=res)["concepts"] == data["concepts"]

    src.write_text("tampered\n")
    wrong = {"url": src.as_uri(), "sha256": "0" * 64}
    with pytest.raises(
        ConceptSetError,
        match=f"checksum mismatch.*expected sha256 {'0' * 64}, got "
        f"{hashlib.sha256(b'tampered' + bytes([10])).hexdigest()}",
    ):
        load_concept_set("other", wrong, resources_dir=res)
    assert sorted(p.name for p in res.iterdir()) == ["colours.txt"]  # the bad download was not kept


def test_url_unreachable_and_offline(tmp_path, monkeypatch):
    spec = {"url": (tmp_path / "missing.txt").as_uri(), "sha256": "1" * 64}
    with pytest.raises(ConceptSetError, match="cannot fetch concept list"):
        load_concept_set("gone", spec, resources_dir=tmp_path / "res")
    monkeypatch.setenv("SIEVE_OFFLINE", "1")
    with pytest.raises(BackendError, match="prefetch"):
        load_concept_set("gone", spec, resources_dir=tmp_path / "res")


def test_synthetic_source(monkeypatch):
    monkeypatch.setitem(sys.modules, "sieve.synthetic", None)  # the world is not available
    with pytest.raises(ConceptSetError, match="needs the synthetic world"):
        load_concept_set("syn", {"synthetic": "default"})

    class FakeWorld:
        @staticmethod
        def concept_list(spec):
            return ["red circle", "blue square", "red circle", spec]

    monkeypatch.setitem(sys.modules, "sieve.synthetic", FakeWorld)
    data = load_concept_set("syn", {"synthetic": "default"})
    assert [c["text"] for c in data["concepts"]] == ["red circle", "blue square", "default"]
    assert data["source"] == "synthetic default"


def test_a_bad_synthetic_spec_names_the_concept_set():
    with pytest.raises(ConceptSetError, match=r"concept set 'syn' \(synthetic nope\.yaml\): .*nope\.yaml"):
        load_concept_set("syn", {"synthetic": "nope.yaml"})
