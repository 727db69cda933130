"""Forms of the operator console that are not plain ModelForms."""

from __future__ import annotations

from django import forms


class ReasonForm(forms.Form):
    """The reason an operator gives on a confirm page; it is stored in the audit trail."""

    reason = forms.CharField(
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Recorded in the audit trail with your name and the time.",
    )

    def __init__(self, *args, reason_required: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
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
