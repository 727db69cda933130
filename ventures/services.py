"""Writes to the control plane. Admin actions, management commands and tasks all call these.

Every operator-visible change is atomic and leaves one AuditEvent row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.utils import timezone

from ventures.db import sending_gates
from ventures.models import (
    CAMPAIGN_TRANSITIONS,
    AuditEvent,
    Campaign,
    CampaignStatus,
    SendMode,
    SystemControl,
    Venture,
    VentureApiToken,
)
from ventures.preflight import preflight_errors
from ventures.roles import ADMINISTRATOR, OPERATOR, VIEWER

Actor = AbstractBaseUser | str


class DomainError(Exception):
    """A refusal an operator should read as is (never a traceback)."""


class IllegalTransitionError(DomainError):
    pass


class PreflightFailedError(DomainError):
    pass


def actor_label(actor: Actor) -> str:
    if isinstance(actor, str):
        return actor
    return getattr(actor, "get_username", lambda: str(actor))() or f"user#{actor.pk}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    return value


def snapshot(obj: models.Model, fields: list[str] | None = None) -> dict[str, Any]:
    """A JSON-ready dict of the object's concrete field values (FKs as ids).

    Fields a model names in `AUDIT_SECRET_FIELDS` (an SMTP password in a URL, say) or in
    `AUDIT_PERSONAL_FIELDS` (a lead's address and name: the trail cannot be erased) are never
    written as they are: they show as "set (<fingerprint>)" or "", where the fingerprint is a
    keyed hash (SECRET_KEY), so a change is still seen and the value cannot be recovered."""
    names = fields or [
        f.attname for f in obj._meta.concrete_fields if f.name not in ("created_at", "updated_at")
    ]
    secret = {*getattr(obj, "AUDIT_SECRET_FIELDS", ()), *getattr(obj, "AUDIT_PERSONAL_FIELDS", ())}
    return {
        name: secret_fingerprint(getattr(obj, name))
        if name in secret
        else _jsonable(getattr(obj, name))
        for name in names
    }


def secret_fingerprint(value: str | None) -> str:
    """How a secret appears in an audit row: "" when unset, else "set (8 hex digits)"."""
    if not value:
        return ""
    digest = hmac.new(settings.SECRET_KEY.encode(), str(value).encode(), hashlib.sha256)
    return f"set ({digest.hexdigest()[:8]})"


def _venture_id_of(entity: models.Model) -> int | None:
    """The venture an audit row belongs to (scoped audit lists filter by it): the entity's
    own, else its owner's (a sequence's campaign, a step's sequence)."""
    if isinstance(entity, Venture):
        return entity.pk
    if hasattr(entity, "venture_id"):
        return entity.venture_id
    owner = getattr(entity, "campaign", None) or getattr(entity, "sequence", None)
    return _venture_id_of(owner) if isinstance(owner, models.Model) else None


def audit_label(entity: models.Model) -> str:
    """How an audit row names its entity: the model's `audit_label()` where it has one (a
    lead, by id: never a person's address in a trail that cannot be erased), else str()."""
    label = getattr(entity, "audit_label", None)
    return label() if callable(label) else str(entity)


def audit_record(
    *,
    actor: Actor,
    action: str,
    entity: models.Model,
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor_label(actor),
        action=action,
        entity_type=entity._meta.label_lower,
        entity_id=str(entity.pk),
        entity_repr=audit_label(entity)[:300],
        venture_id=_venture_id_of(entity),
        before=before,
        after=after,
        reason=reason,
    )


def audit_changes(
    *, actor: Actor, entity: models.Model, before: dict | None, action: str = "", reason: str = ""
) -> AuditEvent | None:
    """Record what changed between `before` (None for a creation) and the saved entity."""
    after = snapshot(entity)
    if before is None:
        return audit_record(
            actor=actor, action=action or "create", entity=entity, after=after, reason=reason
        )
    changed = {k for k in after if before.get(k) != after[k]}
    if not changed:
        return None
    return audit_record(
        actor=actor,
        action=action or "update",
        entity=entity,
        before={k: before.get(k) for k in sorted(changed)},
        after={k: after[k] for k in sorted(changed)},
        reason=reason,
    )


def _require_live_preflight(what: str) -> None:
    """Refuse `what` (a live start, resume or switch) while live-mode preflight fails."""
    errors = preflight_errors(mode=SendMode.LIVE)
    if errors:
        raise PreflightFailedError(f"Cannot {what}: preflight fails: " + "; ".join(errors))


def campaign_transition(
    *, campaign: Campaign, action: str, actor: Actor, reason: str = ""
) -> Campaign:
    """Move a campaign along its state machine (start/pause/resume/stop/complete).

    Raises IllegalTransitionError for a move the machine does not allow from the current
    state, and PreflightFailedError when a live-mode campaign would (re)start while preflight
    fails.
    """
    if action not in CAMPAIGN_TRANSITIONS:
        raise IllegalTransitionError(f"Unknown campaign action {action!r}.")
    sources, target = CAMPAIGN_TRANSITIONS[action]
    with transaction.atomic():
        # Waits for the batches handing over for this campaign, and holds back the next ones.
        sending_gates(campaign_ids=[campaign.pk], exclusive=True)
        locked = Campaign.objects.select_for_update().select_related("venture").get(pk=campaign.pk)
        if locked.status not in sources:
            allowed = ", ".join(locked.allowed_actions()) or "none (final state)"
            raise IllegalTransitionError(
                f"Cannot {action} campaign '{locked.slug}': it is {locked.get_status_display()}."
                f" Allowed actions: {allowed}."
            )
        if action in ("start", "resume") and locked.mode == SendMode.LIVE:
            _require_live_preflight(f"{action} live campaign '{locked.slug}'")
        before = {"status": locked.status}
        locked.status = target
        fields = ["status", "updated_at"]
        now = timezone.now()
        if action == "start" and locked.started_at is None:
            locked.started_at = now
            fields.append("started_at")
        if target in (CampaignStatus.STOPPED, CampaignStatus.COMPLETED):
            locked.finished_at = now
            fields.append("finished_at")
        locked.save(update_fields=fields)
        audit_record(
            actor=actor,
            action=f"campaign.{action}",
            entity=locked,
            before=before,
            after={"status": target},
            reason=reason,
        )
    return locked


def _toggle_kill(*, obj: models.Model, on: bool, actor: Actor, reason: str, action: str) -> bool:
    """Flip obj.kill_switch under a row lock; returns False when it already had that value."""
    model = type(obj)
    with transaction.atomic():
        # Waits for the batches handing over under this switch, and holds back the next ones.
        sending_gates(
            campaign_ids=[obj.pk] if action == "campaign" else [],
            venture_ids=[obj.pk] if action == "venture" else [],
            everything=action == "global",
            exclusive=True,
        )
        locked = model.objects.select_for_update().get(pk=obj.pk)
        if locked.kill_switch == on:
            return False
        before = {"kill_switch": locked.kill_switch, "kill_reason": locked.kill_reason}
        locked.kill_switch = on
        locked.kill_reason = reason[:500] if on else ""
        locked.save(update_fields=["kill_switch", "kill_reason", "updated_at"])
        audit_record(
            actor=actor,
            action=f"{action}.{'kill' if on else 'unkill'}",
            entity=locked,
            before=before,
            after={"kill_switch": on, "kill_reason": locked.kill_reason},
            reason=reason,
        )
    obj.kill_switch, obj.kill_reason = locked.kill_switch, locked.kill_reason
    return True


def campaign_capture_link_rotate(*, campaign: Campaign, actor: Actor, reason: str = "") -> bool:
    """Give the campaign's public lead-capture form a new link: the one shared so far (leaked,
    or drawing spam) stops working at once. The key itself is not written to the audit trail."""
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        locked.capture_key = secrets.token_urlsafe(16)
        locked.save(update_fields=["capture_key", "updated_at"])
        audit_record(
            actor=actor,
            action="campaign.capture_link",
            entity=locked,
            after={"capture_link": "new link; the previous one no longer works"},
            reason=reason,
        )
    campaign.capture_key = locked.capture_key
    return True


def campaign_set_kill_switch(
    *, campaign: Campaign, on: bool, actor: Actor, reason: str = ""
) -> bool:
    """Kill (on=True) or unkill a campaign. Independent of its status; halts sending at once."""
    return _toggle_kill(obj=campaign, on=on, actor=actor, reason=reason, action="campaign")


def venture_set_kill_switch(*, venture: Venture, on: bool, actor: Actor, reason: str = "") -> bool:
    """Kill or unkill every campaign of a venture."""
    return _toggle_kill(obj=venture, on=on, actor=actor, reason=reason, action="venture")


def global_kill_switch_set(*, on: bool, actor: Actor, reason: str = "") -> bool:
    """The admin toggle of the global kill switch (AICMO_KILL_SWITCH is the other way)."""
    SystemControl.load()
    return _toggle_kill(obj=SystemControl(pk=1), on=on, actor=actor, reason=reason, action="global")


def campaign_set_mode(*, campaign: Campaign, mode: str, actor: Actor, reason: str = "") -> bool:
    """Switch proof/live. Going live while the campaign runs requires a passing preflight."""
    if mode not in SendMode.values:
        raise DomainError(f"Unknown mode {mode!r}: use proof or live.")
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.mode == mode:
            return False
        if mode == SendMode.LIVE and locked.status == CampaignStatus.RUNNING:
            _require_live_preflight(f"switch running campaign '{locked.slug}' to live")
        before = {"mode": locked.mode}
        locked.mode = mode
        locked.save(update_fields=["mode", "updated_at"])
        audit_record(
            actor=actor,
            action="campaign.mode",
            entity=locked,
            before=before,
            after={"mode": mode},
            reason=reason,
        )
    campaign.mode = mode
    return True


def venture_api_token_create(
    *, venture: Venture, name: str, actor: Actor
) -> tuple[VentureApiToken, str]:
    """Create a token; returns it and the plaintext, which is never stored or shown again."""
    plaintext = "aicmo_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = VentureApiToken.objects.create(
            venture=venture,
            name=name.strip()[:200] or "API token",
            token_hash=hash_api_token(plaintext),
            prefix=plaintext[:12],
            created_by=actor_label(actor),
        )
        audit_record(
            actor=actor,
            action="venture.api_token.create",
            entity=venture,
            after={"token": token.prefix},
        )
    return token, plaintext


def venture_api_token_revoke(*, token: VentureApiToken, actor: Actor, reason: str = "") -> bool:
    """Revoke a token at once; returns False if it was already revoked."""
    with transaction.atomic():
        updated = VentureApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if updated:
            audit_record(
                actor=actor,
                action="venture.api_token.revoke",
                entity=token.venture,
                before={"token": token.prefix},
                reason=reason,
            )
    token.refresh_from_db()
    return bool(updated)


def hash_api_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


# --- Members of a venture --------------------------------------------------------------------

MEMBER_ROLES = (OPERATOR, VIEWER)  # what a member of a venture may be


@dataclass(frozen=True)
class MemberAdded:
    user: Any
    role: str
    invited: bool  # a new account, with a set-password link emailed
    role_before: str  # "" if the user had no role


def member_role(user) -> str:
    """The user's role ("" for none); reads prefetched `groups` when the caller has them."""
    names = {group.name for group in user.groups.all()}
    return next((r for r in (ADMINISTRATOR, *MEMBER_ROLES) if r in names), "")


def _role_set(user, role: str) -> None:
    from django.contrib.auth.models import Group

    user.groups.remove(*Group.objects.filter(name__in=MEMBER_ROLES))
    user.groups.add(Group.objects.get(name=role))


def venture_member_add(
    *, venture: Venture, role: str, actor: Actor, user=None, email: str = "", reason: str = ""
) -> MemberAdded:
    """Make `user` (or the account of `email`, created and invited if there is none) a member
    of the venture with `role`. Roles are groups, so the role holds in every venture the user
    belongs to; an Administrator already sees every venture and is refused."""
    from django.contrib.auth import get_user_model

    from ventures.models import VentureMembership

    if role not in MEMBER_ROLES:
        raise DomainError(f"Unknown role {role!r}: choose {' or '.join(MEMBER_ROLES)}.")
    if (user is None) == (not email):
        raise DomainError("Pick an existing user or give an email address to invite, not both.")
    users = get_user_model()
    with transaction.atomic():
        invited = False
        if user is None:
            user = users.objects.filter(email__iexact=email).order_by("pk").first()
        if user is None:
            if len(email) > users._meta.get_field("username").max_length:
                raise DomainError(f"{email[:60]}… is too long to be a user name: pick a user.")
            if users.objects.filter(username__iexact=email).exists():
                raise DomainError(f"A user named {email} exists with another email address.")
            user = users(username=email, email=email, is_staff=True, is_active=True)
            user.set_unusable_password()
            user.save()
            invited = True
        if user.is_superuser or member_role(user) == ADMINISTRATOR:
            raise DomainError(f"{user.get_username()} is an Administrator and sees every venture.")
        if VentureMembership.objects.filter(venture=venture, user=user).exists():
            raise DomainError(f"{user.get_username()} is already a member of {venture.name}.")
        before = member_role(user)
        VentureMembership.objects.create(venture=venture, user=user)
        if before != role:
            _role_set(user, role)
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        audit_record(
            actor=actor,
            action="venture.member_add",
            entity=venture,
            before={"user": user.get_username(), "role": before} if before else None,
            after={"user": user.get_username(), "role": role, "invited": invited},
            reason=reason,
        )
    return MemberAdded(user=user, role=role, invited=invited, role_before=before)


def venture_member_role_set(*, membership, role: str, actor: Actor, reason: str = "") -> bool:
    """Give the member `role` (Operator or Viewer). Roles are groups: the new role holds in
    every venture the user belongs to. False when the member already has it; an Administrator's
    role is not changed here (they are no member: they see every venture)."""
    if role not in MEMBER_ROLES:
        raise DomainError(f"Unknown role {role!r}: choose {' or '.join(MEMBER_ROLES)}.")
    user = membership.user
    before = member_role(user)
    if before == role:
        return False
    if user.is_superuser or before == ADMINISTRATOR:
        raise DomainError(f"{user.get_username()} is an Administrator and sees every venture.")
    with transaction.atomic():
        _role_set(user, role)
        audit_record(
            actor=actor,
            action="venture.member_role",
            entity=membership.venture,
            before={"user": user.get_username(), "role": before},
            after={"user": user.get_username(), "role": role},
            reason=reason,
        )
    return True


def venture_member_remove(*, membership, actor: Actor, reason: str = "") -> None:
    """Take the user out of the venture: they no longer see it (their login and their role in
    other ventures stay)."""
    user = membership.user
    with transaction.atomic():
        membership.delete()
        audit_record(
            actor=actor,
            action="venture.member_remove",
            entity=membership.venture,
            before={"user": user.get_username(), "role": member_role(user)},
            reason=reason,
        )


def member_invite_send(*, user, venture: Venture, role: str, actor: Actor) -> str:
    """Email a new member the link to choose a password, the way the engine emails operators
    (reply SLA escalations): in proof mode as an .eml file under the artifact directory,
    else through Django's email backend. Returns where it went, for the admin to read."""
    from pathlib import Path

    from django.contrib.auth.tokens import default_token_generator
    from django.core.mail import EmailMessage, get_connection
    from django.urls import reverse
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    uid = urlsafe_base64_encode(force_bytes(user.pk))
    path = reverse("password_set", args=[uid, default_token_generator.make_token(user)])
    link = settings.AICMO_SITE_URL.rstrip("/") + path
    email = EmailMessage(
        subject=f"You are invited to {venture.name} on the AICMO console",
        body=(
            f"{actor_label(actor)} made you {role} of {venture.name} on the AICMO operator "
            f"console. Choose your password here (the link works once, for "
            f"{settings.PASSWORD_RESET_TIMEOUT // 86400} days):\n\n{link}\n\n"
            f"Then log in with your user name: {user.get_username()}"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[user.email],
    )
    if settings.AICMO_SEND_MODE == "proof":
        folder = Path(settings.AICMO_ARTIFACT_DIR) / "notifications"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"invite-{user.pk}.eml"
        target.write_bytes(email.message().as_bytes())
        return f"written to {target} (proof mode sends no email)"
    email.connection = get_connection(fail_silently=False)
    email.send()
    if settings.EMAIL_BACKEND.endswith(".console.EmailBackend"):
        return "printed on the server's output by the console email backend (not delivered)"
    return f"sent to {user.email} through {settings.EMAIL_BACKEND}"
