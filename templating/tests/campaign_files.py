"""Campaign files the templating tests build on: a venture and campaign, and one template."""

BASE = """\
[venture]
slug = "acme"
name = "Acme Pipelines"
postal_address = "Acme GmbH, Hauptstrasse 1, 10115 Berlin"

[campaign]
slug = "acme-q3"
name = "Acme Q3"
"""

OPENER = """
[[templates]]
slug = "opener"
name = "Opener"
variant_label = "A"
narrative_angle = "pain: manual reporting"
subject = "Hi {{ first_name | default('there') }}"
body_text = \"\"\"
Hello {{ first_name | default('there') }},
{{ venture.postal_address }}
{{ unsubscribe_url }}
\"\"\"
"""
