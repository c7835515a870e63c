-- runtime_role: written by hand. SQLite has no roles: the append_only triggers are its only
-- guard. This file keeps the two dialects' histories alike.
SELECT 1;
