# Copyright (c) 2026, walship developers
#
# t/060_security.pl
#	  The walship worker runs as a superuser: nobody else may make it run
#	  their code through the extension's schema or catalog (issue 9).
#
#	  1. A database owner (not a superuser) creates the schema walship
#	     before CREATE EXTENSION, and after it renames that schema and
#	     creates another walship schema whose views progress and backfills
#	     call a function that makes the owner a superuser.  CREATE
#	     EXTENSION refuses the schema; the worker, serving that database,
#	     reports the extension missing and runs nothing.
#	  2. After a proper install the database owner can neither rename nor
#	     replace the schema, its tables or its functions.
#	  3. A superuser detaches walship.progress from the extension and
#	     plants a view under its name: the worker refuses its catalog
#	     (walship.status, the log) and runs nothing; a table of the
#	     extension given to another owner is refused too.  Put back, the
#	     worker ships again.
#	  4. Likewise for the function it calls to queue the initial backfills.
#	  The planted function records every call in a marker table, so "runs
#	  nothing" is checked directly, not only through its effect.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WalshipHttpSink;
use WalshipTest;

my $sink = WalshipHttpSink->new(dir => PostgreSQL::Test::Utils::tempdir());

# The worker first serves database postgres, where walship is installed
# properly: walship.status is read there throughout.
my $node = worker_node('security', q{
walship.format = 'ndjson'
walship.batch_max_delay = '20ms'
} . "walship.endpoint = '" . $sink->url('/ingest') . "'\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE ROLE attacker LOGIN;
CREATE DATABASE shop OWNER attacker;
});

# Runs $sql in shop as $role; returns (exit code, stdout, stderr).
sub shop_as
{
	my ($role, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql('shop', $sql, stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role ]);
	return ($rc, $out, $err);
}

sub shop_safe_as
{
	my ($role, $sql) = @_;
	my ($rc, $out, $err) = shop_as($role, $sql);
	die "query as $role failed: $err" if $rc != 0;
	return $out;
}

sub attacker_is_superuser
{
	return $node->safe_psql('postgres',
		q{SELECT rolsuper FROM pg_roles WHERE rolname = 'attacker'});
}

sub escalations
{
	return $node->safe_psql('shop', q{SELECT count(*) FROM public.marker});
}

# Polls until the status says $error, or the attacker became a superuser
# (the attack worked): the worker has run its checks either way.
sub wait_for_verdict
{
	my ($error) = @_;
	(my $quoted = $error) =~ s/'/''/g;
	return poll_until($node, qq{
SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = 'attacker')
    OR coalesce((SELECT last_error FROM walship.status), '') = '$quoted'
});
}

# The attacker's tools: a function that makes them a superuser when a
# superuser runs it (and records every call), a published table.
shop_safe_as('attacker', q{
CREATE TABLE public.marker (called_as text, at timestamptz DEFAULT now());
GRANT INSERT ON public.marker TO PUBLIC;
CREATE FUNCTION public.escalate() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.marker (called_as) VALUES (current_user);
    BEGIN
        EXECUTE 'ALTER ROLE attacker SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
    RETURN true;
END
$$;
CREATE TABLE public.items (id int PRIMARY KEY, v text);
CREATE PUBLICATION walship FOR TABLE public.items;
});

# ---------------------------------------------------------------------------
# 1. A schema walship made before CREATE EXTENSION
# ---------------------------------------------------------------------------
shop_safe_as('attacker', 'CREATE SCHEMA walship');
my ($rc, $out, $err) = shop_as('postgres', 'CREATE EXTENSION walship');
isnt($rc, 0, 'pre-created schema: CREATE EXTENSION is refused');
like($err, qr/ERROR:  schema "walship" already exists and is owned by role attacker, which is not a superuser/,
	'pre-created schema: the error says why');

# rename that schema (with the extension, had it been installed) away, and
# plant views that escalate under the names the worker used to query
shop_safe_as('attacker', q{
ALTER SCHEMA walship RENAME TO walship_orig;
CREATE SCHEMA walship;
CREATE VIEW walship.progress AS
SELECT 'walship'::text AS slot_name, '0/0'::pg_lsn AS confirmed_lsn,
       0::bigint AS batches, 0::bigint AS changes, 0::bigint AS bytes,
       0::bigint AS retries, 0::bigint AS rejected_batches,
       NULL::timestamptz AS last_success_at, NULL::text AS last_error,
       now() AS updated_at
 WHERE public.escalate();
CREATE VIEW walship.backfills AS
SELECT 1::bigint AS id, 0::oid AS relation, 10::oid AS queued_by,
       1 AS chunk_size, NULL::text AS condition, 'public'::text AS schema_name,
       'items'::text AS table_name, NULL::text[] AS last_key,
       'queued'::text AS state
 WHERE public.escalate();
});

# the worker now serves shop; a restart makes its first look come after all that
$node->append_conf('postgresql.conf', "walship.database = 'shop'\n");
$node->restart;
ok(wait_for_verdict('extension "walship" is not installed in database "shop"'),
	'pre-created schema: the worker has looked at database shop');
is(attacker_is_superuser(), 'f', 'pre-created schema: the attacker is not a superuser');
is(escalations(), '0', 'pre-created schema: the planted function never ran');
like(slurp_file($node->logfile),
	qr/WARNING:  walship: extension "walship" is not installed in database "shop"/,
	'pre-created schema: the log says the extension is missing');

# ---------------------------------------------------------------------------
# 2. A proper install: the database owner cannot take it over
# ---------------------------------------------------------------------------
shop_safe_as('postgres', q{
DROP SCHEMA walship CASCADE;
DROP SCHEMA walship_orig CASCADE;
CREATE EXTENSION walship;
});
$node->reload;    # wakes the worker
ok(wait_streaming($node), 'proper install: the worker streams');
is(shop_safe_as('postgres',
		q{SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'walship'}),
	'postgres', 'proper install: the schema belongs to the superuser who created the extension');

for my $attempt (
	[ 'ALTER SCHEMA walship RENAME TO mine',       qr/must be owner of schema walship/ ],
	[ 'DROP SCHEMA walship CASCADE',               qr/must be owner of schema walship/ ],
	[ 'ALTER TABLE walship.progress RENAME TO p',  qr/must be owner of table progress/ ],
	[ 'DROP TABLE walship.backfills',              qr/must be owner of table backfills/ ],
	[ 'ALTER TABLE walship.dead_letter OWNER TO attacker', qr/must be owner of table dead_letter/ ],
	[ 'CREATE VIEW walship.p2 AS SELECT 1',        qr/permission denied for schema walship/ ],
	[
		q{CREATE FUNCTION walship.backfill(regclass, integer) RETURNS bigint LANGUAGE sql AS 'SELECT 1'},
		qr/permission denied for schema walship/
	],
	[ 'CREATE OR REPLACE VIEW walship.status AS SELECT 1 AS state', qr/permission denied for schema walship|must be owner of view status/ ],
	[ 'ALTER EXTENSION walship DROP TABLE walship.progress', qr/must be owner of extension walship/ ])
{
	my ($sql, $expected) = @$attempt;
	($rc, $out, $err) = shop_as('attacker', $sql);
	isnt($rc, 0, "database owner: \"$sql\" is refused");
	like($err, $expected, "database owner: \"$sql\" error");
}

# pg_dump writes CREATE SCHEMA walship before CREATE EXTENSION (the schema
# is not a member of the extension): a restore is taken, as the schema is
# then a superuser's, empty, and nobody else may create in it
my $dump = PostgreSQL::Test::Utils::tempdir() . '/shop.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('shop'), '-f', $dump ], 'pg_dump of shop');
like(slurp_file($dump), qr/CREATE SCHEMA walship;.*CREATE EXTENSION IF NOT EXISTS walship WITH SCHEMA walship;/s,
	'the dump creates the schema before the extension');
$node->safe_psql('postgres', 'CREATE DATABASE shop_copy');
$node->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('shop_copy'), '-f', $dump ],
	'the dump restores, extension included');
is($node->safe_psql('shop_copy', q{SELECT count(*) FROM pg_depend
 WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'walship') AND deptype = 'e'}),
	$node->safe_psql('shop', q{SELECT count(*) FROM pg_depend
 WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'walship') AND deptype = 'e'}),
	'the restored extension has all its objects');

my $seen = $sink->last_seq;
shop_safe_as('attacker', q{INSERT INTO public.items VALUES (1, 'one')});
ok($sink->wait_for(sub {
			grep { $_->{seq} > $seen && ($_->{status} // 0) == 204 } @{ $_[0] }
		}, 60),
	'proper install: a change is shipped');
is(attacker_is_superuser(), 'f', 'proper install: the attacker is not a superuser');

# ---------------------------------------------------------------------------
# 3. The worker takes only the extension's own tables
# ---------------------------------------------------------------------------
shop_safe_as('postgres', q{
ALTER EXTENSION walship DROP TABLE walship.progress;
ALTER TABLE walship.progress RENAME TO progress_detached;
-- the planted function runs whenever the view is read, rows or not
CREATE FUNCTION public.planted_progress() RETURNS SETOF walship.progress_detached
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.escalate();
    RETURN QUERY SELECT * FROM walship.progress_detached;
END
$$;
CREATE VIEW walship.progress AS SELECT * FROM public.planted_progress();
});
$node->restart;
ok(wait_for_verdict('relation "walship.progress" is not a table of extension "walship"'),
	'detached table: the worker refuses the view planted under its name');
is(attacker_is_superuser(), 'f', 'detached table: the attacker is not a superuser');
is(escalations(), '0', 'detached table: the planted function never ran');
is($node->safe_psql('postgres', 'SELECT state FROM walship.status'), 'error',
	'detached table: state error');
like(slurp_file($node->logfile),
	qr/WARNING:  walship: relation "walship.progress" is not a table of extension "walship"\n.*HINT:  .*ALTER EXTENSION walship ADD TABLE/,
	'detached table: the log says so, and how to fix it');

shop_safe_as('postgres', q{
DROP VIEW walship.progress;
DROP FUNCTION public.planted_progress();
ALTER TABLE walship.progress_detached RENAME TO progress;
ALTER EXTENSION walship ADD TABLE walship.progress;
});
$node->reload;
ok(poll_until($node, q{SELECT state = 'streaming' AND last_error IS NULL FROM walship.status}),
	'table put back: the worker streams again');

# a table of the extension given to another owner, while the worker runs
# (it looks for backfills every second): refused on its next look
shop_safe_as('postgres', 'ALTER TABLE walship.backfills OWNER TO attacker');
ok(wait_for_verdict('table "walship.backfills" of extension "walship" is owned by role "attacker", not by the extension\'s owner "postgres"'),
	'table given away: the worker refuses it');
is(attacker_is_superuser(), 'f', 'table given away: the attacker is not a superuser');
shop_safe_as('postgres', 'ALTER TABLE walship.backfills OWNER TO postgres');
$node->reload;
ok(poll_until($node, q{SELECT state = 'streaming' AND last_error IS NULL FROM walship.status}),
	'owner put back: the worker streams again');

$seen = $sink->last_seq;
shop_safe_as('attacker', q{INSERT INTO public.items VALUES (2, 'two')});
ok($sink->wait_for(sub {
			grep { $_->{seq} > $seen && ($_->{status} // 0) == 204 } @{ $_[0] }
		}, 60),
	'after all that: changes are shipped');

# ---------------------------------------------------------------------------
# 4. The function the worker calls for walship.initial_backfill
# ---------------------------------------------------------------------------
# a detached backfill_publication() and a planted one in its place (with a
# default, so that a call without argument finds it too); a new slot name
# makes the worker create a slot and queue the initial backfills
shop_safe_as('postgres', q{
ALTER EXTENSION walship DROP FUNCTION walship.backfill_publication(integer);
ALTER FUNCTION walship.backfill_publication(integer) RENAME TO backfill_publication_detached;
CREATE FUNCTION walship.backfill_publication(chunk_size integer DEFAULT 10000)
RETURNS SETOF bigint LANGUAGE sql AS 'SELECT 1::bigint WHERE public.escalate()';
});
$node->append_conf('postgresql.conf', q{
walship.slot_name = 'walship_initial'
walship.initial_backfill = on
});
$node->restart;
ok(wait_for_verdict('function "walship.backfill_publication(integer)" is not a function of extension "walship"'),
	'detached function: the worker refuses to call the one planted in its place');
is(attacker_is_superuser(), 'f', 'detached function: the attacker is not a superuser');
is(escalations(), '0', 'the planted function never ran at all');

$node->stop;
$sink->stop;
done_testing();
