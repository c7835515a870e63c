-- runtime_role: written by hand. The service's sessions run as a runtime role that owns
-- nothing (kernel/database), and the default privileges of the schema give it UPDATE and DELETE
-- on every table the owner makes. On the log's tables nobody may hold UPDATE, DELETE or
-- TRUNCATE, so they are revoked here from every role that holds them, whatever its name: the
-- runtime role, and any other an operator granted them to. Revoking from each holder, rather
-- than from a role named in a setting the migration reads, keeps this file free of any
-- knowledge of how the kernel names its roles. Without UPDATE and ownership, the runtime role
-- can neither change an event, nor grant itself the privilege back, nor disable the triggers
-- of append_only.
DO $$
DECLARE
	holder text;
BEGIN
	FOR holder IN
		SELECT DISTINCT quote_ident(r.rolname)
		FROM pg_class c
		CROSS JOIN LATERAL aclexplode(c.relacl) a
		JOIN pg_roles r ON r.oid = a.grantee
		WHERE c.oid IN ('events'::regclass, 'checkpoints'::regclass)
		  AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')
	LOOP
		EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON events, checkpoints FROM %s', holder);
	END LOOP;
END $$;
