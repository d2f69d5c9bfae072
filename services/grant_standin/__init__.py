"""A local stand-in for the external grant payment system (its own process and database).

It answers the grant API of `grant-api.md` and misbehaves on purpose when told to (`faults`).
The pipeline never imports it; it talks to it over HTTP only.
"""
