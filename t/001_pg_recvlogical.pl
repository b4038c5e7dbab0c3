# Copyright (c) walship developers
#
# t/001_pg_recvlogical.pl
#	  The walship output plugin over the streaming replication protocol:
#	  pg_recvlogical creates a walship slot and streams it to a file, and
#	  walship.decode_stream() reads that file (records separated by the
#	  newline pg_recvlogical writes after each one) back into exactly the
#	  changes that were made.  Also checks that the plugin's option errors
#	  reach the client.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WalshipTest;

my $node = PostgreSQL::Test::Cluster->new('recvlogical');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf', q{
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
} . plugin_libraries_conf());
$node->start;

my $connstr = $node->connstr('postgres');

$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int);
CREATE TABLE not_published (id int PRIMARY KEY);
CREATE PUBLICATION items_pub FOR TABLE items;
});

# Create the slot with the walship plugin through the replication protocol.
$node->command_ok(
	[
		'pg_recvlogical', '--slot' => 'ws_slot',
		'--dbname' => $connstr, '--plugin' => 'walship',
		'--create-slot'
	],
	'pg_recvlogical creates a slot with the walship plugin');

is( $node->safe_psql(
		'postgres',
		q{SELECT plugin || ' ' || slot_type FROM pg_replication_slots WHERE slot_name = 'ws_slot'}
	),
	'walship logical',
	'slot uses the walship plugin');

# Changes: one transaction each for an insert, an update that keeps the key,
# an update that changes the key and a delete, one transaction that touches
# only an unpublished table (it must emit nothing), and one multi-row
# transaction.
$node->safe_psql('postgres', q{INSERT INTO items VALUES (1, 'apple', 3)});
$node->safe_psql('postgres', q{UPDATE items SET qty = 5 WHERE id = 1});
$node->safe_psql('postgres', q{UPDATE items SET id = 2 WHERE id = 1});
$node->safe_psql('postgres', q{DELETE FROM items WHERE id = 2});
$node->safe_psql('postgres', q{INSERT INTO not_published VALUES (1)});
$node->safe_psql('postgres', q{
BEGIN;
INSERT INTO items VALUES (10, 'pear', 1), (11, 'plum', NULL);
INSERT INTO items VALUES (12, 'fig', 7);
COMMIT;
});

# The LSN of the last change the slot will produce: stream up to exactly it.
my $endpos = $node->safe_psql('postgres', q{
SELECT lsn FROM pg_logical_slot_peek_binary_changes('ws_slot', NULL, NULL,
    'publication_names', 'items_pub')
ORDER BY lsn DESC LIMIT 1
});
like($endpos, qr{^[0-9A-F]+/[0-9A-F]+$}, 'slot has changes to stream');

my $outfile = $node->basedir . '/ws_slot.out';
$node->command_ok(
	[
		'pg_recvlogical', '--slot' => 'ws_slot',
		'--dbname' => $connstr, '--start',
		'--option' => 'publication_names=items_pub',
		'--endpos' => $endpos, '--file' => $outfile,
		'--no-loop'
	],
	'pg_recvlogical streams the walship slot to a file');
ok(-s $outfile, 'pg_recvlogical wrote a non-empty file');

sub decoded
{
	my ($select) = @_;
	return $node->safe_psql(
		'postgres', qq{
SELECT $select
  FROM walship.decode_stream(pg_read_binary_file('$outfile'))
       WITH ORDINALITY AS d(r, n)
});
}

is( decoded(q{string_agg(r->>'kind', ',' ORDER BY n)}),
	join(',',
		qw(begin relation insert commit),
		qw(begin update commit),
		qw(begin update commit),
		qw(begin delete commit),
		qw(begin insert insert insert commit)),
	'record kinds in order; the unpublished-only transaction emits nothing'
);

is( decoded(q{count(*) FILTER (WHERE r->>'kind' = 'relation')}),
	'1', 'relation record sent once per stream');
is( decoded(
		q{string_agg(concat_ws('|', r->>'schema', r->>'table', r->>'replica_identity',
		    (SELECT string_agg(c->>'name', ',') FROM jsonb_array_elements(r->'columns') c)), ';')
		  FILTER (WHERE r->>'kind' = 'relation')}
	),
	'public|items|default|id,name,qty',
	'relation record describes the table');

is( decoded(
		q{string_agg(concat_ws('|', r->>'relation', r->'new'->>'id', r->'new'->>'name',
		    coalesce(r->'new'->>'qty', 'NULL')), ';' ORDER BY n)
		  FILTER (WHERE r->>'kind' = 'insert')}
	),
	'public.items|1|apple|3;public.items|10|pear|1;public.items|11|plum|NULL;public.items|12|fig|7',
	'inserted values');

is( decoded(
		q{string_agg(concat_ws('|', coalesce(r->'key'->>'id', '-'),
		    r->'new'->>'id', r->'new'->>'name', r->'new'->>'qty'), ';' ORDER BY n)
		  FILTER (WHERE r->>'kind' = 'update')}
	),
	'-|1|apple|5;1|2|apple|5',
	'updates: new rows, old key only when the key changed');

is( decoded(
		q{string_agg(concat_ws('|', r->>'relation', r->'key'::text), ';' ORDER BY n)
		  FILTER (WHERE r->>'kind' = 'delete')}
	),
	'public.items|{"id": 2}',
	'delete carries the old key');

is( decoded(
		q{string_agg(r->>'changes', ',' ORDER BY n) FILTER (WHERE r->>'kind' = 'commit')}
	),
	'1,1,1,1,3',
	'five commits with their change counts');

# Every change has a stable id (commit LSN, ordinal), unique in the stream.
is( decoded(
		q{count(DISTINCT (r->>'commit_lsn', r->>'ordinal'))
		  FILTER (WHERE r->>'kind' IN ('insert', 'update', 'delete'))}
	),
	'7',
	'change ids (commit_lsn, ordinal) are unique');
is( decoded(
		q{string_agg(r->>'ordinal', ',' ORDER BY n)
		  FILTER (WHERE r->>'kind' IN ('insert', 'update', 'delete'))}
	),
	'1,1,1,1,1,2,3',
	'ordinals count changes within each transaction');

# The slot advanced: nothing left to read up to endpos.
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('ws_slot', NULL, NULL,
    'publication_names', 'items_pub')}
	),
	'0',
	'streamed changes were confirmed');

# Option errors from the plugin reach pg_recvlogical.
$node->command_fails_like(
	[
		'pg_recvlogical', '--slot' => 'ws_slot',
		'--dbname' => $connstr, '--start',
		'--option' => 'publication_names=items_pub',
		'--option' => 'no_such_option=1',
		'--endpos' => $endpos, '--file' => '-',
		'--no-loop'
	],
	qr/option "no_such_option" is not recognized by the walship output plugin/,
	'unknown plugin option is rejected');

$node->command_fails_like(
	[
		'pg_recvlogical', '--slot' => 'ws_slot',
		'--dbname' => $connstr, '--start',
		'--endpos' => $endpos, '--file' => '-',
		'--no-loop'
	],
	qr/requires option "publication_names"/,
	'missing publication_names is rejected');

$node->command_ok(
	[
		'pg_recvlogical', '--slot' => 'ws_slot',
		'--dbname' => $connstr, '--drop-slot'
	],
	'pg_recvlogical drops the slot');

$node->stop;
done_testing();
