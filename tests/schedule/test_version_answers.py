"""What a version URL answers, read as a version or refused with a sentence (no app needed)."""

from __future__ import annotations

import pytest

from relapp.services.drift import CheckFailed, parse_version


@pytest.mark.parametrize(("body", "content_type", "version"), [
    (b"1.4.0\n", "text/plain", "1.4.0"),
    (b"v2.0.1", "", "2.0.1"),
    (b'{"version": "1.3.1", "sha": "abc"}', "application/json", "1.3.1"),
])
def test_a_version_is_read_from_text_or_json(body, content_type, version):
    assert parse_version(body, content_type) == version


@pytest.mark.parametrize(("body", "sentence"), [
    (b"", "the answer is empty"),
    (b"{not json", "not valid JSON"),
    (b'{"v": 1}', 'no "version" field'),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"version": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
])
def test_a_hostile_or_broken_answer_is_a_sentence(body, sentence):
    with pytest.raises(CheckFailed, match=sentence):
        parse_version(body, "application/json")
