"""Forms of the lead console (import upload, suppression entries) and the public capture form."""

from __future__ import annotations

from django import forms
from django.conf import settings

from leads.models import SuppressionEntry, SuppressionKind
from leads.normalise import InvalidValue
from leads.suppression import suppression_target_of
from ventures.models import Campaign, IcpSegment
from ventures.text import validate_storable_text


def max_upload_bytes() -> int:
    return settings.AICMO_IMPORT_MAX_BYTES


class LeadImportForm(forms.Form):
    """Step 1 of an admin import: which campaign, which file, under which list name."""

    campaign = forms.ModelChoiceField(queryset=Campaign.objects.none())
    file = forms.FileField(help_text="CSV (UTF-8, UTF-16 or Windows-1252; , ; or tab) or XLSX.")
    source = forms.CharField(
        label="Source list name",
        max_length=200,
        required=False,
        help_text="e.g. 'Apollo Q4 DACH'. Stored on every lead as its source list.",
    )
    force = forms.BooleanField(
        required=False,
        label="Import again even if this exact file was already imported into the campaign",
    )

    def __init__(self, *args, campaigns, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["campaign"].queryset = campaigns.select_related("venture")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size == 0:
            raise forms.ValidationError("The file is empty.")
        limit = max_upload_bytes()
        if upload.size > limit:
            raise forms.ValidationError(
                f"The file is {upload.size:,} bytes; the limit is {limit:,} bytes. "
                "Split it, or import it with `manage.py leads import`."
            )
        return upload


class ImportConfirmForm(forms.Form):
    """Step 2: the operator has seen the preview and confirms. The ticket is signed and names
    the staged upload, the campaign, the user and the options; it expires (see import_ui)."""

    ticket = forms.CharField(widget=forms.HiddenInput)


class CaptureForm(forms.Form):
    """The public lead-capture form. `website` is the honeypot: people never see it."""

    email = forms.EmailField(max_length=254)
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    company = forms.CharField(max_length=300, required=False)
    title = forms.CharField(label="Job title", max_length=300, required=False)
    consent = forms.BooleanField(
        required=True,
        error_messages={"required": "Tick the box to agree to be contacted."},
    )
    website = forms.CharField(required=False, label="Leave this field empty")

    def __init__(self, *args, consent_text: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["consent"].label = consent_text
        for name in ("email", "first_name", "last_name", "company", "title"):
            self.fields[name].validators.append(validate_storable_text)

    @property
    def is_bot(self) -> bool:
        return bool(self.data.get("website", "").strip())


def segments_for(ventures) -> forms.ModelChoiceField:
    return IcpSegment.objects.filter(venture__in=ventures).select_related("venture")


class SuppressionEntryForm(forms.ModelForm):
    """An email address or a whole domain typed by an operator (identity entries come only
    from erasure). Checked here so a bad value is a form error, never a 500."""

    kind = forms.ChoiceField(
        choices=[
            (k, label) for k, label in SuppressionKind.choices if k != SuppressionKind.IDENTITY
        ]
    )

    class Meta:
        model = SuppressionEntry
        fields = ("kind", "value", "venture", "reason")

    def clean(self):
        data = super().clean()
        kind, value = data.get("kind"), (data.get("value") or "").strip()
        if not value:
            return data
        try:
            target = "@" + value.lstrip("@") if kind == SuppressionKind.DOMAIN else value
            data["value"] = suppression_target_of(target).value
        except InvalidValue as exc:
            self.add_error("value", str(exc))
        return data
