"""Forms of the template console views (preview, send-test, campaign check)."""

from __future__ import annotations

from django import forms

from templating.services import CAMPAIGN_CHECK_SAMPLE


class PreviewForm(forms.Form):
    """Which campaign and recipient to render for. The recipient is a ref ("sample" or one
    the RecipientSource listed); the view resolves it within the chosen campaign only."""

    campaign = forms.ModelChoiceField(queryset=None, empty_label=None)
    find = forms.CharField(
        required=False,
        max_length=254,
        label="Find a lead",
        help_text="The start of an email address; Preview, then pick one of the leads found.",
    )
    recipient = forms.CharField(required=False, max_length=100, widget=forms.Select)

    def __init__(self, *args, campaigns, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["campaign"].queryset = campaigns
        self.set_recipient_choices([])

    def set_recipient_choices(self, choices: list[tuple[str, str]]) -> None:
        self.fields["recipient"].widget.choices = [("sample", "Sample lead"), *choices]


class CampaignCheckForm(forms.Form):
    campaign = forms.ModelChoiceField(queryset=None)
    limit = forms.IntegerField(
        min_value=1,
        max_value=5000,
        initial=CAMPAIGN_CHECK_SAMPLE,
        help_text="Big campaigns are checked on their first N active leads (by id).",
    )

    def __init__(self, *args, campaigns, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["campaign"].queryset = campaigns
