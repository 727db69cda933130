"""A complete, valid submission of the public lead-capture form."""

FORM = {
    "email": "Visitor@Example.com",
    "first_name": "Vic",
    "last_name": "Visitor",
    "company": "Visit Co",
    "title": "Head of Sales",
    "consent": "on",
    "website": "",
}
