from django.apps import AppConfig


class OutreachConfig(AppConfig):
    name = "outreach"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from leads.signals import lead_erased, lead_unsubscribed
        from leads.timeline import register_timeline_source
        from outreach import campaign_code, webhooks
        from outreach.context import LEAD_CONTEXT_SCHEMA, LeadRecipients, erase_render_logs
        from outreach.feedback import erase_feedback
        from outreach.selectors import (
            campaign_delete_guard,
            lead_outreach_timeline,
            mailbox_caps,
            segment_delete_refusals,
        )
        from outreach.services import erase_messages
        from outreach.signals import (
            block_unsubscribed,
            ensure_imap_poll_schedule,
            ensure_tick_schedule,
        )
        from templating.hooks import set_context_schema, set_recipient_source
        from ventures.admin_toolkit import register_delete_refusals
        from ventures.campaign_code import register_section
        from ventures.console import register_cap_source, register_delete_guard

        # templating does not know leads: outreach tells it the context's shape and recipients.
        set_context_schema(LEAD_CONTEXT_SCHEMA)
        set_recipient_source(LeadRecipients())
        lead_erased.connect(erase_render_logs, dispatch_uid="outreach.erase_render_logs")
        post_migrate.connect(ensure_tick_schedule, sender=self)
        post_migrate.connect(ensure_imap_poll_schedule, sender=self)
        lead_unsubscribed.connect(block_unsubscribed, dispatch_uid="outreach.block_unsubscribed")
        webhooks.connect()  # anymail's tracking and inbound events -> outreach.feedback
        lead_erased.connect(erase_feedback, dispatch_uid="outreach.erase_feedback")
        lead_erased.connect(erase_messages, dispatch_uid="outreach.erase_messages")
        # The lead page's activity timeline: enrollment, messages and feedback events.
        register_timeline_source("outreach", lead_outreach_timeline)
        # The console's "effective today" and delete refusals know the outbox through these.
        register_cap_source("mailboxes", mailbox_caps)
        register_delete_guard("outbox", campaign_delete_guard)
        register_delete_refusals("ventures.icpsegment", "outbox", segment_delete_refusals)
        # Campaign TOML sections, after templating's [[templates]] (order 20): steps name them.
        register_section(
            "mailboxes",
            load=campaign_code.mailboxes_load,
            dump=campaign_code.mailboxes_dump,
            order=30,
            confirms_raises=True,  # a mailbox's daily limit and warm-up
        )
        register_section(
            "sequences",
            load=campaign_code.sequences_load,
            dump=campaign_code.sequences_dump,
            order=40,
        )
        register_section(
            "routing", load=campaign_code.routing_load, dump=campaign_code.routing_dump, order=50
        )
