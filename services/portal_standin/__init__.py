"""A local stand-in for CITB's portal, the identity provider of the ATO's pages (a test double).

It publishes its signing keys as a JWKS and lets one of a few named people of an ATO sign in:
it mints the short-lived hand-off token the real portal would and posts it to the gateway's
`/ato/sign-in/portal` in a form, as the real portal's backend does.
"""
