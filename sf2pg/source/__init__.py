"""The Snowflake side: logins and a run's session pool, session settings, the SQL that selects a chunk
(``statements``) and the streaming extract of its rows (``extract``)."""
