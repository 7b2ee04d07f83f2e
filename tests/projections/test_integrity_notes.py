"""C2SP signed notes and checkpoints: Go's reference vector, round trips, tampering, key rotation, strict parsing."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.integrity import note_keys
from projections.integrity.checkpoints import Checkpoint, open_checkpoint, parse_checkpoint, sign_checkpoint
from projections.integrity.note_keys import NoteError, Signer, Verifier, key_id
from projections.integrity.notes import open_note, parse_note, sign_note

# golang.org/x/mod/sumdb/note's example: a key pair, a text and the note Go writes for them
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (
    GO_TEXT
    + "\n\u2014 PeterNeumann "
    + "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

OLD = Signer.from_seed("log.example/ownllm", bytes(range(32)))
NEW = Signer.from_seed("log.example/ownllm", bytes(range(1, 33)))
OTHER = Signer.from_seed("elsewhere.example/log", bytes(range(2, 34)))
CHECKPOINT = Checkpoint("log.example/ownllm", 42, bytes(range(32)))


def test_go_reference_vector_signs_and_opens_byte_for_byte() -> None:
    signer = Signer.parse(GO_SKEY)
    assert signer.skey == GO_SKEY
    assert signer.verifier.vkey == GO_VKEY
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE
    opened = open_note(GO_NOTE, [Verifier.parse(GO_VKEY)])
    assert opened.text == GO_TEXT and opened.signed_by == (Verifier.parse(GO_VKEY),)
    with pytest.raises(NoteError):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), [Verifier.parse(GO_VKEY)])


def test_key_id_is_the_head_of_sha256_of_name_newline_type_and_key() -> None:
    verifier = Verifier.parse(GO_VKEY)
    assert key_id("PeterNeumann", verifier.public_key).hex() == "c74f20a3"


def test_a_checkpoint_round_trips_and_reads_as_written() -> None:
    note = sign_checkpoint(CHECKPOINT, [NEW])
    root = base64.b64encode(bytes(range(32))).decode()
    assert note.startswith(f"log.example/ownllm\n42\n{root}\n\n\u2014 log.example/ownllm ")
    checkpoint, opened = open_checkpoint(note, [NEW.verifier], origin="log.example/ownllm")
    assert checkpoint == CHECKPOINT and opened.signed_by == (NEW.verifier,)
    with pytest.raises(NoteError, match="not of"):
        open_checkpoint(note, [NEW.verifier], origin="other.example/log")


def test_extension_lines_round_trip() -> None:
    checkpoint = Checkpoint("o", 0, bytes(32), ("ext one", "ext two"))
    assert parse_checkpoint(checkpoint.text()) == checkpoint


@settings(max_examples=100, deadline=None)
@given(st.integers(0, len(sign_checkpoint(CHECKPOINT, [NEW])) - 1), st.integers(1, 255))
def test_any_changed_character_of_a_signed_checkpoint_fails(position: int, delta: int) -> None:
    note = sign_checkpoint(CHECKPOINT, [NEW])
    changed = note[:position] + chr((ord(note[position]) + delta) % 0x2FFF or 1) + note[position + 1 :]
    with pytest.raises(NoteError):
        open_checkpoint(changed, [NEW.verifier])


def test_a_note_signed_by_a_key_not_known_fails() -> None:
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(sign_note("hello\n", [OTHER]), [NEW.verifier])


def test_another_keys_signature_under_a_known_name_and_id_does_not_verify() -> None:
    stolen_id = NEW.verifier.key_id + OTHER.private_key.sign(b"hello\n")
    forged = f"hello\n\n\u2014 {NEW.name} {base64.b64encode(stolen_id).decode()}\n"
    with pytest.raises(NoteError, match="does not verify"):
        open_note(forged, [NEW.verifier])


def test_rotation_old_notes_keep_verifying_under_the_retired_key() -> None:
    keys = [OLD.verifier, NEW.verifier]
    before = sign_note("before\n", [OLD])
    during = sign_note("during\n", [OLD, NEW])
    after = sign_note("after\n", [NEW])
    assert open_note(before, keys).signed_by == (OLD.verifier,)
    assert open_note(during, keys).signed_by == (OLD.verifier, NEW.verifier)
    assert open_note(after, keys).signed_by == (NEW.verifier,)
    assert open_note(during, [NEW.verifier]).text == "during\n"  # the old key's line is then an unknown one
    with pytest.raises(NoteError):
        open_note(before, [NEW.verifier])


def test_unknown_signatures_are_ignored_but_a_bad_known_one_rejects_the_note() -> None:
    note = sign_note("text\n", [OTHER, NEW])
    assert open_note(note, [NEW.verifier]).signed_by == (NEW.verifier,)
    bad_line = f"\u2014 {NEW.name} " + base64.b64encode(NEW.verifier.key_id + bytes(64)).decode() + "\n"
    with pytest.raises(NoteError, match="does not verify"):
        open_note(note + bad_line, [NEW.verifier])


def test_two_verifiers_sharing_name_and_id_with_different_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    note = sign_note("t\n", [NEW])
    assert open_note(note, [NEW.verifier, NEW.verifier]).signed_by == (NEW.verifier,)
    monkeypatch.setattr(note_keys, "key_id", lambda name, public_key: b"\0\0\0\0")  # a collision, cheaply
    with pytest.raises(NoteError, match="share the name and id"):
        open_note(note, [NEW.verifier, Verifier(NEW.name, OTHER.verifier.public_key)])


@pytest.mark.parametrize(
    "message",
    [
        "no blank line\n\u2014 a AAAAAAA=\n",
        "text\n\n",  # no signature
        "text\n\n\u2014 a AAAAAAA=",  # no final newline
        "text\n\n\u2014 a AAAAAAA=\ntrailing\n",
        "text\n\n\u2014 a AAAAAAA=\n\u2014 b AAAAAAA=\n\n",
        "text\n\n-- a AAAAAAA=\n",  # not an em dash
        "text\n\n\u2014  a AAAAAAA=\n",  # two spaces
        "text\n\n\u2014 a AAAAAAA= extra\n",
        "text\n\n\u2014 a+b AAAAAAA=\n",  # plus in a key name
        "text\n\n\u2014 a AAAAAAA\n",  # unpadded base64
        "text\n\n\u2014 a AAAAAAB=\n",  # non-canonical base64 (stray bits)
        "text\n\n\u2014 a AAAA\n",  # too short for a key id and a signature
        "te\txt\n\n\u2014 a AAAAAAA=\n",  # control character
        "te\rxt\n\n\u2014 a AAAAAAA=\n",
        "text\n\n\u2014 a AAAAAAA=\r\n",
        "text\ud800\n\n\u2014 a AAAAAAA=\n",  # not UTF-8
    ],
)
def test_malformed_notes_are_refused(message: str) -> None:
    assert parse_note("text\n\n\u2014 a AAAAAAA=\n").signatures[0].key_id == bytes(4)  # the well-formed shape
    with pytest.raises(NoteError):
        parse_note(message)


def test_invalid_utf8_bytes_are_refused() -> None:
    with pytest.raises(NoteError):
        parse_note(b"text\xff\n\n\xe2\x80\x94 a AAAAAAA=\n")


def test_the_text_may_hold_blank_lines_the_last_one_separates() -> None:
    note = sign_note("a\n\nb\n\n", [NEW])
    assert parse_note(note).text == "a\n\nb\n\n"
    assert open_note(note, [NEW.verifier]).text == "a\n\nb\n\n"


@pytest.mark.parametrize("text", ["", "no newline", "tab\there\n"])
def test_bad_texts_are_not_signed(text: str) -> None:
    with pytest.raises(NoteError):
        sign_note(text, [NEW])


def test_nothing_is_signed_without_a_signer() -> None:
    with pytest.raises(NoteError):
        sign_note("text\n", [])


@pytest.mark.parametrize(
    "text",
    [
        "o\n42\n",  # no root
        "o\n042\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # leading zero
        "o\n+42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n4_2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n\u0664\u0662\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # Arabic-Indic digits
        "o\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n99999999999999999999\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "o\n42\nAAAA\n",  # not 32 bytes
        "o\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",  # unpadded
        "\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # empty origin
        "o\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",  # empty extension line
        "o\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # no final newline
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    assert parse_checkpoint("o\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").size == 42  # the well-formed shape
    with pytest.raises(NoteError):
        parse_checkpoint(text)


def test_verifier_keys_parse_strictly() -> None:
    assert Verifier.parse(GO_VKEY).vkey == GO_VKEY
    mangled = [
        GO_VKEY[:-1],
        GO_VKEY + "A",
        GO_VKEY.replace("c74f20a3", "c74f20a4"),  # id does not fit
        GO_VKEY.replace("c74f20a3", "C74F20A3"),
        GO_VKEY.replace("PeterNeumann", "PeterNeuman"),
        GO_VKEY.replace("+ARpc", "+Apc"),
        GO_VKEY.replace("+ARpc", "+AhRpc"),
        "PeterNeumann+c74f20a3",
    ]
    for key in mangled:
        with pytest.raises(NoteError):
            Verifier.parse(key)
    for cut in range(len(GO_VKEY)):
        with pytest.raises(NoteError):
            Verifier.parse(GO_VKEY[:cut])


def test_signing_keys_round_trip_and_parse_strictly() -> None:
    signer = Signer.generate("example.com/key")
    assert Signer.parse(signer.skey).verifier == signer.verifier
    with pytest.raises(NoteError):
        Signer.parse(GO_SKEY.replace("c74f20a3", "00000000"))
    with pytest.raises(NoteError):
        Signer.parse(GO_SKEY.removeprefix("PRIVATE+"))
    assert "private_key" not in repr(signer)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\nb"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(NoteError):
        Signer.from_seed(name, bytes(32))
