"""Venture API tokens: shown once, stored hashed, revocable at once, audited."""

from __future__ import annotations

import pytest

from ventures.models import AuditEvent, VentureApiToken
from ventures.selectors import api_token_authenticate
from ventures.services import venture_api_token_create, venture_api_token_revoke


@pytest.mark.django_db
def test_token_authenticates_its_venture_and_is_stored_only_as_a_hash(venture):
    token, plaintext = venture_api_token_create(venture=venture, name="site form", actor="ann")

    assert plaintext.startswith("aicmo_") and len(plaintext) > 40
    stored = VentureApiToken.objects.get(pk=token.pk)
    assert plaintext not in (stored.token_hash, stored.prefix)
    found = api_token_authenticate(plaintext)
    assert found.venture == venture
    found.refresh_from_db()
    assert found.last_used_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("guess", ["", "aicmo_", "aicmo_wrong", "Bearer x"])
def test_unknown_tokens_do_not_authenticate(venture, guess):
    venture_api_token_create(venture=venture, name="x", actor="ann")
    assert api_token_authenticate(guess) is None


@pytest.mark.django_db
def test_revoked_token_stops_working_at_once_and_revocation_is_audited(venture):
    token, plaintext = venture_api_token_create(venture=venture, name="x", actor="ann")

    assert venture_api_token_revoke(token=token, actor="ann", reason="leaked")
    assert not venture_api_token_revoke(token=token, actor="ann")

    assert api_token_authenticate(plaintext) is None
    actions = list(AuditEvent.objects.for_entity(venture).values_list("action", "reason"))
    assert sorted(actions) == [
        ("venture.api_token.create", ""),
        ("venture.api_token.revoke", "leaked"),
    ]
