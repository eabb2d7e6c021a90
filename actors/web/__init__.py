"""The gateway's local web page: what an installer and a household look at, served by the API actor.

`pages` renders the HTML, `api` adds the page's rows to the route table (sections, assets,
sign-in, today's energy), `session` is the sign-in cookie and its CSRF protection. See
docs/web.md.
"""
