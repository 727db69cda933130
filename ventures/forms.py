"""Forms of the operator console that are not plain ModelForms: confirm pages, campaigns, API
tokens."""

from __future__ import annotations

import calendar

from django import forms

from ventures.models import Campaign, Venture, VentureMembership
from ventures.roles import OPERATOR, VIEWER
from ventures.services import member_role

MEMBER_ROLE_CHOICES = [
    (OPERATOR, "Operator: runs the venture's campaigns, leads and templates"),
    (VIEWER, "Viewer: reads and downloads, changes nothing"),
]
MEMBER_ROLE_HELP = "A role holds in every venture the user is a member of."


class ReasonForm(forms.Form):
    """The reason an operator gives on a confirm page; it is stored in the audit trail.

    `extra` fields (an operation's own, a target segment say) come before the reason."""

    reason = forms.CharField(
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Recorded in the audit trail with your name and the time.",
    )

    def __init__(
        self, *args, reason_required: bool = False, extra=None, check=None, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.check = check
        if extra:
            self.fields.update(extra)
            self.order_fields([*extra, "reason"])
        self.fields["reason"].required = reason_required
        if reason_required:
            self.fields["reason"].error_messages["required"] = (
                "Give a reason: it is recorded in the audit trail."
            )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if self.fields["reason"].required and not reason:
            raise forms.ValidationError(self.fields["reason"].error_messages["required"])
        return reason

    def clean(self):
        cleaned = super().clean()
        if self.check is not None and not self.errors:
            self.check(cleaned)
        return cleaned


WEEKDAY_CHOICES = [(str(i), label) for i, label in enumerate(calendar.day_name, start=1)]


class SendDaysField(forms.MultipleChoiceField):
    """Weekday checkboxes for Campaign.send_days, which stores ISO weekday digits ("12345")."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("choices", WEEKDAY_CHOICES)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return list(value) if isinstance(value, str) else value

    def clean(self, value) -> str:
        return "".join(sorted(super().clean(value)))


class CampaignAdminForm(forms.ModelForm):
    send_days = SendDaysField(
        label="Send days", help_text="Days on which messages may go out, in the lead's time zone."
    )

    class Meta:
        model = Campaign
        fields = "__all__"  # noqa: DJ007  (every editable field; state fields are read-only)


class ApiTokenCreateForm(forms.Form):
    venture = forms.ModelChoiceField(queryset=Venture.objects.none())
    name = forms.CharField(
        max_length=200, help_text="What will use it, e.g. 'website form' or 'Zapier'."
    )

    def __init__(self, *args, ventures, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["venture"].queryset = ventures


class MembershipForm(forms.ModelForm):
    """A member's row on the venture page: their role, which an Administrator may change (the
    user is fixed: adding someone is the page's "Add a member"). A member whose role is none
    of a member's (an Administrator, a user with no role) shows it, unchangeable."""

    role = forms.ChoiceField(
        choices=[(role, role) for role, _label in MEMBER_ROLE_CHOICES], help_text=MEMBER_ROLE_HELP
    )

    class Meta:
        model = VentureMembership
        fields = ()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            return
        current = member_role(self.instance.user)
        self.fields["role"].initial = current
        if current not in dict(self.fields["role"].choices):
            self.fields["role"].choices = [(current, current or "No role")]
            self.fields["role"].disabled = True
