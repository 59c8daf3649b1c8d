"""The Snowflake side: logins and a run's session pool, session settings, and the streaming extract of a chunk."""
