"""What the template admin's add/change form posts, for a valid template of `campaign`."""

from __future__ import annotations


def form_data(campaign, **overrides):
    data = {
        "venture": campaign.venture.pk,
        "campaign": campaign.pk,
        "channel": "email",
        "name": "Opener",
        "slug": "opener",
        "is_active": "on",
        "narrative_angle": "pain: manual reporting",
        "variant_label": "A",
        "subject": "Hi {{ first_name }}",
        "body_text": "Hello {{ first_name }}\n{{ unsubscribe_url }}",
        "body_html": "",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data
