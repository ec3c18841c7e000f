"""Several gateway nodes on one PostgreSQL database: node identity and liveness, claims of work
with an owner node, and singletons held by leases.  SQLite stays single-node."""
