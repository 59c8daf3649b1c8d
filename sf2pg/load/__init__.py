"""The PostgreSQL side: target tables, the status ledger, binary COPY, and one transaction per chunk."""
