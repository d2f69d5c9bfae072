"""Schema of the grant stand-in's own database (numbered `NNNN_*.sql` files)."""
