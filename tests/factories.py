"""factory-boy factories for every app's models: the one place tests build data."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from ventures.models import Campaign, IcpSegment, Venture, VentureMembership


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@agency.example")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-1")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(Group.objects.get(name=extracted))
        if create:
            self.save()


class VentureFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Venture

    name = factory.Sequence(lambda n: f"Venture {n}")
    slug = factory.Sequence(lambda n: f"venture-{n}")
    offer_summary = "Automated pipeline reporting for revenue teams."
    primary_cta = "Book a 20-minute call"
    default_channels = factory.LazyFunction(lambda: ["email"])
    timezone = "Europe/Berlin"
    owner_name = "Ada Owner"
    owner_email = "owner@venture.example"
    postal_address = "Musterstrasse 1, 10115 Berlin, Germany"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = VentureMembership

    venture = factory.SubFactory(VentureFactory)
    user = factory.SubFactory(UserFactory)


class IcpSegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IcpSegment

    venture = factory.SubFactory(VentureFactory)
    name = factory.Sequence(lambda n: f"Segment {n}")
    slug = factory.Sequence(lambda n: f"segment-{n}")
    industries = factory.LazyFunction(lambda: ["software"])
    title_keywords = factory.LazyFunction(lambda: ["sales"])
    countries = factory.LazyFunction(lambda: ["DE", "Germany"])


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    venture = factory.SubFactory(VentureFactory)
    name = factory.Sequence(lambda n: f"Campaign {n}")
    slug = factory.Sequence(lambda n: f"campaign-{n}")
    objective = "Book discovery calls with heads of sales."
    sender_name = "Sam Sender"
    sender_email = "sam@venture.example"
    reply_to = "replies@venture.example"


# --- leads (owned by the leads helper) ---
from leads.models import ImportBatch, Lead, SuppressionEntry, identity_hash_of  # noqa: E402


class LeadFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lead

    campaign = factory.SubFactory(CampaignFactory)
    venture = factory.LazyAttribute(lambda o: o.campaign.venture)
    email = factory.Sequence(lambda n: f"lead{n}@prospect.example")
    email_key = factory.LazyAttribute(lambda o: o.email.lower())
    identity_hash = factory.LazyAttribute(lambda o: identity_hash_of(email_key=o.email_key))
    first_name = "Lena"
    last_name = "Lead"
    title = "VP Sales"
    company = "Prospect GmbH"
    country = "Germany"


class ImportBatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ImportBatch

    campaign = factory.SubFactory(CampaignFactory)
    file_name = "leads.csv"
    source = "test list"


class SuppressionEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SuppressionEntry

    kind = "email"
    value = factory.Sequence(lambda n: f"blocked{n}@prospect.example")
    identity_hash = factory.LazyAttribute(lambda o: identity_hash_of(email_key=o.value))
    reason = "test"


from templating.models import MessageTemplate  # noqa: E402

COMPLIANT_BODY = (
    "Hi {{ first_name | default('there') }},\n\n"
    "{{ venture.offer_summary }}\n\n"
    "Best,\n{{ sender.name }}\n\n"
    "{{ venture.postal_address }}\n"
    "Unsubscribe: {{ unsubscribe_url }}\n"
)


class MessageTemplateFactory(factory.django.DjangoModelFactory):
    """Saved through templating.services.template_save, so it is validated and versioned."""

    class Meta:
        model = MessageTemplate

    campaign = factory.SubFactory(CampaignFactory)
    venture = factory.LazyAttribute(lambda o: o.campaign.venture if o.campaign else None)
    name = factory.Sequence(lambda n: f"Template {n}")
    slug = factory.Sequence(lambda n: f"template-{n}")
    subject = "Quick question, {{ first_name | default('there') }}"
    body_text = COMPLIANT_BODY

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from templating.services import template_save

        return template_save(template=model_class(*args, **kwargs), actor="tests")


def objection_rules_restore() -> None:
    """The starting objection rules, as migration outreach 0007 adds them. A transactional
    test's flush empties the table (pytest-django does not replay data migrations), so a test
    that files replies under objections makes them again rather than depend on test order."""
    import importlib

    from outreach.models import ObjectionRule

    starting = importlib.import_module("outreach.migrations.0007_objections").DEFAULT_RULES
    ObjectionRule.objects.all().delete()
    ObjectionRule.objects.bulk_create(
        [ObjectionRule(category=c, pattern=p, priority=n) for c, p, n in starting]
    )
